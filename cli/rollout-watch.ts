import type { Client } from '@temporalio/client';
import type { RolloutStatus } from '../schemas/rollout.js';
import { UsageError } from '../schemas/errors.js';
import { finishedHostDurations, getRolloutStatus } from '../workers/control/rollout-status.js';
import { renderStatus } from './render.js';
import { terminalSafe } from './terminal-text.js';
import { etaLine, fitFrame } from './watch-frame.js';

const TERMINAL = new Set(['completed', 'failed', 'cancelled']);
/** How often the hosts' measured durations are read again for the ETA (a visibility query). */
const DURATIONS_EVERY_MS = 10_000;

/** The alternate screen (as `top` and `less` use it), with the cursor hidden; and back. */
const ENTER = '\x1b[?1049h\x1b[?25l';
const LEAVE = '\x1b[?25h\x1b[?1049l';

export interface WatchOptions {
  /** Stop at these states (default: the end of the rollout). */
  stopAt?: ReadonlySet<string>;
  /** One JSON status a line, each time it changes. */
  json?: boolean;
  intervalMs?: number;
}

/**
 * Follow a rollout until it ends (or reaches one of `stopAt`). On a terminal, each second's frame is
 * drawn from the top of the alternate screen, clipped to the terminal's height and width so it never
 * scrolls or wraps; at the end the terminal's own screen comes back and the whole final status is
 * printed there. Elsewhere, each change is printed with its time. A status that cannot be read for
 * a moment (the controller worker restarting) is waited out, and said.
 */
export async function watchRollout(
  client: Client,
  rolloutId: string,
  out: NodeJS.WriteStream = process.stdout,
  opts: WatchOptions = {},
): Promise<RolloutStatus> {
  const stopAt = opts.stopAt ?? TERMINAL;
  const screen = out.isTTY && !opts.json;
  let previous = '';
  let unreadableSince: number | undefined;
  let durations: number[] = [];
  let durationsAt = 0;
  let finishedSeen = -1;
  let entered = false;
  const leave = () => {
    if (entered) out.write(LEAVE);
    entered = false;
  };
  const interrupted = () => {
    leave();
    process.exit(130);
  };
  if (screen) process.once('SIGINT', interrupted);
  try {
    for (;;) {
      let status: RolloutStatus;
      try {
        status = await getRolloutStatus(client, rolloutId);
        unreadableSince = undefined;
      } catch (err) {
        if (err instanceof UsageError) throw err;
        unreadableSince ??= Date.now();
        if (Date.now() - unreadableSince > 120_000) throw err;
        process.stderr.write(
          `refit: cannot read the rollout's status yet (${terminalSafe((err as Error).message)}); is \`refit worker\` running? retrying\n`,
        );
        await new Promise((r) => setTimeout(r, 2_000));
        continue;
      }
      const over = stopAt.has(status.state);
      if (opts.json) {
        const line = JSON.stringify(status);
        if (line !== previous) out.write(`${line}\n`);
        previous = line;
        if (over) return status;
      } else {
        // Read again when a host has finished since, soon while Temporal's list has not caught up.
        const finished = status.hosts.filter((h) => h.state !== 'pending' && h.state !== 'running').length;
        const every = durations.length < finished ? 2_000 : DURATIONS_EVERY_MS;
        if (!over && (finished !== finishedSeen || Date.now() - durationsAt >= every)) {
          finishedSeen = finished;
          durations = await finishedHostDurations(client, rolloutId).catch(() => durations);
          durationsAt = Date.now();
        }
        const text = renderStatus(status);
        const eta = etaLine(status, durations, Date.now());
        if (screen) {
          if (over) {
            leave();
            out.write(`${text}\n`);
            return status;
          }
          if (!entered) out.write(ENTER);
          entered = true;
          const frame = fitFrame(eta ? `${text}\n${eta}` : text, out.rows || 24, out.columns || 80);
          out.write(`\x1b[H${frame.map((l) => `${l}\x1b[K`).join('\n')}\x1b[J`);
        } else {
          if (text !== previous) {
            const change = [...text.split('\n').slice(1), ...(eta ? [eta] : [])].join('\n    ');
            out.write(`${new Date().toISOString().slice(11, 19)} ${change}\n`);
          }
          if (over) {
            out.write(`${text}\n`);
            return status;
          }
        }
        previous = text;
      }
      await new Promise((r) => setTimeout(r, opts.intervalMs ?? 1_000));
    }
  } finally {
    leave();
    process.removeListener('SIGINT', interrupted);
  }
}
