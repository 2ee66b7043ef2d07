import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startUiServer, type UiServer } from './server.js';
import type { UiReader } from './views.js';
import { UsageError } from '../../schemas/errors.js';

// A reader that records what it was asked: the server's own routing and refusals, without a stack.
const asked: string[] = [];
const reader: UiReader = {
  rollouts: (limit) => {
    asked.push(`rollouts ${limit}`);
    return Promise.resolve([]);
  },
  rollout: (id) => {
    asked.push(`rollout ${id}`);
    return Promise.reject(new UsageError(`no rollout ${id}`, 1));
  },
  host: (hostId, rolloutId) => {
    asked.push(`host ${hostId} ${rolloutId ?? '-'}`);
    return Promise.reject(new Error('cannot reach NATS'));
  },
};

let server: UiServer;
beforeAll(async () => {
  server = await startUiServer({ reader, host: '127.0.0.1', port: 0 });
});
afterAll(() => server.close());

const get = (path: string) => fetch(new URL(path, server.url));

describe('the web view server', () => {
  it('serves the page with a policy that runs no inline script', async () => {
    const res = await get('/');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    expect(res.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(await res.text()).toContain('<script type="module" src="/app.js">');
  });

  it('routes each API to its read, and tells a missing rollout from a server it cannot reach', async () => {
    asked.length = 0;
    expect((await get('/api/rollouts?limit=7')).status).toBe(200);
    const missing = await get('/api/rollouts/nope%2Fx');
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({ error: 'no rollout nope/x' });
    const down = await get('/api/hosts/sim-001?rollout=r1');
    expect(down.status).toBe(503);
    expect(await down.json()).toEqual({ error: 'cannot reach NATS' });
    expect(asked).toEqual(['rollouts 7', 'rollout nope/x', 'host sim-001 r1']);
  });

  it('refuses a bad host id, a bad limit and bad encoding before reading anything', async () => {
    asked.length = 0;
    expect((await get('/api/hosts/%3Cimg%3E')).status).toBe(400);
    expect((await get('/api/rollouts?limit=abc')).status).toBe(400);
    expect((await get('/api/rollouts/%E0%A4%A')).status).toBe(400);
    expect((await get('/api/nothing')).status).toBe(404);
    expect(asked).toEqual([]);
  });
});
