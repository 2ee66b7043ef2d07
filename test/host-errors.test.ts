import { describe, expect, it } from 'vitest';
import {
  HostDownError,
  InvalidStepParamsError,
  StepCancelledError,
  StepFailedError,
  UnsupportedHardwareError,
  WorkerStoppingError,
  toStepError,
} from '../activities/host/driver.js';
import { VmNotFoundError } from '../activities/host/lab/migrate.js';
import { LabNotFoundError } from '../activities/host/lab/state.js';
import { CommandFailedError } from '../activities/host/linux/command.js';
import { HpingOutputError } from '../activities/host/linux/hping.js';
import { IpOutputError } from '../activities/host/linux/ip.js';
import { InterfacesPlanError } from '../activities/host/linux/ovs-plan.js';
import { OvsOutputError } from '../activities/host/linux/ovs-vsctl.js';
import { VirshOutputError } from '../activities/host/linux/virsh.js';
import { RefitError } from '../schemas/errors.js';
import { AuditNotStoredError } from '../workers/host/audit-spool.js';
import { InvalidLabelsError } from '../workers/host/host-process.js';
import { JournalError } from '../workers/host/journal.js';
import { StatusNotStoredError } from '../workers/host/status-reporter.js';
import { InvalidFailSpecError } from '../workers/sim/fail-spec.js';
import { SimFleetError } from '../workers/sim/fleet.js';

describe("the host side's errors", () => {
  it.each([
    ['StepFailedError', new StepFailedError('m')],
    ['StepCancelledError', new StepCancelledError()],
    ['UnsupportedHardwareError', new UnsupportedHardwareError('m')],
    ['InvalidStepParamsError', new InvalidStepParamsError('m')],
    ['HostDownError', new HostDownError()],
    ['WorkerStoppingError', new WorkerStoppingError()],
    ['VmNotFoundError', new VmNotFoundError('m')],
    ['LabNotFoundError', new LabNotFoundError('m')],
    ['CommandFailedError', new CommandFailedError({ argv: ['false'], stdout: '', stderr: '', exitCode: 1 })],
    ['HpingOutputError', new HpingOutputError('m')],
    ['IpOutputError', new IpOutputError('m')],
    ['InterfacesPlanError', new InterfacesPlanError('m')],
    ['OvsOutputError', new OvsOutputError('m')],
    ['VirshOutputError', new VirshOutputError('m')],
    ['AuditNotStoredError', new AuditNotStoredError('m')],
    ['InvalidLabelsError', new InvalidLabelsError('m')],
    ['JournalError', new JournalError('m')],
    ['StatusNotStoredError', new StatusNotStoredError('m')],
    ['InvalidFailSpecError', new InvalidFailSpecError('m')],
    ['SimFleetError', new SimFleetError('m')],
  ])('%s keeps its name, which a failed step reports as its error type', (name, err) => {
    expect(err.name).toBe(name);
    expect(err).toBeInstanceOf(RefitError);
    expect(toStepError(err).type).toBe(name);
  });

  it('keep their default messages and the cause they are given', () => {
    expect(new StepCancelledError().message).toBe('cancelled');
    expect(new HostDownError().message).toBe('host is down');
    expect(new WorkerStoppingError().message).toBe('host worker is stopping');
    const cause = new Error('underneath');
    expect(new StepFailedError('on top', { cause }).cause).toBe(cause);
    expect(new StepCancelledError('operator said stop', { cause }).cause).toBe(cause);
    const failed = new CommandFailedError(
      { argv: ['ip', 'link'], stdout: '', stderr: 'oops\n', exitCode: 2 },
      { cause },
    );
    expect(failed).toMatchObject({ message: 'ip link exited with 2: oops', exitCode: 2, argv: ['ip', 'link'], cause });
  });
});
