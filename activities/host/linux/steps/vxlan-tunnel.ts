import type { StepPreview } from '../../../../schemas/preview.js';
import { VXLAN_IPV4_OVERHEAD, type StepOutcome } from '../../../../schemas/steps.js';
import { filePreview } from '../../preview.js';
import { StepFailedError, throwIfAborted, type StepContext } from '../../driver.js';
import { CommandFailedError, type CommandRunner } from '../command.js';
import { backupFile, readText, writeTextAtomic, type HostEnv } from '../host-env.js';
import { describeIfupdown, detectIfupdown, ifupAs, type IfupdownFlavour } from '../ifupdown.js';
import { ipLinkDeleteArgv, ipLinksArgv, parseIpLinks } from '../ip.js';
import { ifName, type IfName } from '../names.js';
import { ifaceStanzas, parseInterfaces } from '../interfaces-file.js';
import { lineDiff } from '../observe.js';
import { ovsDelPortArgv, parseOvsdbTable } from '../ovs-vsctl.js';
import {
  ovsFindInterfaceArgv,
  parseLinkVxlan,
  parsePingCounts,
  pingDfArgv,
  planVxlanFile,
  removeVxlan,
  tunnelDifferences,
  VxlanPlanError,
  type VxlanParams,
  type VxlanTunnel,
} from '../vxlan.js';

/** IPv4 (20) and ICMP (8) headers: a ping's payload is the packet's size less these. */
const ICMP_IPV4_HEADERS = 28;

/** The running tunnel of that name, or what else has the name (`other`), or nothing. */
type Running = { tunnel: VxlanTunnel } | { other: string } | undefined;

async function linkMtu(run: CommandRunner, dev: IfName): Promise<number | undefined> {
  try {
    return parseLinkVxlan((await run(ipLinksArgv(dev))).stdout).mtu;
  } catch (err) {
    if (err instanceof CommandFailedError) return undefined;
    throw err;
  }
}

async function observeTunnel(env: HostEnv, p: VxlanParams): Promise<Running> {
  const name = ifName(p.name);
  if (p.type === 'ovs') {
    const [row] = parseOvsdbTable((await env.run(ovsFindInterfaceArgv(name))).stdout);
    if (row === undefined) return undefined;
    if (row.type !== 'vxlan')
      return {
        other: `an OVS interface of type ${typeof row.type === 'string' && row.type !== '' ? row.type : 'system'}`,
      };
    const options = (typeof row.options === 'object' && !Array.isArray(row.options) ? row.options : {}) as Record<
      string,
      unknown
    >;
    const ports = (await env.run(['ovs-vsctl', '--timeout=10', 'list-ports', ifName(p.bridge)])).stdout.split('\n');
    const tag = (await env.run(['ovs-vsctl', '--timeout=10', 'get', 'Port', name, 'tag'])).stdout.trim();
    return {
      tunnel: {
        type: 'ovs',
        name,
        vni: Number(options.key),
        remote: typeof options.remote_ip === 'string' ? options.remote_ip : '',
        local: typeof options.local_ip === 'string' ? options.local_ip : undefined,
        dstPort: options.dst_port === undefined ? 4789 : Number(options.dst_port),
        bridge: ports.includes(name) ? p.bridge : undefined,
        tag: /^\d+$/.test(tag) ? Number(tag) : undefined,
      },
    };
  }
  const links = parseIpLinks((await env.run(ipLinksArgv())).stdout);
  if (!links.some((l) => l.name === name)) return undefined;
  const link = parseLinkVxlan((await env.run(ipLinksArgv(name))).stdout);
  return link.tunnel !== undefined ? { tunnel: link.tunnel } : { other: `a ${link.kind ?? 'plain'} device` };
}

function wanted(p: VxlanParams, mtu: number): VxlanTunnel {
  return p.type === 'ovs'
    ? {
        type: 'ovs',
        name: p.name,
        vni: p.vni,
        remote: p.remote,
        local: p.local,
        dstPort: p.dstPort,
        bridge: p.bridge,
        tag: p.tag,
      }
    : {
        type: 'linux',
        name: p.name,
        vni: p.vni,
        remote: p.remote,
        local: p.local,
        dstPort: p.dstPort,
        underlay: p.underlay,
        mtu,
      };
}

/** The MTU the tunnel carries: the underlay's less the VXLAN overhead, or the plan's when it is smaller. */
async function tunnelMtu(env: HostEnv, p: VxlanParams): Promise<{ underlayMtu: number; mtu: number }> {
  const underlayMtu = await linkMtu(env.run, ifName(p.underlay, 'underlay'));
  if (underlayMtu === undefined) throw new StepFailedError(`vxlan-tunnel: the underlay ${p.underlay} does not exist`);
  const most = underlayMtu - VXLAN_IPV4_OVERHEAD;
  if (p.mtu !== undefined && p.mtu > most)
    throw new StepFailedError(
      `vxlan-tunnel: mtu ${p.mtu} is more than the underlay ${p.underlay} leaves (${underlayMtu} − ${VXLAN_IPV4_OVERHEAD} = ${most})`,
    );
  return { underlayMtu, mtu: p.mtu ?? most };
}

/** Take the running tunnel away whatever made it. */
async function removeRunning(env: HostEnv, p: VxlanParams, flavour: IfupdownFlavour, defined: boolean) {
  const name = ifName(p.name);
  if (defined && flavour === 1)
    await env.run(['ifdown', '--force', name], { timeoutMs: 60_000 }).catch(() => undefined);
  if (p.type === 'ovs') await env.run(ovsDelPortArgv(ifName(p.bridge), name));
  else if ((await observeTunnel(env, p)) !== undefined) await env.run(ipLinkDeleteArgv(name));
}

/** Small pings, one at a time, until one comes back: the ends learn each other's addresses meanwhile. */
const WARM_UP_PINGS = 8;

/**
 * Pings across the tunnel with the don't-fragment bit: the largest payload that must fit comes back,
 * one byte more does not. Small pings first, until one comes back, let both ends learn where the
 * other is (ARP across the tunnel, and Open vSwitch's tunnel neighbour table, which drops what it
 * cannot send yet), so that the counted pings do not lose packets to that.
 */
async function checkTunnel(env: HostEnv, p: VxlanParams, mtu: number, ctx: StepContext) {
  const check = p.check;
  if (check === undefined) return undefined;
  let run = env.run;
  if (check.fromVm !== undefined) {
    if (env.runInVm === undefined)
      throw new StepFailedError(`vxlan-tunnel: this host cannot send from VM ${check.fromVm} (only the lab can)`);
    run = env.runInVm(check.fromVm);
  }
  const payload = mtu - ICMP_IPV4_HEADERS;
  const ping = async (size: number, count: number) =>
    parsePingCounts(
      (await run(pingDfArgv(check.address, size, count), { okExitCodes: [1], timeoutMs: 30_000 })).stdout,
    );
  ctx.progress(80, `pinging ${check.address} across the tunnel with DF at ${payload} bytes`);
  for (let attempt = 0; attempt < WARM_UP_PINGS; attempt++) {
    if ((await ping(56, 1)).received > 0) break;
    throwIfAborted(ctx.signal);
  }
  const fits = await ping(payload, 5);
  const tooBig = await ping(payload + 1, 3);
  const result = { address: check.address, payload, fits, tooBig };
  if (fits.received < fits.transmitted)
    throw new StepFailedError(
      `vxlan-tunnel: ${fits.received} of ${fits.transmitted} pings of ${payload} bytes with DF came back from ${check.address}: the tunnel does not carry its MTU (${mtu})`,
    );
  if (tooBig.received > 0)
    throw new StepFailedError(
      `vxlan-tunnel: ${tooBig.received} pings of ${payload + 1} bytes with DF came back from ${check.address}: the MTU along the tunnel is larger than ${mtu}, not what the underlay leaves`,
    );
  return result;
}

/**
 * Make the tunnel (an OVS vxlan port, or a Linux vxlan device) the way the host's ifupdown makes it
 * at boot: write its stanza, bring it up with ifup/ifreload, read it back and compare, then prove it
 * with DF pings. A tunnel of the same name already running (or defined) as asked is left alone; one
 * running or defined otherwise (another VNI, remote, port...) is refused, naming the differences: apply
 * only ever adds a tunnel, so revert (which removes it) never removes a configuration refit did not make.
 */
export async function applyVxlanTunnel(env: HostEnv, p: VxlanParams, ctx: StepContext): Promise<StepOutcome> {
  const name = ifName(p.name);
  const flavour = detectIfupdown(env.paths.ifupdown2);
  const { underlayMtu, mtu } = await tunnelMtu(env, p);
  const want = wanted(p, mtu);
  const text = (await readText(env.paths.interfaces)) ?? '';
  let planned;
  try {
    planned = planVxlanFile(text, p, flavour, mtu);
  } catch (err) {
    if (err instanceof VxlanPlanError) throw new StepFailedError(`vxlan-tunnel: ${err.message}`, { cause: err });
    throw err;
  }
  const observed = await observeTunnel(env, p);
  if (observed !== undefined && 'other' in observed)
    throw new StepFailedError(`vxlan-tunnel: ${name} exists already as ${observed.other}; choose another name`);
  const running = observed?.tunnel;
  const differences = running === undefined ? [] : tunnelDifferences(running, want);
  if (differences.length > 0)
    throw new StepFailedError(
      `vxlan-tunnel: ${name} runs already, otherwise than planned (${differences.join(', ')}); revert it or choose another name`,
    );
  const defined = ifaceStanzas(parseInterfaces(text), name)[0];
  // A stanza an older refit wrote lacks the device's MAC; it is the same tunnel, and gets its MAC now.
  const withoutMac = planned.stanza.replace(/^\thwaddress \S+\n/m, '').replace(/ address [0-9a-f:]{17} mtu /, ' mtu ');
  if (defined !== undefined && !planned.stanza.endsWith(defined.raw) && !withoutMac.endsWith(defined.raw))
    throw new StepFailedError(
      `vxlan-tunnel: /etc/network/interfaces defines ${name} otherwise than planned; revert it or choose another name`,
    );
  const before = { tunnel: running ?? null, underlayMtu };
  const changed = planned.changed || running === undefined;
  throwIfAborted(ctx.signal);
  if (changed) {
    ctx.progress(20, `writing ${name} to /etc/network/interfaces (${describeIfupdown(flavour)})`);
    if (planned.changed) {
      await backupFile(env, env.paths.interfaces, text, `before-vxlan-${name}`);
      await writeTextAtomic(env.paths.interfaces, planned.text);
    }
    ctx.progress(50, `bringing ${name} up`);
    await ifupAs(env.run, name, flavour, 60_000);
  }
  const now = await observeTunnel(env, p);
  const left = now !== undefined && 'tunnel' in now ? tunnelDifferences(now.tunnel, want) : ['not running'];
  if (left.length > 0)
    throw new StepFailedError(`vxlan-tunnel: after bringing it up, ${name} is not as planned (${left.join(', ')})`);
  const check = await checkTunnel(env, p, mtu, ctx);
  ctx.progress(100, `${name} carries VNI ${p.vni} to ${p.remote}:${p.dstPort}`);
  return {
    changed,
    summary: `${p.type === 'ovs' ? `OVS vxlan port ${name} on ${p.bridge}` : `vxlan device ${name}`}: VNI ${p.vni} to ${p.remote}, UDP ${p.dstPort}, MTU ${mtu} (underlay ${p.underlay} ${underlayMtu} − ${VXLAN_IPV4_OVERHEAD})${changed ? '' : ' (nothing to change)'}${check !== undefined ? `; ${check.payload}-byte DF pings to ${check.address} pass, ${check.payload + 1} do not` : ''}`,
    before,
    after: {
      tunnel: now !== undefined && 'tunnel' in now ? now.tunnel : null,
      mtu,
      ifupdown: flavour === 2 ? 'ifupdown2' : 'ifupdown',
      interfacesDiff: lineDiff(text, planned.text),
      ...(check !== undefined ? { check } : {}),
    },
  };
}

/** Take the tunnel down and out of /etc/network/interfaces (and out of the bridge's ovs_ports). */
export async function revertVxlanTunnel(env: HostEnv, p: VxlanParams, ctx: StepContext): Promise<StepOutcome> {
  const name = ifName(p.name);
  const flavour = detectIfupdown(env.paths.ifupdown2);
  const text = (await readText(env.paths.interfaces)) ?? '';
  const running = await observeTunnel(env, p);
  if (running !== undefined && 'other' in running)
    throw new StepFailedError(`vxlan-tunnel: ${name} is ${running.other}, not a tunnel; refit leaves it alone`);
  const planned = removeVxlan(text, name, p.type === 'ovs' ? p.bridge : undefined);
  if (running !== undefined) await removeRunning(env, p, flavour, text.includes(`iface ${name} `));
  if (planned.changed) {
    await backupFile(env, env.paths.interfaces, text, `before-vxlan-${name}-revert`);
    await writeTextAtomic(env.paths.interfaces, planned.text);
  }
  const after = await observeTunnel(env, p);
  if (after !== undefined) throw new StepFailedError(`vxlan-tunnel: ${name} is still there after its removal`);
  ctx.progress(100, `${name} removed`);
  return {
    changed: planned.changed || running !== undefined,
    summary: `${name} removed (running system and /etc/network/interfaces)`,
    before: { tunnel: running?.tunnel ?? null },
    after: { tunnel: null, interfacesDiff: lineDiff(text, planned.text) },
  };
}

/** The stanza the step would write, from the host's file and its underlay's MTU (read, nothing changed). */
export async function previewVxlanTunnel(env: HostEnv, p: VxlanParams, index: number): Promise<StepPreview> {
  const base = { index, kind: 'vxlan-tunnel' as const, changes: [] };
  const text = (await readText(env.paths.interfaces)) ?? '';
  try {
    const { mtu } = await tunnelMtu(env, p);
    const plan = planVxlanFile(text, p, detectIfupdown(env.paths.ifupdown2), mtu);
    return {
      ...base,
      summary: `${p.type === 'ovs' ? `OVS vxlan port ${p.name} on ${p.bridge}` : `vxlan device ${p.name}`}: VNI ${p.vni} to ${p.remote}, UDP ${p.dstPort}, MTU ${mtu}`,
      files: [filePreview(env.paths.interfaces, text, plan.text)],
    };
  } catch (err) {
    if (!(err instanceof VxlanPlanError || err instanceof StepFailedError)) throw err;
    return { ...base, summary: 'cannot be planned', files: [], error: err.message };
  }
}
