import { pino, type Logger } from 'pino';

export type { Logger };

/** JSON logs on stderr, so stdout stays for what a command prints. Level from REFIT_LOG_LEVEL. */
export function createLogger(name: string, bindings: Record<string, unknown> = {}): Logger {
  return pino(
    { name, level: process.env.REFIT_LOG_LEVEL ?? 'info', base: { pid: process.pid, ...bindings } },
    pino.destination(2),
  );
}
