import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { adminChainStore } from '../activities/audit/store.js';
import type { VerifyReport } from '../activities/audit/verify.js';
import { appendToChain } from '../activities/audit/writer.js';
import { seedOfCredentials, signerOfSeed } from '../activities/nkey.js';
import { AUDIT_CHAINS, type AuditDraft } from '../schemas/audit.js';
import { IDENTITIES } from '../schemas/names.js';
import { credsFile } from '../workers/config.js';
import { readIdentities } from '../workers/dev/credentials.js';
import { identityOfHost } from '../workers/nats.js';
import { simHostIds } from '../workers/sim/fleet.js';
import { trailEvents } from './audit-helpers.js';
import { runCli } from './helpers/controller.js';
import { useSimFleet } from './helpers/fleet.js';

const hosts = simHostIds(2, `sig${randomBytes(2).toString('hex')}`);
const [target] = hosts as [string, string];
const suite = useSimFleet({ hosts, speed: 4 });
const { stack, config } = suite;

async function verify(hostId: string): Promise<{ code: number | null; report: VerifyReport; stdout: string }> {
  const out = await runCli(config, ['audit', 'verify', '--host', hostId, '--json']);
  return { code: out.code, report: JSON.parse(out.stdout) as VerifyReport, stdout: out.stdout };
}

/** A step.command event in the host's name, as the controller's credentials could append one. */
const forgedDraft = (hostId: string): AuditDraft => ({
  eventId: `forged-${randomBytes(4).toString('hex')}`,
  at: new Date().toISOString(),
  actor: `host:${hostId}`,
  type: 'step.command',
  hostId,
  step: 'ovs-convert',
  data: { argv: ['ovs-vsctl', 'del-br', 'vmbr0'], exitCode: 0, durationMs: 3 },
});

describe("a host's audit events", () => {
  it('are signed by the host with its enrolled key, and verify', async () => {
    const { result } = await suite.controller.runRollout(`apiVersion: refit/v1
kind: Campaign
name: signed-audit
targets: { hosts: [${target}] }
waves: { canary: 0 }
steps:
  - kind: drain
  - kind: undrain
`);
    expect(result.state).toBe('completed');
    const nc = await stack.controllerConnection();
    const chain = (await trailEvents(nc)).filter((e) => e.record.subject === AUDIT_CHAINS.host(target));
    expect(chain.length).toBeGreaterThan(3);
    const enrolled = readIdentities(stack.home)[identityOfHost(target)]?.publicKey;
    expect(chain.map((e) => e.event.signature?.key)).toEqual(chain.map(() => enrolled));

    const { code, report } = await verify(target);
    expect(code, JSON.stringify(report.problems)).toBe(0);
    expect(report.signatures).toEqual({ checked: true, verified: chain.length, unsigned: 0 });
    const text = await runCli(config, ['audit', 'verify', '--host', target]);
    expect(text.stdout).toContain(`host signatures: ${chain.length} verified`);
  });

  it("forged in the host's name with the controller's credentials, well linked and hashed, fail verify", async () => {
    const nc = await stack.controllerConnection();
    const store = adminChainStore(nc);
    const chain = AUDIT_CHAINS.host(target);
    const controllerKey = signerOfSeed(
      seedOfCredentials(readFileSync(credsFile(stack.home, IDENTITIES.controller), 'utf8')),
    );

    await appendToChain(store, chain, forgedDraft(target), { signer: controllerKey });
    const signed = await verify(target);
    expect(signed.code).toBe(3);
    expect(signed.report.problems).toEqual([
      expect.objectContaining({
        kind: 'forged',
        chain,
        message: expect.stringMatching(`not host ${target}'s enrolled key`),
      }),
    ]);

    await appendToChain(store, chain, forgedDraft(target));
    const unsigned = await verify(target);
    expect(unsigned.code).toBe(3);
    expect(unsigned.report.problems.map((p) => p.kind)).toEqual(['forged', 'unsigned']);
    const text = await runCli(config, ['audit', 'verify', '--host', target]);
    expect(text.stdout).toMatch(/forged .* signed by U/);
    expect(text.stdout).toMatch(/unsigned .* not signed, after signed events/);
  });
});
