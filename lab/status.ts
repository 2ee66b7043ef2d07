import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { iommuActive } from '../activities/host/linux/boot-config.js';
import { reachableFromSwitch, runningBridge } from '../activities/host/lab/attach.js';
import { hostPaths } from '../activities/host/lab/layout.js';
import { locateVms } from '../activities/host/lab/migrate.js';
import { ovsPids } from '../activities/host/lab/ovs-daemons.js';
import type { LabFlavour, LabHost, LabState } from '../activities/host/lab/state.js';

export interface LabHostStatus {
  id: string;
  ns: string;
  /** debian (classic ifupdown) or pve (ifupdown2). */
  flavour: LabFlavour;
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
    flavour: host.flavour,
    address: host.address,
    up,
    bootId: await readTrim(p.bootId),
    bridge: bridge.type,
    ovs: { ovsdbServer: pids['ovsdb-server'], vswitchd: pids['ovs-vswitchd'] },
    sriov: {
      totalVfs: Number((await readTrim(path.join(device, 'sriov_totalvfs'))) ?? 0),
      numVfs: Number((await readTrim(path.join(device, 'sriov_numvfs'))) ?? 0),
      iommu: await iommuActive(p.sysIommu),
    },
    cordoned: existsSync(p.cordoned),
    vms,
  };
  if (probe) status.reachable = await reachableFromSwitch(lab, host.address.split('/')[0] as string);
  return status;
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
