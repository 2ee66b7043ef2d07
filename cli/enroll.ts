import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { UsageError } from '../schemas/errors.js';
import { refitHome } from '../workers/config.js';
import { admitHostKeys, checkHostKey, parseHostKeys, type HostKey } from '../workers/dev/admit.js';

interface EnrollOptions {
  pubkey?: string;
  id?: string;
  from?: string;
}

export function registerEnrollCommand(program: Command): void {
  program
    .command('enroll')
    .description(
      'admit hosts by the public keys they made (refit-host enroll-request): a NATS user each, with host permissions only',
    )
    .option('--pubkey <key>', "the host's nkey public key (U…)")
    .option('--id <hostId>', 'the host id that key belongs to')
    .option('--from <file>', 'a file of "<hostId> <publicKey>" lines as enroll-request prints them (# comments)')
    .action(async (opts: EnrollOptions) => {
      const hosts = hostKeys(opts);
      const home = refitHome();
      const result = await admitHostKeys(home, hosts);
      console.log(
        `admitted ${hosts.length} host(s): ${result.added.length} new, ${result.rekeyed.length} with a new key, ${result.unchanged.length} unchanged; NATS users in ${result.usersConfig}`,
      );
      if (result.rekeyed.length > 0)
        console.log(`new keys (the old ones no longer log in): ${result.rekeyed.join(', ')}`);
      if (result.reloaded.length > 0)
        console.log(`reloaded ${result.reloaded.join(', ')}: the hosts can log in, their command queues exist`);
      else
        console.log(
          'no refit dev stack runs for this REFIT_HOME: reload every NATS node to admit them (deploy/: docker compose kill -s SIGHUP nats-1 nats-2 nats-3)',
        );
    });
}

function hostKeys(opts: EnrollOptions): HostKey[] {
  if (opts.from !== undefined) {
    if (opts.pubkey !== undefined || opts.id !== undefined)
      throw new UsageError('give either --from <file> or --pubkey <key> --id <hostId>, not both');
    let text: string;
    try {
      text = readFileSync(opts.from, 'utf8');
    } catch (err) {
      throw new UsageError(`cannot read ${opts.from}: ${(err as Error).message}`);
    }
    return parseHostKeys(text, opts.from);
  }
  if (opts.pubkey === undefined || opts.id === undefined)
    throw new UsageError('give --pubkey <key> --id <hostId>, or --from <file>');
  return [checkHostKey(opts.id, opts.pubkey)];
}
