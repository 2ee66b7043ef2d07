import type { Logger } from 'pino';
import type { StepAuditNote } from '../../activities/host/driver.js';
import { diffStates } from '../../activities/audit/diff.js';
import { trimOutput } from '../../activities/audit/draft.js';
import type { AuditDraft, AuditEventType } from '../../schemas/audit.js';
import type { ReceivedCommand } from '../../schemas/command.js';
import type { HostAuditLog } from './audit-spool.js';
import type { Terminal } from './status-reporter.js';

/**
 * The audit events of one start of one command, with ids derived from the command id and the
 * start count: `<commandId>/<start>/<what>`. Each is spooled as it happens.
 */
export class CommandAuditTrail {
  private notes = 0;
  private readonly startedAt = performance.now();

  constructor(
    private readonly audit: HostAuditLog,
    private readonly command: ReceivedCommand,
    private readonly starts: number,
    private readonly log: Logger,
  ) {}

  requested(recovering: boolean): void {
    const c = this.command;
    this.record('step.requested', 'requested', {
      mode: c.mode,
      params: c.params,
      issuedAt: c.issuedAt,
      starts: this.starts,
      recovering,
    });
  }

  started(bootId: string): void {
    this.record('step.started', 'started', { mode: this.command.mode, bootId });
  }

  /** The driver's hook (StepContext.audit). */
  note(note: StepAuditNote): void {
    const n = ++this.notes;
    if (note.type === 'step.command') {
      this.record('step.command', `command-${n}`, {
        argv: [...note.argv],
        exitCode: note.exitCode,
        durationMs: note.durationMs,
        ...(note.stdout !== undefined ? { stdout: trimOutput(note.stdout) } : {}),
        ...(note.stderr !== undefined ? { stderr: trimOutput(note.stderr) } : {}),
      });
    } else {
      this.record(note.type, `${note.type}-${n}`, note.data);
    }
  }

  finished(terminal: Terminal): void {
    const durationMs = Math.round(performance.now() - this.startedAt);
    const o = terminal.outcome;
    if (terminal.state === 'succeeded' && o !== undefined) {
      this.record(this.command.mode === 'revert' ? 'step.reverted' : 'step.succeeded', 'result', {
        summary: o.summary,
        changed: o.changed,
        before: o.before,
        after: o.after,
        diff: diffStates(o.before, o.after),
        durationMs,
        ...(o.rebootRequired !== undefined ? { rebootRequired: o.rebootRequired } : {}),
        ...(o.bootId !== undefined ? { bootId: o.bootId } : {}),
        ...(o.traffic !== undefined ? { traffic: o.traffic } : {}),
        ...(o.recovered !== undefined ? { recovered: o.recovered } : {}),
      });
      return;
    }
    this.record(terminal.state === 'cancelled' ? 'step.cancelled' : 'step.failed', 'result', {
      mode: this.command.mode,
      ...(terminal.error !== undefined ? { error: terminal.error } : {}),
      durationMs,
    });
  }

  /** The host gave up on the command outside its step; its own event id, apart from any start's result. */
  notProcessed(error: NonNullable<Terminal['error']>): void {
    this.record('step.failed', 'not-processed', { mode: this.command.mode, error, durationMs: 0 });
  }

  private record(type: AuditEventType, what: string, data: Record<string, unknown>): void {
    const c = this.command;
    const draft: AuditDraft = {
      eventId: `${c.commandId}/${this.starts}/${what}`,
      at: new Date().toISOString(),
      actor: `host:${c.hostId}`,
      type,
      rolloutId: c.rolloutId,
      hostId: c.hostId,
      workflowId: c.workflowId,
      commandId: c.commandId,
      step: c.kind,
      data,
    };
    try {
      this.audit.record(draft).catch((err: unknown) => this.log.error({ err, type }, 'cannot spool an audit event'));
    } catch (err) {
      this.log.error({ err, type }, 'refused to record an invalid audit event');
    }
  }
}
