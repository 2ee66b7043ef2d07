import type { MsgHdrs } from '@nats-io/transport-node';
import { z } from 'zod';
import { forwardedBy, notFromController } from '../../activities/origin.js';
import { CancelRequest, CommandId, ConfirmRequest, ReceivedCommand } from '../../schemas/command.js';
import { StepKind, StepMode } from '../../schemas/steps.js';
import { problemText } from '../../schemas/problems.js';

export type MessageCheck<T> = { ok: true; value: T } | { ok: false; reason: string; forwarded?: boolean };

/** A message as the host receives it: its body, and what shows where it came from. */
export interface ReceivedMessage {
  data: Uint8Array;
  headers?: MsgHdrs | undefined;
  reply?: string | undefined;
}

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

/**
 * Check a message from the host's command queue: written by the controller (not a stored message
 * JetStream handed on to this subject, see activities/origin.ts), JSON, a step command, and
 * addressed to this host.
 */
export function checkCommandMessage(msg: ReceivedMessage, hostId: string): MessageCheck<ReceivedCommand> {
  const forwarded = forwardedBy(msg.headers);
  if (forwarded !== undefined)
    return { ok: false, reason: `it carries the ${forwarded} header: JetStream handed it on`, forwarded: true };
  const checked = parseJson(msg.data, ReceivedCommand, 'step command');
  if (checked.ok && checked.value.hostId !== hostId) {
    return { ok: false, reason: `addressed to host ${checked.value.hostId}, not to this host (${hostId})` };
  }
  return checked;
}

/** A cancel request: published by the controller itself (no headers, no reply subject), and well formed. */
export function checkCancelMessage(msg: ReceivedMessage): MessageCheck<CancelRequest> {
  const notOurs = notFromController(msg);
  if (notOurs !== undefined) return { ok: false, reason: `not from the controller: ${notOurs}`, forwarded: true };
  return parseJson(msg.data, CancelRequest, 'cancel request');
}

/** The controller's confirmation of an ovs-convert: published by the controller itself, and well formed. */
export function checkConfirmMessage(msg: ReceivedMessage): MessageCheck<ConfirmRequest> {
  const notOurs = notFromController(msg);
  if (notOurs !== undefined) return { ok: false, reason: `not from the controller: ${notOurs}`, forwarded: true };
  return parseJson(msg.data, ConfirmRequest, 'confirmation');
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
