import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll } from 'vitest';
import { SimDriver } from '../../activities/host/sim/driver.js';
import { labDown } from '../../lab/down.js';
import { createLabDriver } from '../../activities/host/lab/driver.js';
import { labUp } from '../../lab/up.js';
import { driverContract } from './driver-contract.js';
import { labSkipReason, testLabDir } from './lab-env.js';

const scratch = mkdtempSync(path.join(os.tmpdir(), 'refit-contract-'));
const skip = labSkipReason();
const { labDir, prefix } = testLabDir('c');

afterAll(async () => {
  if (skip === '') await labDown({ labDir, prefix });
  rmSync(path.dirname(labDir), { recursive: true, force: true });
  rmSync(scratch, { recursive: true, force: true });
});

driverContract('sim', async () => {
  const driver = await SimDriver.open({
    hostId: 'contract-sim',
    stateDir: path.join(scratch, 'sim'),
    speed: 100,
    rebootPauseMs: 20,
    shape: { vms: 2, totalVfs: 7 },
  });
  return { driver, hostId: 'contract-sim', nic: 'eno1', totalVfs: 7, whenUp: () => driver.whenUp() };
});

driverContract(
  'lab',
  async () => {
    // Namespace VMs, not QEMU guests: this contract suite is about the driver's steps, and stays fast.
    const lab = await labUp({ labDir, hosts: 2, vmsPerHost: 1, prefix, vmKind: 'netns' });
    const driver = await createLabDriver({ hostId: 'h1', labDir, stateDir: path.join(scratch, 'lab-h1') });
    return { driver, hostId: lab.hosts[0]?.id ?? 'h1', nic: 'ens6', totalVfs: 7, whenUp: () => driver.whenUp() };
  },
  { skip },
);
