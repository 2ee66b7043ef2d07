import type { Command } from 'commander';
import { readInventory, type InventoryRow } from '../workers/control/inventory.js';
import { loadConfig, withNats } from '../workers/clients.js';

function describe(row: InventoryRow): string {
  const f = row.presence.facts;
  const labels = Object.entries(row.presence.labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
  return [
    row.hostId.padEnd(16),
    (row.online ? 'online' : 'OFFLINE').padEnd(8),
    (row.presence.driver + (row.simulated ? '*' : '')).padEnd(8),
    f.bootId.slice(0, 8).padEnd(9),
    `${f.bridge.name ?? '-'}:${f.bridge.type}`.padEnd(12),
    `${f.sriov.numVfs}/${f.sriov.totalVfs}`.padEnd(6),
    String(f.vms.length).padEnd(4),
    (f.cordoned ? 'yes' : 'no').padEnd(9),
    (row.presence.busyWith?.kind ?? '-').padEnd(13),
    labels,
  ].join(' ');
}

export function registerHostsCommand(program: Command): void {
  program
    .command('hosts')
    .description('the live inventory: every host, whether it reports, its facts')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => {
      await withNats(loadConfig(), async (nc) => {
        const { hosts, invalid } = await readInventory(nc);
        if (opts.json) {
          process.stdout.write(
            `${JSON.stringify(
              hosts.map((h) => ({ ...h.presence, online: h.online })),
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
        if (hosts.length > 0) {
          process.stdout.write(
            `${'HOST'.padEnd(16)} ${'STATE'.padEnd(8)} ${'DRIVER'.padEnd(8)} ${'BOOT'.padEnd(9)} ${'BRIDGE'.padEnd(12)} ${'VFS'.padEnd(6)} ${'VMS'.padEnd(4)} ${'CORDONED'.padEnd(9)} ${'BUSY'.padEnd(13)} LABELS\n`,
          );
        }
        for (const h of hosts) process.stdout.write(`${describe(h)}\n`);
        if (invalid.length > 0)
          process.stderr.write(
            `skipped ${invalid.length} presence entries that fail the schema: ${invalid.join(', ')}\n`,
          );
      });
    });
}
