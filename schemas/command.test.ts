import { describe, expect, it } from 'vitest';
import { COMMAND_CONTRACT_VERSION, commandForContract, StepCommand } from './command.js';

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
});
