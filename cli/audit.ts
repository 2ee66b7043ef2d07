import { createReadStream, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { InvalidArgumentError, type Command } from 'commander';
import { readStreamState, readTrail } from '../activities/audit/read.js';
import { streamStateOf, verifyTrail, type StreamState } from '../activities/audit/verify.js';
import { AUDIT_CHAINS, AuditRecord } from '../schemas/audit.js';
import { HostId } from '../schemas/common.js';
import { loadConfig, withNats } from '../workers/clients.js';
import { IdentityRegistryFile, hostKeysOf, registryFile } from '../workers/dev/credentials.js';
import { UsageError } from '../schemas/errors.js';
import { problemText } from '../schemas/problems.js';
import {
  LOG_HEADER,
  eventsOf,
  logRows,
  matches,
  parseSince,
  renderEvent,
  renderLog,
  renderReport,
  type LogFilter,
  type TrailEvent,
} from './audit-render.js';
import { tableLines } from './table.js';
import { positiveNumber } from './numeric-options.js';
import type { NatsConnection } from '@nats-io/transport-node';

/** `refit audit verify` found a broken, missing or reordered link. */
export const EXIT_AUDIT_BROKEN = 3;

interface LogOptions {
  host?: string;
  rollout?: string;
  since?: Date;
  step?: string;
  type?: string;
  json?: boolean;
}

function filterOf(opts: LogOptions): LogFilter {
  if (opts.host !== undefined && !HostId.safeParse(opts.host).success)
    throw new UsageError(`--host ${opts.host} is not a host id`);
  return { host: opts.host, rollout: opts.rollout, since: opts.since, step: opts.step, type: opts.type };
}

function sinceTime(text: string): Date {
  const since = parseSince(text);
  if (since === undefined)
    throw new InvalidArgumentError('Expected a time (2025-06-01T10:00Z) or a duration ago (90m, 2d).');
  return since;
}

/** Read an export written by `refit audit export`; every bad line is named. */
async function readExport(file: string): Promise<AuditRecord[]> {
  const records: AuditRecord[] = [];
  const problems: string[] = [];
  let n = 0;
  try {
    for await (const line of createInterface({ input: createReadStream(file), crlfDelay: Infinity })) {
      n++;
      if (line.trim() === '') continue;
      let json: unknown;
      try {
        json = JSON.parse(line);
      } catch {
        problems.push(`line ${n}: not JSON`);
        continue;
      }
      const parsed = AuditRecord.safeParse(json);
      if (parsed.success) records.push(parsed.data);
      else problems.push(`line ${n}: not an export record (${parsed.error.issues[0]?.message ?? 'invalid'})`);
    }
  } catch (cause) {
    throw new UsageError(`cannot read ${file}: ${(cause as Error).message}`);
  }
  if (problems.length > 0)
    throw new UsageError(`${file} is not an audit export:\n  ${problems.slice(0, 20).join('\n  ')}`);
  return records;
}

interface VerifyOptions {
  file?: string;
  host?: string;
  rollout?: string;
  keys?: string;
  requireSignatures?: boolean;
  json?: boolean;
}

/** The hosts' enrolled keys: from --keys, else from REFIT_HOME's registry if there is one; why not, if none. */
function hostKeys(file: string | undefined): { keys?: Record<string, string>; why?: string } {
  const path = file ?? registryFile(loadConfig().home);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    if (file !== undefined) throw new UsageError(`cannot read --keys ${file}: ${(cause as Error).message}`);
    return { why: `no enrolment registry at ${path}; give --keys` };
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new UsageError(`${path} is not an enrolment registry: not JSON`);
  }
  const parsed = IdentityRegistryFile.safeParse(json);
  if (!parsed.success)
    throw new UsageError(`${path} is not an enrolment registry: ${problemText(parsed.error, '(registry)')}`);
  return { keys: hostKeysOf(parsed.data) };
}

/**
 * `refit audit log --follow`: what is stored so far, then each new event as it is stored (read by
 * direct get every `interval` seconds from the last sequence shown: the CLI may create no consumer).
 * Runs until interrupted.
 */
async function followLog(
  nc: NatsConnection,
  first: TrailEvent[],
  lastSeq: number,
  filter: LogFilter,
  opts: { json?: boolean; interval: number },
): Promise<never> {
  const print = (events: TrailEvent[], header: boolean) => {
    if (events.length === 0) return;
    if (opts.json) for (const e of events) process.stdout.write(`${JSON.stringify(e.event)}\n`);
    else process.stdout.write(`${tableLines(logRows(events), header ? { header: LOG_HEADER } : {}).join('\n')}\n`);
  };
  print(first, true);
  let seq = lastSeq;
  for (;;) {
    await new Promise((r) => setTimeout(r, opts.interval * 1000));
    const records = await readTrail(nc, { afterSeq: seq });
    seq = records.at(-1)?.streamSeq ?? seq;
    print(
      eventsOf(records).filter((e) => matches(e.event, filter)),
      false,
    );
  }
}

export function registerAuditCommands(program: Command): void {
  const audit = program
    .command('audit')
    .description('the audit trail: who changed what on which host, provably untouched');

  audit
    .command('log')
    .description('events, oldest first, filtered')
    .option('--host <host>', 'events of this host')
    .option('--rollout <rollout>', 'events of this rollout')
    .option('--since <time>', 'from this time (2025-06-01T10:00Z) or this long ago (90m, 2d)', sinceTime)
    .option('--step <step>', 'events of this step kind (ovs-convert, sriov-enable, …)')
    .option('--type <type>', 'events of this type or family (step.command, rollout)')
    .option('--json', 'print JSON: the events as stored (with --follow, one event a line)')
    .option('--follow', 'then keep printing events as they are stored, until interrupted')
    .option('--interval <seconds>', 'with --follow: how often to look for new events', positiveNumber, 1)
    .action(async (opts: LogOptions & { follow?: boolean; interval: number }) => {
      const filter = filterOf(opts);
      await withNats(loadConfig(), async (nc) => {
        // Stored a little after they happen: start reading early, filter on the event's own time.
        const from = filter.since && new Date(filter.since.getTime() - 10 * 60_000);
        const records = await readTrail(nc, from ? { since: from } : {});
        const events = eventsOf(records).filter((e) => matches(e.event, filter));
        if (opts.follow) return followLog(nc, events, records.at(-1)?.streamSeq ?? 0, filter, opts);
        process.stdout.write(
          opts.json
            ? `${JSON.stringify(
                events.map((e) => e.event),
                null,
                2,
              )}\n`
            : `${renderLog(events)}\n`,
        );
      });
    });

  audit
    .command('show <event>')
    .description('one event in full, with the commands it ran and the diff it made (event id or hash prefix)')
    .option('--json', 'print JSON: the event as stored, with its stream position')
    .action(async (ref: string, opts: { json?: boolean }) => {
      await withNats(loadConfig(), async (nc) => {
        const events = eventsOf(await readTrail(nc));
        const found = events.filter(
          (e) => e.event.eventId === ref || (ref.length >= 8 && e.event.hash.startsWith(ref)),
        );
        if (found.length === 0)
          throw new UsageError(`no audit event ${ref} (give an event id, or at least 8 characters of its hash)`, 1);
        if (found.length > 1 && !found.every((e) => e.event.eventId === ref)) {
          throw new UsageError(`${ref} matches ${found.length} events; give more of the hash`);
        }
        process.stdout.write(
          opts.json
            ? `${JSON.stringify(
                found.map((e) => ({ ...e.record, event: e.event })),
                null,
                2,
              )}\n`
            : `${found.map(renderEvent).join('\n\n')}\n`,
        );
      });
    });

  audit
    .command('export')
    .description('the whole trail as JSON lines on stdout, for a SIEM or to verify offline')
    .option('--format <format>', 'jsonl (one stored message per line)', 'jsonl')
    .action(async (opts: { format: string }) => {
      if (opts.format !== 'jsonl') throw new UsageError(`--format ${opts.format} is not supported; use jsonl`);
      await withNats(loadConfig(), async (nc) => {
        for (const record of await readTrail(nc)) process.stdout.write(`${JSON.stringify(record)}\n`);
      });
    });

  audit
    .command('verify')
    .description(`recompute every chain; exits ${EXIT_AUDIT_BROKEN} when a link is broken, missing or reordered`)
    .option('--file <export.jsonl>', 'verify an export offline instead of the live stream')
    .option('--host <host>', "only this host's chain (and links into it)")
    .option('--rollout <rollout>', "only this rollout's chain")
    .option(
      '--keys <identities.json>',
      "the hosts' enrolled public keys (default: the enrolment registry of REFIT_HOME)",
    )
    .option('--require-signatures', 'an unsigned host event is a problem (once every host signs its events)')
    .option('--json', 'print the report as JSON')
    .action(async (opts: VerifyOptions) => {
      if (opts.host !== undefined && !HostId.safeParse(opts.host).success)
        throw new UsageError(`--host ${opts.host} is not a host id`);
      const chosen = [
        ...(opts.host !== undefined ? [AUDIT_CHAINS.host(opts.host)] : []),
        ...(opts.rollout !== undefined ? [AUDIT_CHAINS.rollout(opts.rollout)] : []),
      ];
      const select = chosen.length > 0 ? (chain: string) => chosen.includes(chain) : undefined;
      let records: AuditRecord[];
      let stream: StreamState | undefined;
      if (opts.file !== undefined) {
        records = await readExport(opts.file);
        stream = streamStateOf(records);
      } else {
        [records, stream] = await withNats(loadConfig(), async (nc) => {
          const state = await readStreamState(nc);
          return [await readTrail(nc), state] as const;
        });
      }
      const keys = hostKeys(opts.keys);
      const report = verifyTrail(records, {
        stream,
        select,
        hostKeys: keys.keys,
        requireSignatures: opts.requireSignatures === true,
      });
      const notChecked = keys.keys === undefined ? `\nhost signatures: not checked (${keys.why})` : '';
      process.stdout.write(
        opts.json
          ? `${JSON.stringify(report, null, 2)}\n`
          : `${renderReport(report, opts.file ?? 'audit trail')}${notChecked}\n`,
      );
      if (!report.ok)
        throw new UsageError(`the audit trail is not intact: ${report.problems.length} problem(s)`, EXIT_AUDIT_BROKEN);
    });
}
