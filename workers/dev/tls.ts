import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { RefitError } from '../../schemas/errors.js';

export class TlsSetupError extends RefitError {}

/** The files `refit dev up --tls` makes under `<home>/tls`: a CA, a server pair, a client pair. */
export interface DevCertificates {
  dir: string;
  caFile: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

export const tlsDir = (home: string) => path.join(home, 'tls');

const DAYS = '825';

/**
 * A local CA and, signed by it, a server certificate for localhost and 127.0.0.1 and a client
 * certificate, made with openssl (on Debian by default) the first time and reused after. The CA's
 * key stays in the directory (mode 0700): it is a development CA, not to be trusted elsewhere.
 */
export function ensureDevCertificates(home: string): DevCertificates {
  return ensureCertificates(tlsDir(home), { names: ['localhost'], ips: ['127.0.0.1'] });
}

/**
 * The same in `dir` for other server names (deploy/nats/credentials.mjs: the NATS nodes and
 * Temporal of docker-compose.yml). The server certificate may also authenticate as a client, as a
 * NATS node does on its cluster routes.
 */
export function ensureCertificates(dir: string, server: { names: string[]; ips?: string[] }): DevCertificates {
  const files: DevCertificates = {
    dir,
    caFile: path.join(dir, 'ca.pem'),
    serverCert: path.join(dir, 'server.pem'),
    serverKey: path.join(dir, 'server.key'),
    clientCert: path.join(dir, 'client.pem'),
    clientKey: path.join(dir, 'client.key'),
  };
  if ([files.caFile, files.serverCert, files.serverKey, files.clientCert, files.clientKey].every((f) => existsSync(f)))
    return files;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const caKey = path.join(dir, 'ca.key');
  const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(dir, [
    'req',
    '-x509',
    ...key,
    '-keyout',
    caKey,
    '-out',
    files.caFile,
    '-days',
    DAYS,
    '-subj',
    '/CN=refit CA',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  const sign = (name: string, cert: string, keyFile: string, extensions: string) => {
    const csr = path.join(dir, `${name}.csr`);
    const ext = path.join(dir, `${name}.ext`);
    writeFileSync(ext, extensions, { mode: 0o600 });
    try {
      openssl(dir, ['req', ...key, '-keyout', keyFile, '-out', csr, '-subj', `/CN=${name}`]);
      openssl(dir, [
        'x509',
        '-req',
        '-in',
        csr,
        '-CA',
        files.caFile,
        '-CAkey',
        caKey,
        '-out',
        cert,
        '-days',
        DAYS,
        '-set_serial',
        `0x${randomBytes(16).toString('hex')}`,
        '-extfile',
        ext,
      ]);
    } finally {
      rmSync(csr, { force: true });
      rmSync(ext, { force: true });
    }
    chmodSync(keyFile, 0o600);
  };
  const leaf = 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n';
  const altNames = [...server.names.map((n) => `DNS:${n}`), ...(server.ips ?? []).map((ip) => `IP:${ip}`)];
  sign(
    server.names[0] ?? 'server',
    files.serverCert,
    files.serverKey,
    `${leaf}extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=${altNames.join(',')}\n`,
  );
  sign('refit-client', files.clientCert, files.clientKey, `${leaf}extendedKeyUsage=clientAuth\n`);
  chmodSync(caKey, 0o600);
  return files;
}

function openssl(cwd: string, args: string[]): void {
  try {
    execFileSync('openssl', args, {
      cwd,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
  } catch (cause) {
    const stderr = (cause as { stderr?: Buffer }).stderr?.toString().trim();
    const missing = (cause as NodeJS.ErrnoException).code === 'ENOENT';
    throw new TlsSetupError(
      missing
        ? 'openssl not found: `refit dev up --tls` makes its certificates with it (apt-get install openssl)'
        : `openssl ${args[0]} failed: ${stderr ?? (cause as Error).message}`,
      { cause },
    );
  }
}
