/**
 * A small Prometheus registry: counters, gauges and histograms with labels, written out in the text
 * exposition format (version 0.0.4). Enough for refit's own metrics; the Temporal SDK's come from its
 * own exporter (workers/metrics/controller-metrics.ts).
 */

export type Labels = Record<string, string>;

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

interface Metric {
  readonly name: string;
  render(): string;
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function labelText(labels: Labels): string {
  const pairs = Object.entries(labels);
  if (pairs.length === 0) return '';
  return `{${pairs.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(',')}}`;
}

function numberText(n: number): string {
  if (Number.isNaN(n)) return 'NaN';
  if (n === Infinity) return '+Inf';
  if (n === -Infinity) return '-Inf';
  return String(n);
}

/** Series keyed by their label values, in the order of the metric's label names. */
class Series<T> {
  private readonly byKey = new Map<string, { labels: Labels; value: T }>();
  constructor(
    private readonly metric: string,
    private readonly labelNames: readonly string[],
  ) {}

  get(labels: Labels, init: () => T): T {
    const names = Object.keys(labels);
    if (names.length !== this.labelNames.length || this.labelNames.some((n) => labels[n] === undefined))
      throw new Error(
        `${this.metric} takes the labels ${this.labelNames.join(', ') || '(none)'}, not ${names.join(', ')}`,
      );
    const ordered = Object.fromEntries(this.labelNames.map((n) => [n, labels[n]!]));
    const key = JSON.stringify(ordered);
    let entry = this.byKey.get(key);
    if (entry === undefined) {
      entry = { labels: ordered, value: init() };
      this.byKey.set(key, entry);
    }
    return entry.value;
  }

  entries(): { labels: Labels; value: T }[] {
    return [...this.byKey.values()];
  }
}

function header(name: string, help: string, type: string): string {
  return `# HELP ${name} ${escapeHelp(help)}\n# TYPE ${name} ${type}\n`;
}

export class Counter implements Metric {
  private readonly series: Series<{ n: number }>;
  constructor(
    readonly name: string,
    private readonly help: string,
    labelNames: readonly string[] = [],
  ) {
    this.series = new Series(name, labelNames);
  }

  inc(labels: Labels = {}, by = 1): void {
    if (by < 0) throw new Error(`${this.name}: a counter only goes up`);
    this.series.get(labels, () => ({ n: 0 })).n += by;
  }

  /** Make a series show as 0 before it first counts. */
  touch(labels: Labels = {}): void {
    this.series.get(labels, () => ({ n: 0 }));
  }

  render(): string {
    const lines = this.series.entries().map(({ labels, value }) => `${this.name}${labelText(labels)} ${value.n}\n`);
    return header(this.name, this.help, 'counter') + lines.join('');
  }
}

/** A gauge read when scraped: `collect` returns its series. */
export class Gauge implements Metric {
  constructor(
    readonly name: string,
    private readonly help: string,
    private readonly collect: () => { labels?: Labels; value: number }[],
  ) {}

  render(): string {
    const lines = this.collect().map(
      ({ labels, value }) => `${this.name}${labelText(labels ?? {})} ${numberText(value)}\n`,
    );
    return header(this.name, this.help, 'gauge') + lines.join('');
  }
}

export class Histogram implements Metric {
  private readonly series: Series<{ counts: number[]; sum: number; count: number }>;
  constructor(
    readonly name: string,
    private readonly help: string,
    private readonly buckets: readonly number[],
    labelNames: readonly string[] = [],
  ) {
    if (buckets.some((b, i) => i > 0 && b <= buckets[i - 1]!)) throw new Error(`${name}: buckets must increase`);
    this.series = new Series(name, labelNames);
  }

  observe(labels: Labels, value: number): void {
    const s = this.series.get(labels, () => ({ counts: this.buckets.map(() => 0), sum: 0, count: 0 }));
    this.buckets.forEach((le, i) => {
      if (value <= le) s.counts[i]! += 1;
    });
    s.sum += value;
    s.count += 1;
  }

  render(): string {
    const lines: string[] = [];
    for (const { labels, value } of this.series.entries()) {
      this.buckets.forEach((le, i) =>
        lines.push(`${this.name}_bucket${labelText({ ...labels, le: numberText(le) })} ${value.counts[i]}\n`),
      );
      lines.push(`${this.name}_bucket${labelText({ ...labels, le: '+Inf' })} ${value.count}\n`);
      lines.push(`${this.name}_sum${labelText(labels)} ${value.sum}\n`);
      lines.push(`${this.name}_count${labelText(labels)} ${value.count}\n`);
    }
    return header(this.name, this.help, 'histogram') + lines.join('');
  }
}

/** Seconds, from a second to a few hours: how long steps take (a reboot or a drain runs for minutes). */
export const STEP_SECONDS_BUCKETS = [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200] as const;

export class Registry {
  private readonly metrics = new Map<string, Metric>();

  private add<M extends Metric>(metric: M, labelNames: readonly string[] = []): M {
    if (!NAME.test(metric.name)) throw new Error(`"${metric.name}" is not a metric name`);
    for (const l of labelNames) if (!LABEL.test(l) || l.startsWith('__')) throw new Error(`"${l}" is not a label name`);
    if (this.metrics.has(metric.name)) throw new Error(`${metric.name} is registered twice`);
    this.metrics.set(metric.name, metric);
    return metric;
  }

  counter(name: string, help: string, labelNames: readonly string[] = []): Counter {
    return this.add(new Counter(name, help, labelNames), labelNames);
  }

  gauge(name: string, help: string, collect: () => { labels?: Labels; value: number }[]): Gauge {
    return this.add(new Gauge(name, help, collect));
  }

  histogram(name: string, help: string, buckets: readonly number[], labelNames: readonly string[] = []): Histogram {
    return this.add(new Histogram(name, help, buckets, labelNames), [...labelNames, 'le'].slice(0, -1));
  }

  /** Every metric in the text exposition format. */
  render(): string {
    return [...this.metrics.values()].map((m) => m.render()).join('');
  }
}
