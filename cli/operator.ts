import type { Command } from 'commander';
import { IDENTITIES } from '../schemas/names.js';
import { UsageError } from '../schemas/errors.js';
import { credsFile, loadConfig } from '../workers/config.js';
import type { NatsConnection } from '@nats-io/transport-node';
import { connectNats } from '../workers/nats.js';
import {
  addOperator,
  defaultOperatorKeyFile,
  generateOperatorKey,
  listOperators,
} from '../workers/control/operators.js';
import { tableLines } from './table.js';

/**
 * Operator identities: `keygen` on the operator's own machine (the seed stays there), `add` by whoever
 * holds the controller's credentials (the CLI's identity can neither read nor write the operators bucket).
 */
/** Run `fn` connected as the controller: only it may read and write the operators bucket. */
async function asController<T>(creds: string | undefined, fn: (nc: NatsConnection) => Promise<T>): Promise<T> {
  const config = loadConfig();
  const file = creds ?? config.natsCreds ?? credsFile(config.home, IDENTITIES.controller);
  const nc = await connectNats({ url: config.natsUrl, credsFile: file, identity: IDENTITIES.controller }).catch(
    (cause: unknown) => {
      throw new UsageError(`cannot connect to NATS at ${config.natsUrl} with ${file}: ${(cause as Error).message}`, 1);
    },
  );
  try {
    return await fn(nc);
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError(`the operators bucket: ${(err as Error).message}`, 1);
  } finally {
    await nc.close();
  }
}

export function registerOperatorCommands(program: Command): void {
  const operator = program.command('operator').description('operator identities that sign control actions');

  operator
    .command('keygen')
    .description("make an operator's nkey on this machine; prints the public key to enrol with `refit operator add`")
    .option('--out <file>', 'where to write the seed (0600)', defaultOperatorKeyFile())
    .action((opts: { out: string }) => {
      const publicKey = generateOperatorKey(opts.out);
      process.stdout.write(
        `${publicKey}\nseed written to ${opts.out}; sign with REFIT_OPERATOR_KEY=${opts.out} and REFIT_OPERATOR=<your enrolled name>\n`,
      );
    });

  operator
    .command('add <name>')
    .description("enrol an operator's public key (needs the controller's NATS credentials)")
    .requiredOption('--pubkey <key>', 'the public key (U…) that `refit operator keygen` printed')
    .option('--creds <file>', "the controller's NATS credentials (default: the dev stack's)")
    .action(async (name: string, opts: { pubkey: string; creds?: string }) => {
      const record = await asController(opts.creds, (nc) => addOperator(nc, name, opts.pubkey));
      process.stdout.write(`operator ${record.name} enrolled with key ${record.publicKey}\n`);
    });

  operator
    .command('list')
    .description("the enrolled operators (needs the controller's NATS credentials)")
    .option('--creds <file>', "the controller's NATS credentials (default: the dev stack's)")
    .option('--json', 'print JSON')
    .action(async (opts: { creds?: string; json?: boolean }) => {
      const operators = await asController(opts.creds, listOperators);
      process.stdout.write(
        opts.json
          ? `${JSON.stringify(operators, null, 2)}\n`
          : `${tableLines([['NAME', 'KEY', 'ADDED'], ...operators.map((o) => [o.name, o.publicKey, o.addedAt])]).join('\n')}\n`,
      );
    });
}
