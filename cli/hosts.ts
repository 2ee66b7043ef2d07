import type { Command } from 'commander';
import { readInventory, type InventoryRow } from '../workers/control/inventory.js';
import { loadConfig, withNats } from '../workers/clients.js';
import { tableLines } from './table.js';
import { terminalSafe } from './terminal-text.js';

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

export function registerHostsCommand(program: Command): void {
  program
    .command('hosts')
    .description('the live inventory: every host, whether it reports, its facts')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => {
      await withNats(loadConfig(), async (nc) => {
        const { hosts, invalid } = await readInventory(nc);
        const duplicates = hosts.filter((h) => h.duplicate).map((h) => h.hostId);
        if (duplicates.length > 0)
          process.stderr.write(
            `warning: two agents run with the same host id (each overwrites the other's presence): ${duplicates.join(', ')}; stop one of each\n`,
          );
        if (opts.json) {
          process.stdout.write(
            `${JSON.stringify(
              hosts.map((h) => ({ ...h.presence, online: h.online, duplicate: h.duplicate })),
              null,
              2,
            )}\n`,
          );
          return;
        }
        const online = hosts.filter((h) => h.online).length;
        const simulated = hosts.filter((h) => h.simulated).length;
        process.stdout.write(
          `${hosts.length} hosts, ${online} online${simulated > 0 ? `, ${simulated} SIMULATED (driver marked *)` : ''}\n`,
        );
        if (hosts.length > 0) process.stdout.write(`${tableLines(hosts.map(cells), { header: HEADER }).join('\n')}\n`);
        if (invalid.length > 0)
          process.stderr.write(
            `skipped ${invalid.length} presence entries that fail the schema: ${terminalSafe(invalid.join(', '))}\n`,
          );
      });
    });
}
