import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const dir = new URL('./', import.meta.url);
const sources = readdirSync(dir)
  .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))
  .map((f) => ({ file: f, text: readFileSync(new URL(f, dir), 'utf8') }));
const script = readFileSync(new URL('static/app.js', dir), 'utf8');

describe('the web view stays a reader', () => {
  it('asks Temporal for nothing that changes a workflow', () => {
    expect(sources.map((s) => s.file)).toContain('views.ts');
    const writes = /\.(signal|signalWithStart|executeUpdate|startUpdate|terminate|cancel|start|execute)\(/;
    expect(sources.filter((s) => writes.test(s.text)).map((s) => s.file)).toEqual([]);
  });

  it('puts text into the page only as text', () => {
    expect(script).toContain('createTextNode');
    expect(script).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function/);
  });
});
