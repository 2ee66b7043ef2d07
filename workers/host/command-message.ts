import { z } from 'zod';
import { CancelRequest, CommandId, ConfirmRequest, ReceivedCommand } from '../../schemas/command.js';
import { StepKind, StepMode } from '../../schemas/steps.js';
import { problemText } from '../../schemas/problems.js';

export type MessageCheck<T> = { ok: true; value: T } | { ok: false; reason: string };

const MAX_BYTES = 64 * 1024;

function parseJson<T extends z.ZodType>(data: Uint8Array, schema: T, what: string): MessageCheck<z.output<T>> {
  if (data.byteLength > MAX_BYTES) return { ok: false, reason: `${data.byteLength} bytes, more than ${MAX_BYTES}` };
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(data));
  } catch (err) {
    return { ok: false, reason: `not JSON: ${err instanceof Error ? err.message : String(err)}` };
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const problems = problemText(parsed.error, '(message)');
    return { ok: false, reason: `not a ${what}: ${problems}` };
  }
  return { ok: true, value: parsed.data };
}

/** Check a message from the host's command queue: JSON, a step command, and addressed to this host. */
export function checkCommandMessage(data: Uint8Array, hostId: string): MessageCheck<ReceivedCommand> {
  const checked = parseJson(data, ReceivedCommand, 'step command');
  if (checked.ok && checked.value.hostId !== hostId) {
    return { ok: false, reason: `addressed to host ${checked.value.hostId}, not to this host (${hostId})` };
  }
  return checked;
}

export function checkCancelMessage(data: Uint8Array): MessageCheck<CancelRequest> {
  return parseJson(data, CancelRequest, 'cancel request');
}

export function checkConfirmMessage(data: Uint8Array): MessageCheck<ConfirmRequest> {
  return parseJson(data, ConfirmRequest, 'confirmation');
}

const NamedCommand = z.object({
  commandId: CommandId,
  hostId: z.string(),
  kind: StepKind,
  mode: StepMode.default('apply'),
});

/** What a rejected command message names, where that much is readable: enough to answer it. */
export function commandNamedIn(data: Uint8Array): z.output<typeof NamedCommand> | undefined {
  const checked = parseJson(data, NamedCommand, 'command');
  return checked.ok ? checked.value : undefined;
}
