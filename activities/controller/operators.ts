import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { BUCKETS } from '../../schemas/names.js';
import { OperatorName, OperatorRecord } from '../../schemas/operators.js';
import type { VerifyActionRequest, VerifyActionResult } from '../../schemas/operators.js';
import { verifyAction } from '../operator-signature.js';

/** The enrolled operators' public keys, read from the operators bucket at every check (a removal counts at once). */
export function operatorKeys(nc: NatsConnection): (name: string) => Promise<string | undefined> {
  let bucket: Promise<KV> | undefined;
  return async (name) => {
    if (!OperatorName.safeParse(name).success) return undefined;
    bucket ??= new Kvm(nc).open(BUCKETS.operators);
    const entry = await (await bucket).get(name);
    if (entry === null || entry.operation !== 'PUT') return undefined;
    const record = OperatorRecord.safeParse(entry.json());
    return record.success && record.data.name === name ? record.data.publicKey : undefined;
  };
}

/** The activity: verify an operator action's signature against the enrolled operators. */
export function createVerifyOperatorAction({ nc }: { nc: NatsConnection }) {
  const keyOf = operatorKeys(nc);
  return (req: VerifyActionRequest): Promise<VerifyActionResult> => verifyAction(req, keyOf);
}
