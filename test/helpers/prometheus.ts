import path from 'node:path';
import { execa } from 'execa';
import { toolCacheDir } from '../../workers/dev/tools.js';

export interface MetricFamily {
  name: string;
  type: string;
  samples: { name: string; labels: Record<string, string>; value: number }[];
}

const PARSE = `
import json, math, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    out.append({"name": f.name, "type": f.type, "samples": [
        {"name": s.name, "labels": s.labels, "value": s.value if math.isfinite(s.value) else str(s.value)}
        for s in f.samples]})
print(json.dumps(out))
`;

/**
 * Parse a scrape with Prometheus' own Python client parser (prometheus-client, installed by
 * `npm run setup`): it throws on anything the text format does not allow.
 */
export async function parseExposition(text: string): Promise<MetricFamily[]> {
  const python = path.join(toolCacheDir(), 'bin', 'prometheus-python');
  const { stdout } = await execa(python, ['-c', PARSE], { input: text });
  return JSON.parse(stdout) as MetricFamily[];
}

/** The value of the sample `name` whose labels include `labels`, summed over the matches; 0 if none. */
export function sampleSum(families: MetricFamily[], name: string, labels: Record<string, string> = {}): number {
  return families
    .flatMap((f) => f.samples)
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((sum, s) => sum + s.value, 0);
}
