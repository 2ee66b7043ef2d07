import { describe, expect, it } from 'vitest';
import { captured } from './fixtures.js';
import { bondProblems, ovsBondShowArgv, parseBondShow, parseLacpShow } from './ovs-appctl.js';
import { ifName } from './names.js';
import { OvsOutputError } from './ovs-vsctl.js';

const want = { mode: 'balance-tcp', lacp: true, members: ['eno1', 'eno2'] };

describe('ovs-appctl bond/show and lacp/show (OVS 3.1.0)', () => {
  it('reads a balance-tcp bond with LACP negotiated and both members enabled', () => {
    const bond = parseBondShow(captured('ovs-appctl-bond-show-balance-tcp-lacp.stdout'));
    expect(bond).toEqual({
      name: 'bond0',
      mode: 'balance-tcp',
      lacpStatus: 'negotiated',
      members: [
        { name: 'eno1', enabled: true, active: true },
        { name: 'eno2', enabled: true, active: false },
      ],
    });
    const lacp = parseLacpShow(captured('ovs-appctl-lacp-show-negotiated.stdout'));
    expect(lacp).toMatchObject({ name: 'bond0', status: 'active negotiated', negotiated: true, lacpTime: 'fast' });
    expect(lacp.members).toEqual([
      { name: 'eno1', status: 'current attached', attached: true, partnerSysId: 'ee:a2:e4:3b:3a:41' },
      { name: 'eno2', status: 'current attached', attached: true, partnerSysId: 'ee:a2:e4:3b:3a:41' },
    ]);
    expect(bondProblems(bond, lacp, want)).toEqual([]);
  });

  it('names the member that is down and its expired LACP state', () => {
    const bond = parseBondShow(captured('ovs-appctl-bond-show-member-down.stdout'));
    const lacp = parseLacpShow(captured('ovs-appctl-lacp-show-member-down.stdout'));
    expect(bond.members.map((m) => [m.name, m.enabled, m.active])).toEqual([
      ['eno1', false, false],
      ['eno2', true, true],
    ]);
    expect(bondProblems(bond, lacp, want)).toEqual([
      'member eno1 not enabled',
      'LACP members eno1 (expired attached) not current and attached',
    ]);
  });

  it('says LACP is not negotiated when the partner runs none', () => {
    const bond = parseBondShow(captured('ovs-appctl-bond-show-no-partner.stdout'));
    const lacp = parseLacpShow(captured('ovs-appctl-lacp-show-no-partner.stdout'));
    expect(bond.lacpStatus).toBe('configured');
    expect(lacp).toMatchObject({ status: 'active', negotiated: false });
    expect(lacp.members[0]).toMatchObject({
      status: 'defaulted detached',
      attached: false,
      partnerSysId: '00:00:00:00:00:00',
    });
    expect(bondProblems(bond, lacp, want)).toEqual([
      'members eno1 eno2 not enabled',
      'LACP is configured, not negotiated with a partner',
      'LACP members eno1 (defaulted detached), eno2 (defaulted detached) not current and attached',
    ]);
  });

  it('reads active-backup without LACP and balance-slb with it; a wrong mode is a problem', () => {
    const ab = parseBondShow(captured('ovs-appctl-bond-show-active-backup.stdout'));
    expect(ab).toMatchObject({ mode: 'active-backup', lacpStatus: 'off' });
    expect(bondProblems(ab, undefined, { mode: 'active-backup', lacp: false, members: ['eno2', 'eno1'] })).toEqual([]);
    const slb = parseBondShow(captured('ovs-appctl-bond-show-balance-slb.stdout'));
    expect(slb).toMatchObject({ mode: 'balance-slb', lacpStatus: 'negotiated' });
    expect(bondProblems(slb, undefined, { mode: 'active-backup', lacp: false, members: ['eno1'] })).toEqual([
      'bond_mode is balance-slb, not active-backup',
      'members are eno1 eno2, not eno1',
      'LACP is negotiated, not off',
    ]);
  });

  it('refuses output that is not bond/show', () => {
    expect(() => parseBondShow('no such bond\n')).toThrow(OvsOutputError);
    expect(() => parseLacpShow('')).toThrow(OvsOutputError);
  });

  it('takes only checked interface names on the command line', () => {
    expect(ovsBondShowArgv(ifName('bond0'))).toEqual(['ovs-appctl', '--timeout=10', 'bond/show', 'bond0']);
    expect(() => ovsBondShowArgv('--help' as never)).toThrow(/not valid/);
  });
});
