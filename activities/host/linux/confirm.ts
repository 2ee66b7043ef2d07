import path from 'node:path';
import { z } from 'zod';
import { removeFileDurably, writeJsonAtomic } from '../../files.js';
import { problemText } from '../../../schemas/problems.js';
import { readText, type Confirmation } from './host-env.js';

/**
 * The controller's word: it heard the host after the switch and said so for the running command,
 * and the host worker resolved `confirmed`. False at the deadline, or once the step is stopped.
 */
export const controllerConfirmation: Confirmation = ({ confirmed, deadline, signal }) =>
  new Promise((resolve) => {
    if (signal.aborted) return resolve(false);
    const done = (answer: boolean) => {
      clearTimeout(timer);
      signal.removeEventListener('abort', stopped);
      resolve(answer);
    };
    const stopped = () => done(false);
    const timer = setTimeout(done, Math.max(0, deadline - Date.now()), false);
    signal.addEventListener('abort', stopped, { once: true });
    confirmed?.then(
      () => done(true),
      () => done(false),
    );
  });

/** What ovs-convert writes in the host's state dir before its switch, until it is confirmed or reverted. */
export const PendingConfirmation = z.strictObject({
  bridge: z.string(),
  /** When the host puts its Linux bridge back without the controller's word (wall clock: it outlives a reboot). */
  deadline: z.iso.datetime(),
  confirmWithinMs: z.number().int().positive(),
  switchStartedAt: z.iso.datetime(),
});
export type PendingConfirmation = z.infer<typeof PendingConfirmation>;

/** What a step finds of an earlier start: nothing, a deadline still to wait for, or a reason to revert at once. */
export type EarlierConfirmation =
  | { kind: 'none' }
  | { kind: 'waiting'; deadline: number; record: PendingConfirmation }
  | { kind: 'revert'; reason: string };

export const pendingConfirmationFile = (stateDir: string, bridge: string) =>
  path.join(stateDir, `ovs-convert-${bridge}.pending.json`);

/**
 * Judge the record an earlier start left (its text, undefined without one). A record that cannot be
 * read, names another bridge, or puts its deadline further away than its own bound (a clock set back)
 * is not believed: the conversion counts as unconfirmed.
 */
export function judgeEarlierConfirmation(
  text: string | undefined,
  bridge: string,
  now: number,
  file = 'the confirmation record',
): EarlierConfirmation {
  if (text === undefined) return { kind: 'none' };
  const unreadable = (why: string): EarlierConfirmation => ({
    kind: 'revert',
    reason: `the confirmation record ${file} is unreadable (${why}), so the earlier switch counts as unconfirmed`,
  });
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return unreadable('not JSON');
  }
  const parsed = PendingConfirmation.safeParse(json);
  if (!parsed.success) return unreadable(problemText(parsed.error, '(record)'));
  const record = parsed.data;
  if (record.bridge !== bridge) return unreadable(`it names ${record.bridge}, not ${bridge}`);
  const deadline = Date.parse(record.deadline);
  if (deadline - now > record.confirmWithinMs)
    return unreadable(`its deadline ${record.deadline} is further away than ${record.confirmWithinMs} ms`);
  if (deadline <= now)
    return {
      kind: 'revert',
      reason: `the controller did not confirm by ${record.deadline}, the deadline set before the host worker stopped`,
    };
  return { kind: 'waiting', deadline, record };
}

export async function readEarlierConfirmation(
  stateDir: string,
  bridge: string,
  now: number,
): Promise<EarlierConfirmation> {
  const file = pendingConfirmationFile(stateDir, bridge);
  return judgeEarlierConfirmation(await readText(file), bridge, now, file);
}

/** Written before the switch, so that a restarted worker still reverts by the same deadline. */
export async function recordPendingConfirmation(stateDir: string, record: PendingConfirmation): Promise<void> {
  await writeJsonAtomic(pendingConfirmationFile(stateDir, record.bridge), record);
}

/** Confirmed or reverted: nothing is pending any more. */
export async function clearPendingConfirmation(stateDir: string, bridge: string): Promise<void> {
  await removeFileDurably(pendingConfirmationFile(stateDir, bridge));
}
