import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HostFacts } from '../../../schemas/host.js';
import { describeStep } from '../preview.js';
import { createExecaRunner, type CommandRunner } from './command.js';
import { quietCtx } from './fixtures.js';
import type { HostEnv } from './host-env.js';
import { applyVerify } from './steps/verify.js';
import { MissingToolError, requireTool, toolFacts, toolPresent } from './tools.js';

const stateDir = mkdtempSync(path.join(os.tmpdir(), 'refit-tools-'));
afterAll(() => rmSync(stateDir, { recursive: true, force: true }));

// The real programs: hping3 is installed on this machine; with a PATH that leads nowhere it is not found.
const withHping = createExecaRunner();
const withoutHping = createExecaRunner(['env', 'PATH=/nonexistent']);

const ctx = quietCtx();
const verifyParams = {
  targets: [{ address: '127.0.0.1' }],
  count: 3,
  maxLossPct: 100,
  maxRegression: 1.5,
  rttToleranceMs: 5,
};

describe('tools a host needs', () => {
  it('finds hping3 where it is installed and not where it is not', async () => {
    expect(await toolPresent(withHping, 'hping3')).toBe(true);
    expect(await toolPresent(withoutHping, 'hping3')).toBe(false);
  });

  it('fails verify naming the missing tool and how to install it, before sending anything', async () => {
    const env = { run: withoutHping, paths: { stateDir, sriovRules: path.join(stateDir, 'none.rules') } };
    const verify = applyVerify(env as unknown as HostEnv, verifyParams, ctx, 'r1');
    await expect(verify).rejects.toThrow(MissingToolError);
    await expect(verify).rejects.toThrow(
      'hping3 is not installed on this host: verify (and the traffic baselines) needs it (Debian/Proxmox: apt install hping3)',
    );
  });

  it('names the VM when verify sends from a VM without hping3', async () => {
    const env = { run: withHping, runInVm: () => withoutHping, paths: { stateDir } };
    await expect(
      applyVerify(env as unknown as HostEnv, { ...verifyParams, fromVm: 'vm101' }, ctx, 'r1'),
    ).rejects.toThrow(/^hping3 is not installed on VM vm101/);
  });

  it('reports the tools in the facts, looked for again only after the cache time', async () => {
    let asked = 0;
    let installed = false;
    const run: CommandRunner = async (argv, opts) => {
      asked++;
      return (installed ? withHping : withoutHping)(argv, opts);
    };
    const tools = toolFacts(run, 60_000);
    expect(await tools()).toEqual({ hping3: false });
    installed = true;
    expect(await tools()).toEqual({ hping3: false });
    expect(asked).toBe(1);
    expect(await toolFacts(run, 0)()).toEqual({ hping3: true });
    await expect(requireTool(run, 'hping3')).resolves.toBeUndefined();
  });

  it("makes a host's dry run of verify fail when its facts say hping3 is missing, and only then", () => {
    const facts = (hping3?: boolean) =>
      HostFacts.parse({
        bootId: 'b',
        bridge: { type: 'linux' },
        sriov: { supported: false, totalVfs: 0, numVfs: 0, iommu: false },
        vms: [],
        cordoned: false,
        capacity: { vmSlots: 4, vmsRunning: 0 },
        ...(hping3 === undefined ? {} : { tools: { hping3 } }),
      });
    const step = { kind: 'verify' as const, params: verifyParams };
    expect(describeStep(step, 3, facts(false)).error).toMatch(/^hping3 is not installed on this host/);
    expect(describeStep(step, 3, facts(true)).error).toBeUndefined();
    // An older agent reports no tools: nothing is assumed missing.
    expect(describeStep(step, 3, facts()).error).toBeUndefined();
    // From a VM the host's own hping3 is not what sends.
    expect(describeStep({ ...step, params: { ...verifyParams, fromVm: 'vm101' } }, 3, facts(false)).error).toBe(
      undefined,
    );
  });
});
