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
/** ip -s -s -j link and nstat as captured; each later reading adds `growth` to tc0's tx drops and to the retransmissions. */
const growth = { txDropped: 0, retrans: 0 };
let readings = 0;
const ipStats = () => {
  const links = JSON.parse(captured('ip-s-s-j-link-veth.json')) as {
    ifname: string;
    stats64: { tx: { dropped: number } };
  }[];
  for (const l of links) if (l.ifname === 'tc0') l.stats64.tx.dropped += growth.txDropped * readings;
  return JSON.stringify(links);
};
const nstat = () => {
  const out = JSON.parse(captured('nstat-asz.json')) as { kernel: { TcpRetransSegs: number } };
  out.kernel.TcpRetransSegs += growth.retrans * readings;
  return JSON.stringify(out);
};
const run: CommandRunner = async (argv) => {
  if (argv[0] === 'ip') return { argv: [...argv], stdout: ipStats(), stderr: '', exitCode: 0 };
  if (argv[0] === 'nstat') {
    const stdout = nstat();
    readings++;
    return { argv: [...argv], stdout, stderr: '', exitCode: 0 };
  }
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

describe('net health inside verify', () => {
  const targets = [{ address: '192.0.2.9' }];
  const params = { targets, count: 10, maxLossPct: 100, maxRegression: 1.5, rttToleranceMs: 5 };
  const max = { rxErrors: 0, txErrors: 0, rxOverruns: 0 };

  it('fails naming the interface and the counter that grew past its limit while the traffic ran', async () => {
    growth.txDropped = 4;
    growth.retrans = 0;
    const health = { interfaces: ['tc0'], max: { ...max, txDropped: 3 } };
    await expect(applyVerify(env, { ...params, health }, ctx, 'r2')).rejects.toThrow(
      /verify failed: net health over [\d.]+ s: tc0 txDropped \+4 \(at most 3\)/,
    );
    growth.retrans = 7;
    const retrans = { interfaces: ['tc0'], max: { ...max, txDropped: 4, tcpRetransmits: 6 } };
    await expect(applyVerify(env, { ...params, health: retrans }, ctx, 'r2')).rejects.toThrow(
      /host tcpRetransmits \+7 \(at most 6\)/,
    );
  });

  it('passes within the limits and records the counters before and after in the outcome', async () => {
    growth.txDropped = 2;
    growth.retrans = 1;
    const health = { interfaces: ['tc0'], max: { ...max, txDropped: 2 } };
    const outcome = await applyVerify(env, { ...params, health }, ctx, 'r3');
    expect(outcome.summary).toMatch(
      /; net health over [\d.]+ s on tc0: tc0 txDropped \+2 \(within limits\), tcpRetransmits \+1$/,
    );
    const before = (outcome.before.netHealth as { interfaces: Record<string, { txDropped: number }> }).interfaces;
    const after = (outcome.after.netHealth as { interfaces: Record<string, { txDropped: number }> }).interfaces;
    expect(after.tc0?.txDropped).toBe((before.tc0?.txDropped ?? NaN) + 2);
    expect(outcome.after.netHealth).toMatchObject({ deltas: { tc0: { txDropped: 2 } }, retransmitted: 1 });
  });

  it('refuses an interface the host does not have before it sends anything, and reads no counter without health', async () => {
    const health = { interfaces: ['eth9'], max };
    await expect(applyVerify(env, { ...params, health }, ctx, 'r4')).rejects.toThrow(
      /verify health: no interface eth9 on this host/,
    );
    const at = readings;
    const outcome = await applyVerify(env, params, ctx, 'r4');
    expect(readings).toBe(at);
    expect(outcome.before).toEqual({});
    expect(outcome.after).not.toHaveProperty('netHealth');
  });
});
