import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../workers/config.js';
import { AGENT_METRICS_LISTEN, CONTROLLER_METRICS_LISTEN, metricsListen } from '../workers/metrics/listen.js';
import { readDashboard } from './helpers/dashboard.js';

// docker-compose.yml cannot be brought up here (no Docker); this holds it to what the code reads.
const compose = parse(readFileSync('docker-compose.yml', 'utf8'), { merge: true }) as {
  services: Record<
    string,
    { ports?: string[]; environment?: Record<string, string>; volumes?: string[]; healthcheck?: { test: string[] } }
  >;
};

/** `${NAME:-default}` as compose resolves it with NAME unset. */
const withDefaults = (text: string) => text.replace(/\$\{[A-Z_]+:-([^}]*)\}/g, '$1');

describe('docker-compose.yml', () => {
  it('publishes every port on loopback unless told otherwise', () => {
    const published = Object.entries(compose.services).flatMap(([name, s]) =>
      (s.ports ?? []).map((p) => `${name} ${withDefaults(p)}`),
    );
    expect(published.length).toBeGreaterThanOrEqual(8);
    expect(published.filter((p) => !/ 127\.0\.0\.1:\d+:\d+$/.test(p))).toEqual([]);
    expect(compose.services['nats-1']?.ports).toContain('${REFIT_NATS_BIND:-127.0.0.1}:4222:4222');
  });

  it("gives the controller the TLS settings refit's config reads, pointing at files credentials.mjs makes", () => {
    const env = compose.services.controller?.environment ?? {};
    const config = loadConfig({ home: '/tmp/refit-compose' }, env);
    expect(config.natsUrl.split(',').every((u) => u.startsWith('tls://'))).toBe(true);
    expect(config.natsTls).toEqual({
      caFile: '/etc/refit/tls/ca.pem',
      certFile: '/etc/refit/tls/client.pem',
      keyFile: '/etc/refit/tls/client.key',
    });
    expect(config.temporalTls).toEqual({ ...config.natsTls, serverName: 'temporal' });
    expect(compose.services.controller?.volumes).toContain('./deploy/tls:/etc/refit/tls:ro');
    // The names workers/dev/tls.ts gives the files, which credentials.mjs writes to deploy/tls.
    const made = ['ca.pem', 'client.pem', 'client.key', 'server.pem', 'server.key'];
    const referenced = Object.values(compose.services).flatMap((s) =>
      Object.values(s.environment ?? {}).filter((v) => /\/tls\/|-tls\//.test(String(v))),
    );
    expect(referenced.length).toBeGreaterThan(10);
    expect(referenced.filter((f) => !made.includes(path.basename(String(f))))).toEqual([]);
  });

  it('has Temporal require client certificates, and NATS verify them on client ports and routes', () => {
    expect(compose.services.temporal?.environment).toMatchObject({
      TEMPORAL_TLS_REQUIRE_CLIENT_AUTH: 'true',
      TEMPORAL_TLS_FRONTEND_CERT: '/etc/temporal/tls/server.pem',
      TEMPORAL_TLS_CLIENT1_CA_CERT: '/etc/temporal/tls/ca.pem',
    });
    const cluster = readFileSync('deploy/nats/cluster.conf', 'utf8');
    const tlsBlocks = cluster.match(/tls \{[^}]*\}/g) ?? [];
    expect(tlsBlocks).toHaveLength(2);
    for (const block of tlsBlocks) expect(block).toMatch(/verify: true/);
    for (const n of ['nats-1', 'nats-2', 'nats-3'])
      expect(compose.services[n]?.volumes).toContain('./deploy/tls:/etc/nats/tls:ro');
  });
});

describe('health checks, scrape configuration and dashboard', () => {
  it("check the controller's /healthz on the address its environment gives, published on loopback", () => {
    const controller = compose.services.controller!;
    const listen = metricsListen(undefined, controller.environment ?? {}, CONTROLLER_METRICS_LISTEN);
    expect(listen).toMatchObject({ address: { host: '0.0.0.0', port: 9464 }, explicit: true });
    const check = controller.healthcheck?.test.join(' ') ?? '';
    expect(check).toContain('http://127.0.0.1:9464/healthz');
    // Only a 2xx is healthy: /healthz answers 503 with the reason otherwise.
    expect(check).toMatch(/r\.ok \? 0 : 1/);
    expect(controller.ports).toContain('127.0.0.1:9464:9464');
  });

  it('scrape the default addresses of the controller and of the hosts', () => {
    const prom = parse(readFileSync('deploy/prometheus/prometheus.yml', 'utf8')) as {
      scrape_configs: {
        job_name: string;
        metrics_path: string;
        static_configs?: { targets: string[] }[];
        file_sd_configs?: { files: string[] }[];
      }[];
    };
    const jobs = Object.fromEntries(prom.scrape_configs.map((j) => [j.job_name, j]));
    expect(Object.keys(jobs)).toEqual(['refit-controller', 'refit-hosts']);
    expect(jobs['refit-controller']?.static_configs?.[0]?.targets).toEqual([CONTROLLER_METRICS_LISTEN]);
    expect(jobs['refit-hosts']?.file_sd_configs?.[0]?.files).toEqual(['hosts.json']);
    for (const job of prom.scrape_configs) expect(job.metrics_path).toBe('/metrics');
    expect(readFileSync('deploy/prometheus/prometheus.yml', 'utf8')).toContain(
      `:${AGENT_METRICS_LISTEN.split(':')[1]}`,
    );
  });

  it('has a Grafana dashboard of Prometheus queries with unique panel ids that do not overlap', () => {
    const dash = readDashboard();
    expect(dash.uid).toBe('refit-overview');
    const ids = dash.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of dash.panels) {
      expect(p.targets.length, p.title).toBeGreaterThan(0);
      for (const t of p.targets) expect(t.expr, p.title).toMatch(/\b(refit|temporal)_/);
    }
    // Names are checked against real scrapes in test/metrics.test.ts; here: the layout.
    const cells = new Set<string>();
    for (const p of dash.panels as unknown as {
      title: string;
      gridPos: { x: number; y: number; w: number; h: number };
    }[])
      for (let x = p.gridPos.x; x < p.gridPos.x + p.gridPos.w; x++)
        for (let y = p.gridPos.y; y < p.gridPos.y + p.gridPos.h; y++) {
          expect(cells.has(`${x},${y}`), `${p.title} overlaps another panel`).toBe(false);
          cells.add(`${x},${y}`);
        }
  });
});

describe('TLS settings from the environment', () => {
  const home = { home: '/tmp/refit-env' };
  it('take a CA alone, or a CA with a client pair, and refuse half a pair', () => {
    expect(loadConfig(home, { REFIT_NATS_TLS_CA: '/ca.pem' }).natsTls).toEqual({ caFile: '/ca.pem' });
    expect(() => loadConfig(home, { REFIT_NATS_TLS_CA: '/ca.pem', REFIT_NATS_TLS_CERT: '/c.pem' })).toThrow(
      /REFIT_NATS_TLS_CERT and REFIT_NATS_TLS_KEY go together/,
    );
    expect(() => loadConfig(home, { REFIT_NATS_TLS_CERT: '/c.pem', REFIT_NATS_TLS_KEY: '/c.key' })).toThrow(
      /needs REFIT_NATS_TLS_CA/,
    );
    expect(loadConfig(home, {}).natsTls).toBeUndefined();
  });

  it('turn Temporal TLS on with the system roots, or with a CA and a pair, and refuse a contradiction', () => {
    expect(loadConfig(home, { REFIT_TEMPORAL_TLS: 'true' }).temporalTls).toEqual({});
    expect(
      loadConfig(home, { REFIT_TEMPORAL_TLS_CERT: '/c.pem', REFIT_TEMPORAL_TLS_KEY: '/c.key' }).temporalTls,
    ).toEqual({ certFile: '/c.pem', keyFile: '/c.key' });
    expect(() => loadConfig(home, { REFIT_TEMPORAL_TLS: 'yes' })).toThrow(/must be 1, true, 0 or false/);
    expect(() => loadConfig(home, { REFIT_TEMPORAL_TLS: 'false', REFIT_TEMPORAL_TLS_CA: '/ca.pem' })).toThrow(
      /contradicts/,
    );
    expect(loadConfig(home, {}).temporalTls).toBeUndefined();
  });
});
