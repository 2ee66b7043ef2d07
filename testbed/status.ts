import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { cmdlineHasIommu } from '../activities/host/linux/grub.js';
import { hpingArgv, parseHpingStats } from '../activities/host/linux/hping.js';
import { runningBridge } from './attach.js';
import { switchRunner } from './exec.js';
import { hostPaths } from './layout.js';
import { locateVms } from './migrate.js';
import { ovsPids } from './ovs-daemons.js';
import type { LabHost, LabState } from './state.js';

export interface LabHostStatus {
  id: string;
  ns: string;
  address: string;
  up: boolean;
  bootId: string | undefined;
  bridge: string;
  ovs: { ovsdbServer: number | undefined; vswitchd: number | undefined };
  sriov: { totalVfs: number; numVfs: number; iommu: boolean };
  cordoned: boolean;
  vms: string[];
  /** Replies to a few packets from the switch, when asked to probe. */
  reachable?: boolean;
}

export interface LabStatus {
  labDir: string;
  network: string;
  switch: { ns: string; address: string };
  hosts: LabHostStatus[];
  vms: { name: string; address: string; home: string; on: string | undefined }[];
}

const readTrim = (file: string) =>
  readFile(file, 'utf8').then(
    (t) => t.trim(),
    () => undefined,
  );

export async function hostStatus(lab: LabState, host: LabHost, vms: string[], probe = false): Promise<LabHostStatus> {
  const p = hostPaths(host);
  const up = !existsSync(p.down);
  const pids = await ovsPids(host);
  const bridge = up ? await runningBridge(lab, host).catch(() => ({ type: 'unknown' })) : { type: 'down' };
  const device = path.join(p.sys, 'class/net', host.nic, 'device');
  const status: LabHostStatus = {
    id: host.id,
    ns: host.ns,
    address: host.address,
    up,
    bootId: await readTrim(p.bootId),
    bridge: bridge.type,
    ovs: { ovsdbServer: pids['ovsdb-server'], vswitchd: pids['ovs-vswitchd'] },
    sriov: {
      totalVfs: Number((await readTrim(path.join(device, 'sriov_totalvfs'))) ?? 0),
      numVfs: Number((await readTrim(path.join(device, 'sriov_numvfs'))) ?? 0),
      iommu: cmdlineHasIommu((await readTrim(p.procCmdline)) ?? ''),
    },
    cordoned: existsSync(p.cordoned),
    vms,
  };
  if (probe) status.reachable = await reachableFromSwitch(lab, host.address.split('/')[0] as string);
  return status;
}

/** A few ICMP echoes from the lab switch to an address inside the lab. */
export async function reachableFromSwitch(lab: LabState, address: string, count = 3): Promise<boolean> {
  const res = await switchRunner(lab)(hpingArgv({ address, count, intervalUs: 20_000 }), {
    okExitCodes: [1],
    timeoutMs: 15_000,
  });
  return parseHpingStats(res.stderr).received > 0;
}

export async function labStatus(lab: LabState, opts: { probe?: boolean } = {}): Promise<LabStatus> {
  const where = await locateVms(lab);
  const hosts: LabHostStatus[] = [];
  for (const host of lab.hosts) {
    const vms = lab.vms.filter((v) => where.get(v.name) === host.id).map((v) => v.name);
    hosts.push(await hostStatus(lab, host, vms, opts.probe ?? false));
  }
  return {
    labDir: lab.labDir,
    network: lab.network,
    switch: { ns: lab.switch.ns, address: lab.switch.address },
    hosts,
    vms: lab.vms.map((v) => ({ name: v.name, address: v.address, home: v.home, on: where.get(v.name) })),
  };
}
