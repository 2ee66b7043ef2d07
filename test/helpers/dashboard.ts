import { readFileSync } from 'node:fs';

export interface DashboardPanel {
  id: number;
  title: string;
  type: string;
  targets: { refId: string; expr: string }[];
}

/** deploy/grafana/refit.json, parsed. */
export function readDashboard(): { title: string; uid: string; panels: DashboardPanel[] } {
  return JSON.parse(readFileSync('deploy/grafana/refit.json', 'utf8')) as ReturnType<typeof readDashboard>;
}

/** Every metric (sample) name the dashboard's queries read: the refit_ and temporal_ words of each expression. */
export function dashboardMetricNames(): string[] {
  const names = readDashboard().panels.flatMap((p) =>
    p.targets.flatMap((t) => t.expr.match(/\b(?:refit|temporal)_[a-zA-Z0-9_]+/g) ?? []),
  );
  return [...new Set(names)].sort();
}
