import type { Command } from 'commander';
import { loadConfig, withNats, withTemporal } from '../../workers/clients.js';
import { integerBetween } from '../numeric-options.js';
import { terminalSafe } from '../terminal-text.js';
import { checkBind, isLoopback, loopbackHostHeaders } from './bind.js';
import { startUiServer } from './server.js';
import { uiReader } from './views.js';

export const DEFAULT_UI_PORT = 8470;

interface UiOptions {
  bind: string;
  port: number;
  allowRemote?: boolean;
}

export function registerUiCommand(program: Command): void {
  program
    .command('ui')
    .description('serve a read-only web view of rollouts, hosts and their audit trail (loopback only by default)')
    .option('--bind <address>', 'listen on this address', '127.0.0.1')
    .option('--port <n>', 'listen on this port (0: any free one)', integerBetween(0, 65535, 'a port'), DEFAULT_UI_PORT)
    .option('--allow-remote', 'allow an address beyond loopback (the view has no login of its own)')
    .action(async (opts: UiOptions) => {
      checkBind(opts.bind, opts.allowRemote === true);
      const config = loadConfig();
      await withTemporal(config, (client) =>
        withNats(config, async (nc) => {
          const loopback = isLoopback(opts.bind);
          const server = await startUiServer({
            reader: uiReader(client, nc),
            host: opts.bind,
            port: opts.port,
            ...(loopback ? { allowedHosts: (port: number) => loopbackHostHeaders(opts.bind, port) } : {}),
            onError: (path, err) =>
              process.stderr.write(
                `refit ui: ${terminalSafe(path)}: ${terminalSafe(err instanceof Error ? err.message : String(err))}\n`,
              ),
          });
          if (!loopback)
            process.stderr.write(
              `refit ui: WARNING: serving beyond loopback on ${opts.bind}, without a login: anyone who reaches it reads every rollout and audit event\n`,
            );
          process.stdout.write(`refit ui: serving ${server.url} (read-only; Ctrl-C stops)\n`);
          await new Promise<void>((resolve) => {
            process.once('SIGINT', resolve);
            process.once('SIGTERM', resolve);
          });
          await server.close();
        }),
      );
    });
}
