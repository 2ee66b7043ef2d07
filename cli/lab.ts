import path from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { labDown } from '../lab/down.js';
import { clearFaults, injectLoss, injectPortSecurity, LabFaultError } from '../lab/faults.js';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { rebootHost } from '../activities/host/lab/boot.js';
import { hostPaths, type LabShape } from '../activities/host/lab/layout.js';
import { liveSupervisor, requestReboot } from '../activities/host/lab/power.js';
import { until } from '../activities/poll.js';
import { LabFlavour, type LabHost } from '../activities/host/lab/state.js';
import { describeMove, migrateVm } from '../activities/host/lab/migrate.js';
import { labStatus, type LabStatus } from '../lab/status.js';
import { LabNotFoundError, labHost, loadLab, LabPrefix, LabVmKind } from '../activities/host/lab/state.js';
import { labUp, LabSetupError } from '../lab/up.js';
import { loadConfig, refitHome } from '../workers/config.js';
import { untilStopSignal } from '../workers/host/host-process.js';
import { startLabWorkers } from '../lab/workers.js';
import { defaultHostPackage, HostPackageError } from '../lab/host-package.js';
import { createLogger } from '../workers/log.js';
import { UsageError } from '../schemas/errors.js';
import { tableLines } from './table.js';
import { nonNegativeInteger, positiveInteger } from './numeric-options.js';

const readBootId = async (host: LabHost) => (await readFile(hostPaths(host).bootId, 'utf8').catch(() => '')).trim();

type FlavourSpec = Pick<LabShape, 'flavour' | 'flavours'>;

/** `--flavour pve`, or per host `h1=pve,h2=debian`. */
export function labFlavours(text: string): FlavourSpec {
  const one = LabFlavour.safeParse(text);
  if (one.success) return { flavour: one.data };
  const flavours: Record<string, LabFlavour> = {};
  for (const item of text.split(',')) {
    const m = /^(h[1-9]\d*)=(.*)$/.exec(item);
    const flavour = LabFlavour.safeParse(m?.[2]);
    if (m === null || !flavour.success)
      throw new InvalidArgumentError('Expected debian, pve, or per host h<n>=debian|pve separated by commas.');
    flavours[m[1] as string] = flavour.data;
  }
  return { flavours };
}

/** `--vm-kind`: qemu (real guests) or netns (namespace VMs). */
export function labVmKind(text: string): LabVmKind {
  const kind = LabVmKind.safeParse(text);
  if (!kind.success) throw new InvalidArgumentError('Expected qemu (real QEMU guests) or netns (namespace VMs).');
  return kind.data;
}

/** The lab lives in <REFIT_HOME>/lab. */
export const labDirOf = (home = refitHome()) => path.join(home, 'lab');

async function usage<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (
      err instanceof LabNotFoundError ||
      err instanceof LabSetupError ||
      err instanceof HostPackageError ||
      err instanceof LabFaultError
    )
      throw new UsageError(err.message);
    throw err;
  }
}

export function renderLabStatus(s: LabStatus): string {
  const probed = s.hosts.some((h) => h.reachable !== undefined);
  const rows = s.hosts.map((h) => [
    h.id,
    h.ns,
    h.address,
    h.up ? 'up' : 'DOWN',
    h.bridge,
    `${h.sriov.numVfs}/${h.sriov.totalVfs}${h.sriov.iommu ? ' iommu' : ''}`,
    h.cordoned ? 'cordoned' : '',
    ...(probed ? [h.reachable === undefined ? '' : h.reachable ? 'reachable' : 'UNREACHABLE'] : []),
    h.vms.join(','),
  ]);
  const header = ['HOST', 'NS', 'ADDRESS', 'STATE', 'BRIDGE', 'VFS', 'CORDON', ...(probed ? ['PROBE'] : []), 'VMS'];
  return [
    `lab ${s.labDir}: switch ${s.switch.ns} ${s.switch.address}, network ${s.network} (inside the lab's namespaces only)`,
    ...tableLines(rows, { header }),
  ].join('\n');
}

export function registerLabCommands(program: Command): void {
  const lab = program
    .command('lab')
    .description('the network-namespace lab: a fleet of real Linux hosts on this machine (root)');

  lab
    .command('up')
    .description('build the lab: switch, hosts with vmbr0, their own Open vSwitch, /etc files and fake SR-IOV NIC, VMs')
    .option('--hosts <n>', 'how many hosts', positiveInteger, 3)
    .option('--vms <m>', 'VMs per host', nonNegativeInteger, 1)
    .option('--prefix <prefix>', 'namespace name prefix', 'rf-')
    .option('--without-sriov <hosts>', 'hosts whose NIC has no SR-IOV, e.g. h3 (for failure tests)')
    .option(
      '--bond <hosts>',
      'hosts whose uplink is two NICs declared as a Linux bond (802.3ad), the switch side an OVS bond with LACP, e.g. h1,h2 (see docs/lab.md)',
    )
    .option(
      '--vm-kind <kind>',
      'netns (namespace VMs) or qemu (real QEMU guests, live-migrated with QMP; needs scripts/setup-guest.sh; see docs/lab.md)',
      labVmKind,
      'netns' as LabVmKind,
    )
    .option(
      '--flavour <flavour>',
      'debian (classic ifupdown) or pve (ifupdown2, as Proxmox VE 7/8), for every host or per host: h1=pve,h2=pve (others debian)',
      labFlavours,
    )
    .action(
      async (opts: {
        hosts: number;
        vms: number;
        prefix: string;
        withoutSriov?: string;
        bond?: string;
        flavour?: FlavourSpec;
        vmKind: LabVmKind;
      }) => {
        const prefix = LabPrefix.safeParse(opts.prefix);
        if (!prefix.success) throw new UsageError(`--prefix: ${prefix.error.issues[0]?.message}`);
        const noSriov = opts.withoutSriov !== undefined ? opts.withoutSriov.split(',').filter((h) => h !== '') : [];
        const state = await usage(() =>
          labUp(
            {
              labDir: labDirOf(),
              hosts: opts.hosts,
              vmsPerHost: opts.vms,
              prefix: prefix.data,
              noSriov,
              bonds: opts.bond?.split(',').filter((h) => h !== '') ?? [],
              vmKind: opts.vmKind,
              ...opts.flavour,
            },
            createLogger('refit-lab'),
          ),
        );
        process.stdout.write(renderLabStatus(await labStatus(state)) + '\n');
      },
    );

  lab
    .command('status')
    .description('show each lab host: boot id, bridge type, VFs, VMs')
    .option('--json', 'print JSON')
    .option('--probe', 'also send a few packets from the switch to each host')
    .action(async (opts: { json?: boolean; probe?: boolean }) => {
      const state = await usage(() => loadLab(labDirOf()));
      const status = await labStatus(state, { probe: opts.probe ?? false });
      process.stdout.write(opts.json ? JSON.stringify(status, null, 2) + '\n' : renderLabStatus(status) + '\n');
    });

  lab
    .command('down')
    .description('remove everything the lab made (found by name, so it works after a crash too)')
    .option('--prefix <prefix>', 'namespace name prefix when there is no state file (default: rf-)')
    .action(async (opts: { prefix?: string }) => {
      // The state file knows the prefix the lab was made with; a flag only stands in when it is gone.
      const report = await labDown({ labDir: labDirOf(), ...(opts.prefix ? { prefix: opts.prefix } : {}) });
      process.stdout.write(
        `lab down: ${report.namespaces.length} namespaces, ${report.processes.length} processes, removed ${report.removed.join(' ') || 'nothing else'}\n`,
      );
    });

  lab
    .command('reboot <host>')
    .description('reboot a lab host: only what was persisted comes back (interfaces, grub, VF count)')
    .action(async (hostId: string) => {
      const state = await usage(() => loadLab(labDirOf()));
      const host = await usage(async () => labHost(state, hostId));
      if ((await liveSupervisor(host)) !== undefined) {
        // Its agent runs as a service (refit lab agents): the supervisor stops it, reboots, starts it.
        const before = await readBootId(host);
        await requestReboot(host);
        const bootId = await until(
          async () => {
            const now = await readBootId(host);
            return now !== before && !existsSync(hostPaths(host).down) && now;
          },
          { what: `${host.id} to come back with a new boot id`, timeoutMs: 180_000 },
        );
        process.stdout.write(
          `${host.id} rebooted: boot id ${bootId}; its agent was restarted from refit-host.service\n`,
        );
        return;
      }
      const booted = await rebootHost(state, host);
      process.stdout.write(`${host.id} rebooted: boot id ${booted.bootId}\ncmdline: ${booted.cmdline}\n`);
    });

  lab
    .command('migrate <vm> <host>')
    .description(
      'live-migrate a lab VM to another lab host (a QEMU guest by QMP migrate; its MAC and address stay), measuring the loss of a ping stream',
    )
    .action(async (vm: string, hostId: string) => {
      const state = await usage(() => loadLab(labDirOf()));
      const moved = await usage(() => migrateVm(state, vm, hostId));
      const measured = describeMove(moved);
      process.stdout.write(
        moved.moved
          ? `${vm}: ${moved.from} → ${moved.to}${measured ? ` (${measured})` : ''}\n`
          : `${vm} is already on ${moved.to}\n`,
      );
    });

  lab
    .command('fault <host> <fault>')
    .description(
      "inject a fault on a host's switch port: loss (8 kbit/s through a 1-packet queue), port-security (pin its MAC), clear",
    )
    .action(async (hostId: string, fault: string) => {
      const state = await usage(() => loadLab(labDirOf()));
      const host = await usage(async () => labHost(state, hostId));
      if (fault === 'loss') await usage(() => injectLoss(state, host));
      else if (fault === 'port-security')
        process.stdout.write(`pinned ${await usage(() => injectPortSecurity(state, host))} on ${host.switchPort}\n`);
      else if (fault === 'clear') await clearFaults(state, host);
      else throw new UsageError(`unknown fault "${fault}" (loss, port-security, clear)`);
    });

  lab
    .command('agents')
    .description(
      "run each lab host's agent from the host package, as its systemd unit would (lab driver, own NATS identity), until Ctrl-C",
    )
    .option('--package <deb>', 'the host package (default: what npm run package built, dist/package/)')
    .option(
      '--own-keys',
      'each agent makes and keeps its own NATS key (as on a real host); their public keys go to <lab>/refit-hosts.txt for refit enroll --from',
    )
    .option(
      '--confirm <mode>',
      'how ovs-convert is confirmed: probe (packets from the lab switch) or controller (its own word over NATS)',
      'probe',
    )
    .action(async (opts: { package?: string; confirm: string; ownKeys?: boolean }) => {
      const confirm = opts.confirm;
      if (confirm !== 'probe' && confirm !== 'controller')
        throw new UsageError('--confirm must be probe or controller');
      const state = await usage(() => loadLab(labDirOf()));
      const config = loadConfig();
      const log = createLogger('refit-lab-agents', { driver: 'lab' });
      const hostPackage = path.resolve(opts.package ?? defaultHostPackage());
      const workers = await usage(() =>
        startLabWorkers({
          lab: state,
          home: config.home,
          natsUrl: config.natsUrl,
          natsTls: config.natsTls,
          log,
          confirm,
          hostPackage,
          ownKeys: opts.ownKeys ?? false,
        }),
      );
      if (workers.enrollFile !== undefined)
        process.stderr.write(
          `refit lab agents: each agent has its own key and waits to be admitted; their public keys are in ${workers.enrollFile}\n`,
        );
      process.stderr.write(
        `refit lab agents: ${state.hosts.map((h) => h.id).join(', ')} from ${hostPackage} (refit-host.service's ExecStart and /etc/refit/host.env per host; lab driver: real commands in the lab's namespaces), NATS ${config.natsUrl}\n`,
      );
      await untilStopSignal();
      await workers.stop();
    });
}
