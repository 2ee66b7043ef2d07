import type { AuditDraft } from '../../schemas/audit.js';
import { canonicalJson, sha256Hex } from './hash.js';

/** Well under JetStream's default 1 MiB message limit, with room for the chain fields. */
export const MAX_EVENT_BYTES = 256 * 1024;
/** Command output kept in an event: the start and the end, where errors usually are. */
export const MAX_OUTPUT_CHARS = 4_096;

/** Keep the first and last part of a long output, saying how much was cut. */
export function trimOutput(text: string, max = MAX_OUTPUT_CHARS): string {
  if (text.length <= max) return text;
  const half = Math.floor(max / 2);
  return `${text.slice(0, half)}\n… [${text.length - 2 * half} characters cut] …\n${text.slice(-half)}`;
}

/**
 * Make a draft fit in one message: the largest data members are replaced, one by one, by their
 * size and sha256 until it fits. Nothing is dropped silently: the event says what was left out.
 */
export function fitDraft(draft: AuditDraft, maxBytes = MAX_EVENT_BYTES): AuditDraft {
  let data = draft.data;
  const bytes = (d: Record<string, unknown>) => Buffer.byteLength(canonicalJson({ ...draft, data: d }));
  while (bytes(data) > maxBytes) {
    const sized = Object.entries(data)
      .map(([k, v]) => [k, canonicalJson(v)] as const)
      .filter(([, json]) => !json.startsWith('{"omitted":true'))
      .sort((x, y) => y[1].length - x[1].length);
    const largest = sized[0];
    if (largest === undefined) break;
    const [key, json] = largest;
    data = { ...data, [key]: { omitted: true, bytes: Buffer.byteLength(json), sha256: sha256Hex(json) } };
  }
  return data === draft.data ? draft : { ...draft, data };
}
