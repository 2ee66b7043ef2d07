import { rootRunner } from '../activities/host/lab/exec.js';
import { parseIpLinks } from '../activities/host/linux/ip.js';
import type { LabHost, LabState } from '../activities/host/lab/state.js';
import { RefitError } from '../schemas/errors.js';

/**
 * Faults the lab can inject on a host's switch port, for failure-path tests. They live in the switch
 * namespace, so a host's own reboot does not clear them; `clearFaults` does.
 */

export class LabFaultError extends RefitError {}

/** A bonded host's cables end in the switch's OVS bond, where these faults are not modelled. */
function refuseBonded(host: LabHost, fault: string): void {
  if (host.bond !== undefined)
    throw new LabFaultError(
      `${host.id} has a bonded uplink: the lab's ${fault} fault is made on a Linux bridge port and is not modelled on the switch's OVS bond`,
    );
}

/** Packet loss towards the host: the switch port sends at most `rateKbit` kbit/s through a one-packet queue. */
export async function injectLoss(lab: LabState, host: LabHost, rateKbit = 8): Promise<void> {
  refuseBonded(host, 'loss');
  const tc = (...args: string[]) => rootRunner(['ip', 'netns', 'exec', lab.switch.ns, 'tc', ...args]);
  await clearLoss(lab, host);
  await tc('qdisc', 'add', 'dev', host.switchPort, 'root', 'handle', '1:', 'htb', 'default', '1');
  const rate = `${Math.max(1, Math.round(rateKbit))}kbit`;
  await tc(
    'class',
    'add',
    'dev',
    host.switchPort,
    'parent',
    '1:',
    'classid',
    '1:1',
    'htb',
    'rate',
    rate,
    'ceil',
    rate,
    'burst',
    '200',
    'cburst',
    '200',
  );
  await tc('qdisc', 'add', 'dev', host.switchPort, 'parent', '1:1', 'handle', '10:', 'pfifo', 'limit', '1');
}

export async function clearLoss(lab: LabState, host: LabHost): Promise<void> {
  await rootRunner(['ip', 'netns', 'exec', lab.switch.ns, 'tc', 'qdisc', 'del', 'dev', host.switchPort, 'root']).catch(
    () => undefined,
  );
}

/**
 * Port security as on a physical switch: the host's port accepts only the MAC it has now and floods
 * nothing else to it. Moving the host address to another interface (an OVS internal port has its own
 * MAC) cuts the host off, as it would in a data centre with sticky MACs.
 */
export async function injectPortSecurity(lab: LabState, host: LabHost): Promise<string> {
  refuseBonded(host, 'port-security');
  const links = parseIpLinks((await rootRunner(['ip', '-n', host.ns, '-j', '-d', 'link', 'show'])).stdout);
  const mac = links.find((l) => l.name === 'vmbr0')?.mac ?? links.find((l) => l.name === host.uplink)?.mac;
  if (mac === undefined) throw new Error(`${host.id}: no MAC to pin`);
  const sw = ['ip', 'netns', 'exec', lab.switch.ns];
  await rootRunner([...sw, 'bridge', 'fdb', 'replace', mac, 'dev', host.switchPort, 'master', 'static']);
  await rootRunner([...sw, 'bridge', 'link', 'set', 'dev', host.switchPort, 'learning', 'off', 'flood', 'off']);
  await rootRunner([...sw, 'bridge', 'fdb', 'flush', 'dev', host.switchPort, 'dynamic']).catch(() => undefined);
  return mac;
}

export async function clearPortSecurity(lab: LabState, host: LabHost): Promise<void> {
  const sw = ['ip', 'netns', 'exec', lab.switch.ns];
  await rootRunner([...sw, 'bridge', 'link', 'set', 'dev', host.switchPort, 'learning', 'on', 'flood', 'on']);
  const fdb = await rootRunner([...sw, 'bridge', 'fdb', 'show', 'dev', host.switchPort]);
  for (const line of fdb.stdout.split('\n').filter((l) => / static/.test(l) && / master /.test(l))) {
    const mac = line.split(' ')[0] as string;
    await rootRunner([...sw, 'bridge', 'fdb', 'del', mac, 'dev', host.switchPort, 'master']).catch(() => undefined);
  }
}

export async function clearFaults(lab: LabState, host: LabHost): Promise<void> {
  if (host.bond !== undefined) return;
  await clearLoss(lab, host);
  await clearPortSecurity(lab, host);
}
