import os from 'node:os';
import type { Command } from 'commander';
import { ApplicationFailure, WorkflowUpdateFailedError } from '@temporalio/client';
import type { RolloutStatus } from '../schemas/rollout.js';
import { hostUpdates, operatorUpdates, type HostActionName, type OperatorActionName } from '../workflows/messages.js';
import { ActionNotAudited, operatorNameProblem } from '../workflows/operator.js';
import { loadConfig, withTemporal } from '../workers/clients.js';
import { UsageError } from '../schemas/errors.js';
import { renderStatus } from './render.js';
import type { ActionSignature } from '../schemas/operators.js';
import { operatorSeed, signIfKeyed } from '../workers/control/operators.js';

/** Who the action names as having asked: REFIT_OPERATOR, or user@host when it is unset. */
function operator(name: string): string {
  const named = process.env.REFIT_OPERATOR;
  const by = named ?? `${os.userInfo().username}@${os.hostname()}`;
  const problem = operatorNameProblem(by);
  if (problem === undefined) return by;
  throw new UsageError(
    named === undefined
      ? `${name} not sent: your name as user@host (${JSON.stringify(by)}) ${problem}; set REFIT_OPERATOR to your name`
      : `${name} not sent: REFIT_OPERATOR ${problem}; set it to your name, or unset it to be named user@host`,
  );
}

/**
 * Sign the action with the operator's key (REFIT_OPERATOR_KEY or --key) as the enrolled operator
 * REFIT_OPERATOR; without a key it goes unsigned, which a plan may refuse.
 */
function signed<A extends { by: string; reason?: string; hostId?: string }>(
  id: string,
  name: string,
  arg: A,
  keyFile: string | undefined,
): A & { signature?: ActionSignature } {
  const seed = operatorSeed(keyFile ?? process.env.REFIT_OPERATOR_KEY);
  const args = {
    ...(arg.reason !== undefined ? { reason: arg.reason } : {}),
    ...(arg.hostId !== undefined ? { hostId: arg.hostId } : {}),
  };
  const signature = signIfKeyed(seed, arg.by, { rolloutId: id, action: name, args });
  return signature === undefined ? arg : { ...arg, signature };
}

async function send(
  id: string,
  name: OperatorActionName | HostActionName,
  unsigned: { by: string; reason?: string; hostId?: string },
  json: boolean,
  keyFile: string | undefined,
): Promise<void> {
  const arg = signed(id, name, unsigned, keyFile);
  await withTemporal(loadConfig(), async (client) => {
    const handle = client.workflow.getHandle(id);
    let status: RolloutStatus;
    try {
      status =
        name === 'retryHost' || name === 'skipHost'
          ? await handle.executeUpdate(hostUpdates[name], { args: [{ ...arg, hostId: arg.hostId ?? '' }] })
          : await handle.executeUpdate(operatorUpdates[name], { args: [arg] });
    } catch (err) {
      // Refused: checked and found not to apply, nothing changed. Not applied: its audit event could not be stored.
      if (err instanceof WorkflowUpdateFailedError) {
        const notApplied = err.cause instanceof ApplicationFailure && err.cause.type === ActionNotAudited.name;
        throw new UsageError(
          `${name} ${notApplied ? 'not applied' : 'refused'}: ${err.cause?.message ?? err.message}`,
          1,
        );
      }
      if (err instanceof Error && err.name === 'WorkflowNotFoundError')
        throw new UsageError(`no running rollout ${id}`, 1);
      throw err;
    }
    process.stdout.write(json ? `${JSON.stringify(status, null, 2)}\n` : `${name}: done\n${renderStatus(status)}\n`);
  });
}

/**
 * Operator control. Each is a Temporal update named as the action (pause, resume, cancel, approve,
 * retryHost, skipHost), so `temporal workflow update execute --name pause` does the same.
 */
export function registerRolloutControlCommands(rollout: Command): void {
  const simple: [OperatorActionName, string][] = [
    ['pause', 'stop starting hosts; hosts in flight finish'],
    ['resume', 'continue a paused rollout (after a spent failure budget, the failures so far are accepted)'],
    ['cancel', 'start no more hosts; hosts in flight finish or undo, as the plan says'],
    ['approve', 'pass the approval gate the rollout waits at'],
  ];
  for (const [name, description] of simple) {
    rollout
      .command(`${name} <rolloutId>`)
      .description(description)
      .option('--reason <text>', 'recorded with the action')
      .option('--key <file>', "sign with this operator's nkey seed (default: REFIT_OPERATOR_KEY)")
      .option('--json', 'print the new status as JSON')
      .action(async (id: string, opts: { reason?: string; key?: string; json?: boolean }) =>
        send(
          id,
          name,
          { by: operator(name), ...(opts.reason ? { reason: opts.reason } : {}) },
          opts.json === true,
          opts.key,
        ),
      );
  }
  const perHost: [string, HostActionName, string][] = [
    ['retry-host', 'retryHost', 'run a failed, held, rolled-back or skipped host again'],
    ['skip-host', 'skipHost', 'leave a pending, failed, held or rolled-back host out'],
  ];
  for (const [command, name, description] of perHost) {
    rollout
      .command(`${command} <rolloutId> <hostId>`)
      .description(description)
      .option('--key <file>', "sign with this operator's nkey seed (default: REFIT_OPERATOR_KEY)")
      .option('--json', 'print the new status as JSON')
      .action(async (id: string, hostId: string, opts: { key?: string; json?: boolean }) =>
        send(id, name, { by: operator(name), hostId }, opts.json === true, opts.key),
      );
  }
}
