import { ifName, type IfName } from './names.js';
import { OvsOutputError } from './ovs-vsctl.js';

const OVS_APPCTL = ['ovs-appctl', '--timeout=10'] as const;

export const ovsBondShowArgv = (bond: IfName): string[] => [...OVS_APPCTL, 'bond/show', ifName(bond)];
export const ovsLacpShowArgv = (bond: IfName): string[] => [...OVS_APPCTL, 'lacp/show', ifName(bond)];

export interface OvsBondMember {
  name: string;
  enabled: boolean;
  active: boolean;
}
/** `ovs-appctl bond/show <bond>`, the parts refit checks. */
export interface OvsBondShow {
  name: string;
  mode: string;
  /** `off`, `configured` (LACP asked, no partner), `negotiated`. */
  lacpStatus: string;
  members: OvsBondMember[];
}

/** One member in `ovs-appctl lacp/show`: `current attached`, `expired attached`, `defaulted detached`, ... */
export interface LacpMember {
  name: string;
  status: string;
  attached: boolean;
  partnerSysId: string | undefined;
}
export interface LacpShow {
  name: string;
  /** `active negotiated`, `active`, `passive negotiated`, ... */
  status: string;
  negotiated: boolean;
  lacpTime: string | undefined;
  members: LacpMember[];
}

const header = (line: string | undefined) => /^---- (\S+) ----$/.exec(line?.trim() ?? '')?.[1];

/** Parse `ovs-appctl bond/show <bond>` (OVS 3.x): mode, LACP status and each member's state. */
export function parseBondShow(stdout: string): OvsBondShow {
  const lines = stdout.split('\n');
  const name = header(lines[0]);
  if (name === undefined) throw new OvsOutputError('ovs-appctl bond/show: no "---- <bond> ----" header');
  const field = (key: string) =>
    lines
      .find((l) => l.startsWith(`${key}: `))
      ?.slice(key.length + 2)
      .trim();
  const mode = field('bond_mode');
  if (mode === undefined) throw new OvsOutputError(`ovs-appctl bond/show ${name}: no bond_mode line`);
  const members: OvsBondMember[] = [];
  for (const line of lines) {
    const m = /^member (\S+): (\S+)$/.exec(line.trim());
    if (m !== null) members.push({ name: m[1] as string, enabled: m[2] === 'enabled', active: false });
    else if (line.trim() === 'active member' && members.length > 0)
      (members[members.length - 1] as OvsBondMember).active = true;
  }
  return { name, mode, lacpStatus: field('lacp_status') ?? 'off', members };
}

/** Parse `ovs-appctl lacp/show <bond>`: the bond's LACP status and each member's state and partner. */
export function parseLacpShow(stdout: string): LacpShow {
  const lines = stdout.split('\n');
  const name = header(lines[0]);
  if (name === undefined) throw new OvsOutputError('ovs-appctl lacp/show: no "---- <bond> ----" header');
  const status =
    lines
      .find((l) => /^\s+status: /.test(l))
      ?.split(': ')[1]
      ?.trim() ?? '';
  const lacpTime = lines
    .find((l) => /^\s+lacp_time: /.test(l))
    ?.split(': ')[1]
    ?.trim();
  const members: LacpMember[] = [];
  for (const line of lines) {
    const m = /^member: (\S+): (.+)$/.exec(line.trim());
    if (m !== null) {
      const state = (m[2] as string).trim();
      members.push({
        name: m[1] as string,
        status: state,
        attached: /\battached\b/.test(state),
        partnerSysId: undefined,
      });
      continue;
    }
    const partner = /^\s+partner sys_id: (\S+)$/.exec(line);
    if (partner !== null && members.length > 0) (members[members.length - 1] as LacpMember).partnerSysId = partner[1];
  }
  return { name, status, negotiated: status.split(/\s+/).includes('negotiated'), lacpTime, members };
}

/** What is wrong with a running OVS bond against what was asked; empty when it is as wanted. */
export function bondProblems(
  bond: OvsBondShow,
  lacp: LacpShow | undefined,
  want: { mode: string; lacp: boolean; members: readonly string[] },
): string[] {
  const problems: string[] = [];
  if (bond.mode !== want.mode) problems.push(`bond_mode is ${bond.mode}, not ${want.mode}`);
  const names = bond.members.map((m) => m.name).sort();
  const wanted = [...want.members].sort();
  if (names.join(' ') !== wanted.join(' '))
    problems.push(`members are ${names.join(' ') || 'none'}, not ${wanted.join(' ')}`);
  const disabled = bond.members.filter((m) => !m.enabled).map((m) => m.name);
  if (disabled.length > 0) problems.push(`member${disabled.length > 1 ? 's' : ''} ${disabled.join(' ')} not enabled`);
  if (want.lacp) {
    if (bond.lacpStatus !== 'negotiated' || lacp?.negotiated !== true)
      problems.push(`LACP is ${bond.lacpStatus}, not negotiated with a partner`);
    const detached = (lacp?.members ?? []).filter((m) => !m.attached || !m.status.startsWith('current'));
    if (detached.length > 0)
      problems.push(
        `LACP members ${detached.map((m) => `${m.name} (${m.status})`).join(', ')} not current and attached`,
      );
  } else if (bond.lacpStatus !== 'off') {
    problems.push(`LACP is ${bond.lacpStatus}, not off`);
  }
  return problems;
}
