import { describe, expect, it } from 'vitest';
import { diffLines, diffStates, renderChanges } from './diff.js';
import { fitDraft, trimOutput } from './draft.js';

const linuxBridge = `auto lo
iface lo inet loopback

auto vmbr0
iface vmbr0 inet static
	address 192.0.2.10/24
	bridge-ports ens6
	bridge-stp off
`;
const ovsBridge = `auto lo
iface lo inet loopback

auto vmbr0
iface vmbr0 inet manual
	ovs_type OVSBridge
	ovs_ports ens6 vlan1
`;

describe('the diff of a step', () => {
  it('names each changed leaf with its before and after', () => {
    const before = { bridge: { name: 'vmbr0', type: 'linux' }, sriov: { numVfs: 0 }, vms: ['a', 'b'] };
    const after = { bridge: { name: 'vmbr0', type: 'ovs' }, sriov: { numVfs: 7 }, vms: [] };
    expect(diffStates(before, after)).toEqual([
      { path: 'bridge.type', before: 'linux', after: 'ovs' },
      { path: 'sriov.numVfs', before: 0, after: 7 },
      { path: 'vms', before: ['a', 'b'], after: [] },
    ]);
    expect(diffStates(before, structuredClone(before))).toEqual([]);
  });

  it('gives a config file as a line diff with context', () => {
    const [change] = diffStates({ interfaces: linuxBridge }, { interfaces: ovsBridge });
    expect(change?.path).toBe('interfaces');
    expect(change?.lines).toEqual([
      ' ',
      ' auto vmbr0',
      '-iface vmbr0 inet static',
      '-\taddress 192.0.2.10/24',
      '-\tbridge-ports ens6',
      '-\tbridge-stp off',
      '+iface vmbr0 inet manual',
      '+\tovs_type OVSBridge',
      '+\tovs_ports ens6 vlan1',
      ' ',
    ]);
    expect(renderChanges([change!])[0]).toBe('interfaces:');
  });

  it('separates distant hunks', () => {
    const a = Array.from({ length: 20 }, (_, i) => `line ${i}`);
    const b = a.map((l, i) => (i === 2 || i === 17 ? `${l} changed` : l));
    expect(diffLines(a.join('\n'), b.join('\n'))).toContain('@@');
  });
});

describe('fitting an event in one message', () => {
  it('keeps the start and end of a long output', () => {
    const out = trimOutput('x'.repeat(3000) + 'END', 100);
    expect(out.startsWith('x'.repeat(50))).toBe(true);
    expect(out.endsWith('END')).toBe(true);
    expect(out).toContain('characters cut');
  });

  it('replaces the largest data by its size and hash, saying so', () => {
    const draft = {
      eventId: 'e',
      at: '2025-01-01T00:00:00.000Z',
      actor: 'host:h1',
      type: 'step.succeeded' as const,
      data: { summary: 'ok', before: { big: 'y'.repeat(5000) }, after: {} },
    };
    const fitted = fitDraft(draft, 1000);
    expect(fitted.data.summary).toBe('ok');
    expect(fitted.data.before).toMatchObject({ omitted: true, sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
  });
});
