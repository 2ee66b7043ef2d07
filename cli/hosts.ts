import type { Command } from 'commander';
import { readInventory, type InventoryRow } from '../workers/control/inventory.js';
import { loadConfig, withNats } from '../workers/clients.js';
import { tableLines } from './table.js';
import { terminalSafe } from './terminal-text.js';
import { positiveNumber } from './numeric-options.js';
import { fitFrame } from './watch-frame.js';
import type { NatsConnection } from '@nats-io/transport-node';

const HEADER = ['HOST', 'STATE', 'DRIVER', 'AGENT', 'BOOT', 'BRIDGE', 'VFS', 'VMS', 'CORDONED', 'BUSY', 'LABELS'];

/** One row of `refit hosts`; `tableLines` makes each cell terminal-safe. */
export function cells(row: InventoryRow): string[] {
  const f = row.presence.facts;
  const labels = Object.entries(row.presence.labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
  return [
    row.hostId,
    (row.online ? 'online' : 'OFFLINE') + (row.duplicate ? ' DUPLICATE' : ''),
    row.presence.driver + (row.simulated ? '*' : ''),
    `${row.presence.agentVersion}/c${row.presence.contractVersion ?? '?'}`,
    f.bootId.slice(0, 8),
    `${f.bridge.name ?? '-'}:${f.bridge.type}`,
    `${f.sriov.numVfs}/${f.sriov.totalVfs}`,
    String(f.vms.length),
    f.cordoned ? 'yes' : 'no',
    row.presence.busyWith?.kind ?? '-',
    labels,
  ];
}

interface HostsOptions {
  json?: boolean;
  watch?: boolean;
  interval: number;
}

/** The inventory as `refit hosts` prints it (text or JSON), and the warnings that go to stderr. */
async function inventoryText(nc: NatsConnection, json: boolean): Promise<{ text: string; warnings: string[] }> {
  const { hosts, invalid } = await readInventory(nc);
  const warnings: string[] = [];
  const duplicates = hosts.filter((h) => h.duplicate).map((h) => h.hostId);
  if (duplicates.length > 0)
    warnings.push(
      `warning: two agents run with the same host id (each overwrites the other's presence): ${duplicates.join(', ')}; stop one of each`,
    );
  if (invalid.length > 0)
    warnings.push(
      `skipped ${invalid.length} presence entries that fail the schema: ${terminalSafe(invalid.join(', '))}`,
    );
  if (json) {
    const rows = hosts.map((h) => ({ ...h.presence, online: h.online, duplicate: h.duplicate }));
    return { text: JSON.stringify(rows, null, 2), warnings };
  }
  const online = hosts.filter((h) => h.online).length;
  const simulated = hosts.filter((h) => h.simulated).length;
  const lines = [
    `${hosts.length} hosts, ${online} online${simulated > 0 ? `, ${simulated} SIMULATED (driver marked *)` : ''}`,
  ];
  if (hosts.length > 0) lines.push(...tableLines(hosts.map(cells), { header: HEADER }));
  return { text: lines.join('\n'), warnings };
}

/**
 * `refit hosts --watch`: the inventory again every `interval` seconds until interrupted. On a terminal,
 * one screen redrawn and clipped to fit; elsewhere each change with its time (JSON: one line each).
 */
async function watchHosts(nc: NatsConnection, opts: HostsOptions): Promise<never> {
  const out = process.stdout;
  const screen = out.isTTY && !opts.json;
  if (screen) {
    out.write('\x1b[?1049h\x1b[?25l');
    process.once('SIGINT', () => {
      out.write('\x1b[?25h\x1b[?1049l');
      process.exit(130);
    });
  }
  let previous = '';
  for (;;) {
    const { text, warnings } = await inventoryText(nc, opts.json === true);
    const stamp = new Date().toISOString().slice(11, 19);
    if (screen) {
      const frame = fitFrame(
        [`${stamp}  every ${opts.interval}s, ^C to stop`, text, ...warnings].join('\n'),
        out.rows || 24,
        out.columns || 80,
      );
      out.write(`\x1b[H${frame.map((l) => `${l}\x1b[K`).join('\n')}\x1b[J`);
    } else if (text !== previous) {
      out.write(opts.json ? `${JSON.stringify(JSON.parse(text))}\n` : `${stamp}\n${text}\n`);
      for (const w of warnings) process.stderr.write(`${w}\n`);
    }
    previous = text;
    await new Promise((r) => setTimeout(r, opts.interval * 1000));
  }
}

export function registerHostsCommand(program: Command): void {
  program
    .command('hosts')
    .description('the live inventory: every host, whether it reports, its facts')
    .option('--json', 'print JSON (with --watch: the inventory as one line each time it changes)')
    .option('--watch', 'show it again every --interval seconds until interrupted')
    .option('--interval <seconds>', 'with --watch: how often', positiveNumber, 2)
    .action(async (opts: HostsOptions) => {
      await withNats(loadConfig(), async (nc) => {
        if (opts.watch) return watchHosts(nc, opts);
        const { text, warnings } = await inventoryText(nc, opts.json === true);
        process.stdout.write(`${text}\n`);
        for (const w of warnings) process.stderr.write(`${w}\n`);
      });
    });
}
