import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { HostDriver } from '../../activities/host/driver.js';
import { formatPath } from '../../schemas/problems.js';
import { SUBJECTS } from '../../schemas/names.js';
import { PreviewRequest, type PreviewReply, type StepPreview } from '../../schemas/preview.js';
import { STEP_PARAMS, vxlanEndFor, type StepCall, type VxlanTunnelParams } from '../../schemas/steps.js';
import type { HostAuditLog } from './audit-spool.js';

export interface PreviewServiceOptions {
  hostId: string;
  nc: NatsConnection;
  driver: HostDriver;
  audit: HostAuditLog;
  log: Logger;
}

/**
 * Answer dry runs on `refit.preview.<hostId>`: what the plan's steps would change on this host, from
 * its real files, through its driver's `preview`; nothing is changed, nothing queued behind or
 * ahead of real commands. Each answered request is audited as `step.previewed` (a dry run). A
 * request that is not a valid preview request is answered with the reason.
 */
export function servePreviews(o: PreviewServiceOptions): Subscription {
  return o.nc.subscribe(SUBJECTS.preview(o.hostId), {
    callback: (err, msg) => {
      if (err) return o.log.warn({ err }, 'preview subscription failed');
      void answer(o, msg).catch((e: unknown) => o.log.error({ err: e }, 'could not answer a preview request'));
    },
  });
}

async function answer(o: PreviewServiceOptions, msg: Msg): Promise<void> {
  const base = { hostId: o.hostId, driver: o.driver.kind, simulated: o.driver.kind === 'sim', steps: [] };
  const reply = (r: PreviewReply) => msg.respond(JSON.stringify(r));
  let data: unknown;
  try {
    data = msg.json();
  } catch {
    return void reply({ ...base, requestId: '', error: 'the request is not JSON' });
  }
  const parsed = PreviewRequest.safeParse(data);
  if (!parsed.success) {
    const why = parsed.error.issues.map((i) => `${formatPath(i.path)}: ${i.message}`).join('; ');
    o.log.warn({ reason: why }, 'rejected a preview request');
    return void reply({ ...base, requestId: '', error: `not a valid preview request: ${why}` });
  }
  const request = parsed.data;
  if (request.hostId !== o.hostId)
    return void reply({ ...base, requestId: request.requestId, error: `this is ${o.hostId}, not ${request.hostId}` });
  if (o.driver.preview === undefined)
    return void reply({ ...base, requestId: request.requestId, error: `the ${o.driver.kind} driver cannot preview` });

  const calls: StepCall[] = [];
  const invalid: StepPreview[] = [];
  request.steps.forEach((step, index) => {
    const refuse = (error: string) =>
      invalid.push({ index, kind: step.kind, summary: 'invalid params', files: [], changes: [], error });
    const params = STEP_PARAMS[step.kind].safeParse(step.params);
    if (!params.success)
      return void refuse(params.error.issues.map((i) => `${formatPath(i.path, '(params)')}: ${i.message}`).join('; '));
    if (step.kind !== 'vxlan-tunnel') return void calls.push({ kind: step.kind, params: params.data } as StepCall);
    // A vxlan-tunnel with both ends: this host previews its own.
    const end = vxlanEndFor(params.data as VxlanTunnelParams, o.hostId);
    if (end === undefined)
      refuse(`hosts: no entry for ${o.hostId}; each host of the plan needs its own end of the tunnel`);
    else calls.push({ kind: 'vxlan-tunnel', params: end });
  });
  let steps: StepPreview[];
  try {
    steps = invalid.length > 0 ? invalid : await o.driver.preview(calls);
  } catch (err) {
    return void reply({
      ...base,
      requestId: request.requestId,
      error: `the preview failed: ${err instanceof Error ? err.message : String(err)}`,
    });
  }
  await o.audit.record({
    eventId: `preview/${request.requestId}/${o.hostId}`,
    at: new Date().toISOString(),
    actor: `host:${o.hostId}`,
    type: 'step.previewed',
    hostId: o.hostId,
    data: {
      dryRun: true,
      plan: request.plan,
      requestedBy: request.requestedBy,
      requestId: request.requestId,
      steps: steps.map((s) => ({
        kind: s.kind,
        summary: s.summary,
        wouldChange: s.files.filter((f) => f.changed).map((f) => f.path),
        ...(s.error !== undefined ? { error: s.error } : {}),
      })),
    },
  });
  reply({ ...base, requestId: request.requestId, steps });
}
