import { describe, expect, it } from 'vitest';
import type { ReceivedCommand } from '../../schemas/command.js';
import type { StepKind } from '../../schemas/steps.js';
import { InvalidStepParamsError, prepareStep } from './driver.js';

const received = (kind: StepKind, params: Record<string, unknown>): ReceivedCommand => ({
  commandId: 'wf/run/1',
  hostId: 'hv1',
  kind,
  mode: 'apply',
  params,
  rolloutId: 'r1',
  workflowId: 'wf',
  issuedAt: new Date().toISOString(),
});

describe("the host's check of a step's params", () => {
  it('types them by the kind of the step and fills in the defaults', () => {
    const step = prepareStep(received('ovs-convert', { confirmWithin: 30_000 }));
    expect(step).toMatchObject({ kind: 'ovs-convert', commandId: 'wf/run/1', mode: 'apply' });
    if (step.kind !== 'ovs-convert') throw new Error('not an ovs-convert');
    expect(step.params).toEqual({ bridge: 'vmbr0', hostVlan: 1, confirmWithin: 30_000 });
  });

  it('names every problem by its place in the params', () => {
    const check = () => prepareStep(received('sriov-enable', { nic: '-x', vfs: 300, extra: true }));
    expect(check).toThrow(InvalidStepParamsError);
    expect(check).toThrow(
      /^invalid sriov-enable params: nic: must be a Linux interface name .*; vfs: .*256.*; \(params\): .*"extra"/,
    );
  });

  it('holds the VF count to the bound the plan has (256)', () => {
    expect(() => prepareStep(received('sriov-enable', { nic: 'ens6', vfs: 256 }))).not.toThrow();
    expect(() => prepareStep(received('sriov-enable', { nic: 'ens6', vfs: 257 }))).toThrow(/vfs: .*256/);
  });
});
