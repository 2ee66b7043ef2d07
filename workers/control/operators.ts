import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createUser } from '@nats-io/nkeys';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { publicKeyOfSeed, publicKeyProblem, seedOfCredentials } from '../../activities/nkey.js';
import { signAction } from '../../activities/operator-signature.js';
import { UsageError } from '../../schemas/errors.js';
import { BUCKETS } from '../../schemas/names.js';
import {
  OperatorName,
  OperatorRecord,
  type ActionSignature,
  type SignedActionTarget,
} from '../../schemas/operators.js';

/** Where `refit operator keygen` puts an operator's seed by default: on the operator's own machine, 0600. */
export function defaultOperatorKeyFile(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(env.XDG_CONFIG_HOME ?? path.join(os.homedir(), '.config'), 'refit', 'operator.nk');
}

/** Make a new operator seed in `file` (never over an existing one); returns its public key, to enrol. */
export function generateOperatorKey(file: string): string {
  if (existsSync(file))
    throw new UsageError(`${file} exists; refit never overwrites a key (remove it first, or give --out)`);
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const seed = new TextDecoder().decode(createUser().getSeed());
  writeFileSync(file, `${seed}\n`, { mode: 0o600, flag: 'wx' });
  return publicKeyOfSeed(seed);
}

/** Enrol (or re-key) an operator. Needs the controller's NATS identity: the CLI's may not write the operators bucket. */
export async function addOperator(nc: NatsConnection, name: string, publicKey: string): Promise<OperatorRecord> {
  const named = OperatorName.safeParse(name);
  if (!named.success) throw new UsageError(`operator name ${JSON.stringify(name)} ${named.error.issues[0]?.message}`);
  const problem = publicKeyProblem(publicKey);
  if (problem !== undefined) throw new UsageError(`--pubkey: ${problem}`);
  const kv = await new Kvm(nc).open(BUCKETS.operators);
  const record: OperatorRecord = { name, publicKey, addedAt: new Date().toISOString() };
  await kv.put(name, JSON.stringify(record));
  return record;
}

/** The enrolled operators, by name. */
export async function listOperators(nc: NatsConnection): Promise<OperatorRecord[]> {
  const kv = await new Kvm(nc).open(BUCKETS.operators);
  const out: OperatorRecord[] = [];
  for await (const key of await kv.keys()) {
    const entry = await kv.get(key);
    if (entry?.operation !== 'PUT') continue;
    const parsed = OperatorRecord.safeParse(entry.json());
    if (parsed.success) out.push(parsed.data);
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

/** The operator's signing key, when REFIT_OPERATOR_KEY (or --key) names one: the seed, from a seed or .creds file. */
export function operatorSeed(file: string | undefined): string | undefined {
  if (file === undefined || file === '') return undefined;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (cause) {
    throw new UsageError(`cannot read the operator key ${file}: ${(cause as Error).message}`);
  }
  try {
    return seedOfCredentials(text);
  } catch {
    throw new UsageError(`${file} holds no nkey user seed (make one with \`refit operator keygen\`)`);
  }
}

/** Sign an action as `operator` with the seed, or send it unsigned without one. */
export function signIfKeyed(
  seed: string | undefined,
  operator: string,
  target: SignedActionTarget,
): ActionSignature | undefined {
  if (seed === undefined) return undefined;
  const named = OperatorName.safeParse(operator);
  if (!named.success)
    throw new UsageError(
      `a signed action names an enrolled operator: REFIT_OPERATOR ${JSON.stringify(operator)} ${named.error.issues[0]?.message}`,
    );
  return signAction(seed, operator, target);
}
