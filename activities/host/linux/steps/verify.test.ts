import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { CommandRunner } from '../command.js';
import { captured, quietCtx } from '../fixtures.js';
import type { HostEnv } from '../host-env.js';
import { applyVerify, recordBaselines } from './verify.js';

const stateDir = mkdtempSync(path.join(os.tmpdir(), 'refit-verify-'));
afterAll(() => rmSync(stateDir, { recursive: true, force: true }));

/** hping3 answers as captured on this machine: every target fine, until `lossy` loses 60%. */
const lossy = new Set<string>();
const run: CommandRunner = async (argv) => {
  const target = argv.at(-1) as string;
  const file = lossy.has(target) ? 'hping3-icmp-60pct-loss.stderr' : 'hping3-icmp-ok.stderr';
  return { argv: [...argv], stdout: '', stderr: captured(file), exitCode: 0 };
};
const env = {
  run,
  paths: { stateDir, sriovRules: path.join(stateDir, 'none.rules') },
} as unknown as HostEnv;
const ctx = quietCtx();

describe('verify baselines', () => {
  it('measures every target before the change, so a regression on any of them fails verify', async () => {
    const targets = [{ address: '192.0.2.1' }, { address: '192.0.2.2' }];
    const interfaces = 'auto vmbr0\niface vmbr0 inet static\n\taddress 192.0.2.5/24\n\tgateway 192.0.2.1\n';
    await recordBaselines(env, interfaces, targets, 'r1', ctx);
    lossy.add('192.0.2.2');
    const params = { targets, count: 10, maxLossPct: 100, maxRegression: 1.5, rttToleranceMs: 5 };
    await expect(applyVerify(env, params, ctx, 'r1')).rejects.toThrow(
      /192\.0\.2\.2: loss 60% against 0% before the change/,
    );
  });
});
