#!/usr/bin/env node
// Credentials of the docker-compose stack, made by the same functions as `refit dev enroll`, so the
// permissions are those of schemas/permissions.ts and nothing is written twice:
//   deploy/creds/controller.nk, cli.nk, hosts/<hostId>.nk   nkey seeds (0600, git-ignored)
//   deploy/nats/users.conf                                 the authorization include of every node
//   deploy/nats/identities.json                            identity -> public key, the input of users.conf
//   deploy/tls/ca.pem, server.pem|key, client.pem|key       a private CA and what it signed (openssl), once
//
//   npm run build && node deploy/nats/credentials.mjs [hostId ...]
//
// The server certificate names localhost, 127.0.0.1, nats-1..3 and temporal; add the names and
// addresses hosts use to reach NATS in REFIT_TLS_NAMES / REFIT_TLS_IPS (comma-separated) before the
// first run, or delete deploy/tls/ and run again. Hosts get ca.pem and client.pem/.key (deploy/README.md).
//
// Re-running keeps every existing seed and adds the hosts named. After adding hosts, make the
// running servers read users.conf again: docker compose kill -s SIGHUP nats-1 nats-2 nats-3
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** deploy/ is the stack's refit home: the layout below it is the one `refit dev` uses under .refit/. */
const home = path.resolve(process.env.REFIT_DEPLOY_HOME ?? fileURLToPath(new URL('..', import.meta.url)));
const hostIds = process.argv.slice(2);

let credentials;
let tls;
try {
  credentials = await import('../../dist/workers/dev/credentials.js');
  tls = await import('../../dist/workers/dev/tls.js');
} catch (cause) {
  console.error(`deploy/nats/credentials.mjs: cannot load dist/workers/dev/; run \`npm run build\` first`);
  console.error(String(cause));
  process.exit(1);
}
const { ensureCoreIdentities, ensureHostIdentities, withIdentityLock, writeUsersConfig } = credentials;
const list = (text) =>
  (text ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

try {
  const added = await withIdentityLock(home, async () => {
    ensureCoreIdentities(home);
    const newHosts = ensureHostIdentities(home, hostIds);
    writeUsersConfig(home);
    return newHosts;
  });
  const certs = tls.ensureCertificates(path.join(home, 'tls'), {
    names: ['localhost', 'nats-1', 'nats-2', 'nats-3', 'temporal', ...list(process.env.REFIT_TLS_NAMES)],
    ips: ['127.0.0.1', ...list(process.env.REFIT_TLS_IPS)],
  });
  console.log(`wrote ${path.join(home, 'nats', 'users.conf')} and seeds under ${path.join(home, 'creds')}`);
  console.log(`TLS: CA ${certs.caFile}, server and client pairs beside it`);
  if (added.length > 0) console.log(`new hosts: ${added.join(', ')} (reload NATS to admit them)`);
} catch (error) {
  console.error(`deploy/nats/credentials.mjs: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}
