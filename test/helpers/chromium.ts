import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';

/**
 * A headless Chromium driven over the Chrome DevTools Protocol on a pipe (`--remote-debugging-pipe`:
 * file descriptors 3 and 4, NUL-terminated JSON), so no WebSocket client is needed.
 */

/** The Chromium binary (REFIT_CHROMIUM if set, else `chromium` or `chromium-browser` on PATH), or undefined. */
export function findChromium(): string | undefined {
  const named = process.env.REFIT_CHROMIUM;
  const candidates = named !== undefined && named !== '' ? [named] : ['chromium', 'chromium-browser'];
  return candidates.find((c) => spawnSync(c, ['--version'], { stdio: 'ignore', timeout: 20_000 }).status === 0);
}

interface Pending {
  resolve: (result: Record<string, unknown>) => void;
  reject: (err: Error) => void;
}

export interface BrowserPage {
  /** Load a URL and wait for the load event (none for a change of the fragment only). */
  goto(url: string): Promise<void>;
  /** The value of a JavaScript expression in the page (awaited if it is a promise). */
  evaluate<T>(expression: string): Promise<T>;
  /** Until the expression is truthy; its value. The timeout error names `what` and the last value. */
  waitFor<T>(expression: string, what: string, timeoutMs?: number): Promise<T>;
  /** A PNG of the whole page (at most `maxHeight` CSS pixels tall). */
  screenshot(file: string, maxHeight?: number): Promise<void>;
  /** Uncaught exceptions and console errors the page reported (a CSP violation is one). */
  readonly errors: string[];
}

export interface Browser {
  newPage(width?: number, height?: number): Promise<BrowserPage>;
  close(): Promise<void>;
}

export async function launchChromium(binary: string): Promise<Browser> {
  const profile = mkdtempSync(path.join(os.tmpdir(), 'refit-chromium-'));
  const child: ChildProcess = spawn(
    binary,
    [
      '--headless',
      // Tests run as root in CI, where Chromium's sandbox cannot start.
      '--no-sandbox',
      '--disable-gpu',
      '--disable-dev-shm-usage',
      '--no-first-run',
      '--no-default-browser-check',
      '--hide-scrollbars',
      '--remote-debugging-pipe',
      `--user-data-dir=${profile}`,
      'about:blank',
    ],
    { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const toBrowser = child.stdio[3] as Writable;
  const fromBrowser = child.stdio[4] as Readable;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  let nextId = 1;
  const pending = new Map<number, Pending>();
  const listeners = new Map<string, (method: string, params: Record<string, unknown>) => void>();
  let buffered = '';
  fromBrowser.on('data', (chunk: Buffer) => {
    buffered += chunk.toString('utf8');
    for (let end = buffered.indexOf('\0'); end >= 0; end = buffered.indexOf('\0')) {
      const message = JSON.parse(buffered.slice(0, end)) as {
        id?: number;
        result?: Record<string, unknown>;
        error?: { message: string };
        method?: string;
        params?: Record<string, unknown>;
        sessionId?: string;
      };
      buffered = buffered.slice(end + 1);
      if (message.id !== undefined) {
        const waiting = pending.get(message.id);
        pending.delete(message.id);
        if (message.error) waiting?.reject(new Error(`chromium: ${message.error.message}`));
        else waiting?.resolve(message.result ?? {});
      } else if (message.method !== undefined && message.sessionId !== undefined) {
        listeners.get(message.sessionId)?.(message.method, message.params ?? {});
      }
    }
  });
  void exited.then(() => {
    for (const p of pending.values()) p.reject(new Error(`chromium exited: ${stderr.trim().slice(-500)}`));
    pending.clear();
  });

  const send = (method: string, params: Record<string, unknown> = {}, sessionId?: string) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve, reject });
      toBrowser.write(`${JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) })}\0`);
    });

  try {
    await send('Browser.getVersion');
  } catch (err) {
    child.kill('SIGKILL');
    await exited;
    rmSync(profile, { recursive: true, force: true });
    throw err;
  }

  return {
    async newPage(width = 1280, height = 800) {
      const { targetId } = await send('Target.createTarget', { url: 'about:blank' });
      const { sessionId } = (await send('Target.attachToTarget', { targetId, flatten: true })) as {
        sessionId: string;
      };
      const errors: string[] = [];
      let loaded: (() => void) | undefined;
      listeners.set(sessionId, (method, params) => {
        if (method === 'Page.loadEventFired') loaded?.();
        if (method === 'Runtime.exceptionThrown') errors.push(JSON.stringify(params.exceptionDetails));
        if (method === 'Log.entryAdded') {
          const entry = params.entry as { level: string; text: string };
          if (entry.level === 'error') errors.push(entry.text);
        }
      });
      const call = (method: string, params: Record<string, unknown> = {}) => send(method, params, sessionId);
      await Promise.all([call('Page.enable'), call('Runtime.enable'), call('Log.enable')]);
      await call('Emulation.setDeviceMetricsOverride', { width, height, deviceScaleFactor: 1, mobile: false });
      const evaluate = async <T>(expression: string): Promise<T> => {
        const r = (await call('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true })) as {
          result: { value?: unknown };
          exceptionDetails?: { text: string; exception?: { description?: string } };
        };
        if (r.exceptionDetails)
          throw new Error(`in the page: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`);
        return r.result.value as T;
      };
      return {
        errors,
        async goto(url) {
          const load = new Promise<void>((resolve) => (loaded = resolve));
          const { loaderId } = await call('Page.navigate', { url });
          // A change of the fragment only loads nothing: no load event comes (and no loader id).
          if (loaderId === undefined) return;
          let timer: NodeJS.Timeout | undefined;
          const timeout = new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`${url} did not load within 15 s`)), 15_000);
          });
          await Promise.race([load, timeout]).finally(() => clearTimeout(timer));
        },
        evaluate,
        async waitFor<T>(expression: string, what: string, timeoutMs = 20_000): Promise<T> {
          const deadline = Date.now() + timeoutMs;
          let last: unknown;
          for (;;) {
            last = await evaluate<T>(expression);
            if (last) return last as T;
            if (Date.now() > deadline)
              throw new Error(`waited ${timeoutMs} ms for ${what}; last: ${JSON.stringify(last)}`);
            await new Promise((r) => setTimeout(r, 200));
          }
        },
        async screenshot(file, maxHeight = 1400) {
          const metrics = (await call('Page.getLayoutMetrics')) as { cssContentSize: { height: number } };
          const clip = {
            x: 0,
            y: 0,
            width,
            height: Math.min(maxHeight, Math.max(height / 2, Math.ceil(metrics.cssContentSize.height))),
            scale: 1,
          };
          const { data } = (await call('Page.captureScreenshot', {
            format: 'png',
            clip,
            captureBeyondViewport: true,
          })) as { data: string };
          writeFileSync(file, Buffer.from(data, 'base64'));
        },
      };
    },
    async close() {
      if (child.exitCode === null) {
        send('Browser.close').catch(() => undefined);
        const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(profile, { recursive: true, force: true, maxRetries: 3 });
    },
  };
}
