import type { ReceivedCommand } from '../../schemas/command.js';
import { RefitError } from '../../schemas/errors.js';
import type { CommandJournal } from './journal.js';

/** A command of a run whose step before it failed or was cancelled: never run (contract 5, decision 0037). */
export class StepNotRunError extends RefitError {}

/** The step before a command of a run has not finished on this host yet (the command is delivered again). */
export class PrecedingStepPendingError extends RefitError {}

/**
 * Whether a command of a run (one naming the step it follows, `after`) may run now. It may when it
 * names none, when the host has it journalled already (running it again resumes it or answers it from
 * the journal), or when the step before it succeeded here. Returns the reason it never runs when that
 * step failed or was cancelled; throws PrecedingStepPendingError when that step has not finished
 * here (the commands of a run arrive in order, so only after a restart, while the step before resumes).
 */
export async function stepBeforeCheck(
  journal: CommandJournal,
  command: ReceivedCommand,
): Promise<StepNotRunError | undefined> {
  if (command.after === undefined) return undefined;
  if ((await journal.read(command.commandId)) !== undefined) return undefined;
  const before = (await journal.read(command.after))?.finished;
  if (before?.state === 'succeeded') return undefined;
  if (before !== undefined)
    return new StepNotRunError(
      `not run: the step before it in its run (${before.kind}) ${before.state === 'cancelled' ? 'was cancelled' : 'failed'}`,
    );
  throw new PrecedingStepPendingError(`the step before it in its run (${command.after}) has not finished on this host`);
}
