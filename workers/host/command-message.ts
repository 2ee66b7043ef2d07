import type { MsgHdrs } from '@nats-io/transport-node';
import { z } from 'zod';
import { forwardedBy, notFromController } from '../../activities/origin.js';
import {
  COMMAND_CONTRACT_VERSION,
  CancelRequest,
  CommandId,
  ConfirmRequest,
  ReceivedCommand,
  StatusKind,
  SUPPORTED_CONTRACT_VERSIONS,
} from '../../schemas/command.js';
import { AGENT_VERSION } from './version.js';
import { StepMode } from '../../schemas/steps.js';
import { problemText } from '../../schemas/problems.js';

export type MessageCheck<T> =
  | { ok: true; value: T }
  | {
      ok: false;
      reason: string;
      forwarded?: boolean;
      /** The error type of the failed status that answers it (default InvalidCommandError). */
      errorType?: string;
    };

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
 * JetStream handed on to this subject, see activities/origin.ts), JSON, of a contract version this
 * agent takes, a step command, and addressed to this host.
 */
export function checkCommandMessage(msg: ReceivedMessage, hostId: string): MessageCheck<ReceivedCommand> {
  const forwarded = forwardedBy(msg.headers);
  if (forwarded !== undefined)
    return { ok: false, reason: `it carries the ${forwarded} header: JetStream handed it on`, forwarded: true };
  // Before the schema: a command of a contract this agent does not know may not parse, and must say why.
  const contract = contractProblem(msg.data);
  if (contract !== undefined) return { ok: false, reason: contract, errorType: 'UnsupportedContractError' };
  const checked = parseJson(msg.data, ReceivedCommand, 'step command');
  if (checked.ok && checked.value.hostId !== hostId) {
    return { ok: false, reason: `addressed to host ${checked.value.hostId}, not to this host (${hostId})` };
  }
  return checked;
}

const Versioned = z.object({ contractVersion: z.unknown() });

/** Why this agent cannot take a command written for its contract version, if it cannot. */
function contractProblem(data: Uint8Array): string | undefined {
  const checked = parseJson(data, Versioned, 'command');
  if (!checked.ok || checked.value.contractVersion === undefined) return undefined;
  const version = checked.value.contractVersion;
  if (typeof version === 'number' && SUPPORTED_CONTRACT_VERSIONS.includes(version)) return undefined;
  const supported = SUPPORTED_CONTRACT_VERSIONS.join(' and ');
  const newer = typeof version === 'number' && version > COMMAND_CONTRACT_VERSION;
  return (
    `the command was written for command contract version ${JSON.stringify(version)}; this agent (refit-host ${AGENT_VERSION}) takes ${supported}` +
    (newer ? ': upgrade the agent, or run a controller at most one contract version newer' : ': upgrade the controller')
  );
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
  kind: StatusKind,
  mode: StepMode.catch('apply'),
});

/** What a rejected command message names, where that much is readable: enough to answer it. */
export function commandNamedIn(data: Uint8Array): z.output<typeof NamedCommand> | undefined {
  const checked = parseJson(data, NamedCommand, 'command');
  return checked.ok ? checked.value : undefined;
}
