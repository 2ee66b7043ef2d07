import { describe, expect, it } from 'vitest';
import { COMMAND_CONTRACT_VERSION, commandForContract, StepCommand, withoutHealth } from './command.js';
import { VerifyParams } from './steps.js';

const ovs = StepCommand.parse({
  commandId: 'r/1',
  contractVersion: COMMAND_CONTRACT_VERSION,
  hostId: 'h1',
  kind: 'ovs-convert',
  params: { baselineTargets: [{ address: '192.0.2.1', port: 80 }] },
  rolloutId: 'r',
  workflowId: 'w',
  issuedAt: new Date(0).toISOString(),
});

describe('a command for an agent of the previous contract', () => {
  it('leaves out the baselineTargets contract 1 does not know, and says it was written for 1', () => {
    const older = commandForContract(ovs, 1);
    expect(older.contractVersion).toBe(1);
    expect(older.params).not.toHaveProperty('baselineTargets');
    expect(older.params).toMatchObject({ bridge: 'vmbr0', hostVlan: 1 });
    expect(commandForContract(ovs, COMMAND_CONTRACT_VERSION)).toBe(ovs);
  });

  it('leaves out the nonMigratable policy contract 2 does not know', () => {
    const drain = StepCommand.parse({
      ...ovs,
      kind: 'drain',
      params: { destinations: { vm1: 'h2' }, nonMigratable: 'skip' },
    });
    const older = commandForContract(drain, 2);
    expect(older.contractVersion).toBe(2);
    expect(older.params).toEqual({ destinations: { vm1: 'h2' } });
    expect(commandForContract(drain, 1).params).toEqual({ destinations: { vm1: 'h2' } });
    expect(commandForContract(drain, COMMAND_CONTRACT_VERSION).params).toMatchObject({ nonMigratable: 'skip' });
  });

  it('leaves out the step a command of a run follows (contract 5), and keeps what contract 4 knows', () => {
    const inRun = StepCommand.parse({
      ...ovs,
      kind: 'verify',
      after: 'r/0',
      params: { targets: [{ address: '192.0.2.1' }], health: { max: { rxErrors: 0 } } },
    });
    expect(commandForContract(inRun, 5)).toMatchObject({ after: 'r/0' });
    const older = commandForContract(inRun, 4);
    expect(older).not.toHaveProperty('after');
    expect(older).toMatchObject({ contractVersion: 4, params: { health: { max: { rxErrors: 0 } } } });
  });

  describe('a verify with net health (contract 4)', () => {
    const verify = StepCommand.parse({
      ...ovs,
      kind: 'verify',
      params: { targets: [{ address: '192.0.2.1' }], health: { interfaces: ['vmbr0'], max: { rxDropped: 5 } } },
    });
    const passed = { changed: false, summary: 'verify passed from host: 192.0.2.1 100/100', before: {}, after: {} };

    it('goes to an agent of contract 3 without health, in the form contract 3 parses', () => {
      const older = commandForContract(verify, 3);
      expect(older.contractVersion).toBe(3);
      expect(older.params).not.toHaveProperty('health');
      // Contract 3's verify params: today's without health, strict, so a key it does not know is refused.
      expect(() => VerifyParams.omit({ health: true }).parse(older.params)).not.toThrow();
      expect(() => VerifyParams.omit({ health: true }).parse(verify.params)).toThrow(/health/);
      expect(commandForContract(verify, 2).params).not.toHaveProperty('health');
      expect(commandForContract(verify, COMMAND_CONTRACT_VERSION).params).toMatchObject({
        health: { interfaces: ['vmbr0'], max: { rxDropped: 5, rxErrors: 0 } },
      });
    });

    it("says in the outcome of such an agent's verify that the counters were not checked, and why", () => {
      const older = commandForContract(verify, 3);
      const outcome = withoutHealth(older, passed, verify);
      expect(outcome.summary).toBe(
        `verify passed from host: 192.0.2.1 100/100; net health NOT checked: the agent takes command contract 3; upgrade it to contract ${COMMAND_CONTRACT_VERSION}`,
      );
      expect(outcome.after).toMatchObject({ netHealth: { checked: false } });
      expect(withoutHealth(verify, passed, verify)).toBe(passed);
      const plain = commandForContract(
        { ...verify, params: { ...verify.params, health: undefined } } as StepCommand,
        3,
      );
      expect(withoutHealth(plain, passed, plain)).toBe(passed);
    });
  });
});
