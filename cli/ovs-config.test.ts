import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { renderOvsConfig } from './ovs-config.js';
import { UsageError } from '../schemas/errors.js';

const PROXMOX = `auto lo
iface lo inet loopback

iface eno1 inet manual

auto vmbr0
iface vmbr0 inet static
\taddress 192.0.2.5/24
\tgateway 192.0.2.1
\tbridge-ports eno1
\tbridge-stp off
\tbridge-fd 0
`;

describe('refit ovs-config', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'refit-ovs-config-'));
  const file = path.join(dir, 'interfaces');
  writeFileSync(file, PROXMOX);

  it('prints the converted file and leaves the original untouched', async () => {
    const out = await renderOvsConfig({ interfaces: file, bridge: 'vmbr0', hostVlan: 10 });
    expect(out).toContain(
      'allow-vmbr0 eno1\niface eno1 inet manual\n\tovs_bridge vmbr0\n\tovs_type OVSPort\n\tovs_options tag=10 vlan_mode=native-untagged\n',
    );
    expect(out).toContain(
      'allow-vmbr0 vlan10\niface vlan10 inet static\n\tovs_type OVSIntPort\n\tovs_bridge vmbr0\n\tovs_options tag=10\n\taddress 192.0.2.5/24\n\tgateway 192.0.2.1\n',
    );
    expect(readFileSync(file, 'utf8')).toBe(PROXMOX);
  });

  it('writes for the ifupdown asked for and says which on its note line', async () => {
    const notes: string[] = [];
    const v2 = await renderOvsConfig({ interfaces: file, bridge: 'vmbr0', hostVlan: 1, ifupdown: 2 }, (l) =>
      notes.push(l),
    );
    expect(v2).toContain('auto eno1\niface eno1 inet manual\n\tovs_bridge vmbr0\n');
    expect(v2).toContain('auto vlan1\niface vlan1 inet static\n');
    expect(v2).not.toContain('allow-');
    const v1 = await renderOvsConfig({ interfaces: file, bridge: 'vmbr0', hostVlan: 1, ifupdown: 1 }, (l) =>
      notes.push(l),
    );
    expect(v1).toContain('allow-vmbr0 eno1\n');
    expect(notes).toEqual([
      expect.stringMatching(/ifupdown2.*\(--ifupdown\)/),
      expect.stringMatching(/classic ifupdown.*\(--ifupdown\)/),
    ]);
  });

  it("defaults to this machine's ifupdown and says so", async () => {
    const notes: string[] = [];
    const out = await renderOvsConfig({ interfaces: file, bridge: 'vmbr0', hostVlan: 1 }, (l) => notes.push(l));
    const machine = existsSync('/usr/share/ifupdown2') ? 2 : 1;
    expect(out).toContain(machine === 2 ? 'auto eno1\n' : 'allow-vmbr0 eno1\n');
    expect(notes[0]).toContain(`/usr/share/ifupdown2 ${machine === 2 ? 'present' : 'absent'}`);
  });

  it('explains what it cannot do as a usage error', async () => {
    await expect(renderOvsConfig({ interfaces: file, bridge: 'vmbr9', hostVlan: 1 })).rejects.toThrow(UsageError);
    await expect(
      renderOvsConfig({ interfaces: file, bridge: 'vmbr0', uplink: 'eth0; rm -rf /', hostVlan: 1 }),
    ).rejects.toThrow(/not valid/);
    await expect(
      renderOvsConfig({ interfaces: path.join(dir, 'missing'), bridge: 'vmbr0', hostVlan: 1 }),
    ).rejects.toThrow(/cannot read/);
  });
});
