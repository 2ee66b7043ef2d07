import type { Confirmation } from './host-env.js';

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
