import { describe, expect, it } from 'vitest';
import { ChainContentionError } from '../activities/audit/writer.js';
import { WrongLastSequenceError } from '../activities/audit/store.js';
import { WaitTimeoutError } from '../activities/controller/bucket-follower.js';
import { NoDestinationError } from '../activities/controller/inventory.js';
import { AnsibleError } from '../bench/ansible.js';
import { ChildError } from '../bench/child.js';
import { BenchUsageError } from '../bench/options.js';
import { LabToolsMissingError } from '../lab/host-files.js';
import { LabSetupError } from '../lab/up.js';
import { StackError } from '../workers/dev/stack.js';
import { ToolMissingError } from '../workers/dev/tools.js';
import { CredentialsError } from '../workers/nats.js';

describe("refit's errors", () => {
  it.each([
    ['ChainContentionError', new ChainContentionError('m')],
    ['WrongLastSequenceError', new WrongLastSequenceError('s', 1)],
    ['WaitTimeoutError', new WaitTimeoutError('m')],
    ['NoDestinationError', new NoDestinationError('m')],
    ['AnsibleError', new AnsibleError('m')],
    ['ChildError', new ChildError('m')],
    ['BenchUsageError', new BenchUsageError('m')],
    ['LabToolsMissingError', new LabToolsMissingError('m')],
    ['LabSetupError', new LabSetupError('m')],
    ['StackError', new StackError('m')],
    ['ToolMissingError', new ToolMissingError('m')],
    ['CredentialsError', new CredentialsError('m')],
  ])('%s keeps its name, which Temporal reports as the failure type', (name, err) => {
    expect(err.name).toBe(name);
    expect(err).toBeInstanceOf(Error);
  });

  it('keep the cause they are given', () => {
    const cause = new Error('underneath');
    expect(new StackError('on top', { cause }).cause).toBe(cause);
    expect(new WrongLastSequenceError('s', 3, { cause }).message).toBe(
      's has moved on: its last message is at stream sequence 3',
    );
  });
});
