import { z } from 'zod';

/** The basic audit event; the chain fields are filled in by the writer (issue: audit trail). */
export const AuditEvent = z.object({
  eventId: z.string().min(1),
  at: z.iso.datetime(),
  actor: z.string().min(1),
  type: z.string().min(1),
  rolloutId: z.string().optional(),
  hostId: z.string().optional(),
  workflowId: z.string().optional(),
  commandId: z.string().optional(),
  step: z.string().optional(),
  data: z.record(z.string(), z.unknown()).default({}),
  prevHash: z.string().optional(),
  hash: z.string().optional(),
});
export type AuditEvent = z.infer<typeof AuditEvent>;
