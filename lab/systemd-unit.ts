/**
 * What the lab needs from systemd's file formats to start an agent the way refit-host.service
 * does: the unit's [Service] settings and an EnvironmentFile. Only the subset the unit uses is
 * accepted; anything else is refused by name rather than half-understood.
 */
import { RefitError } from '../schemas/errors.js';

export class UnitFileError extends RefitError {}

export type UnitFile = Map<string, Map<string, string[]>>;

/** `[Section]` and `Key=value` lines; a key given twice keeps both values in order (as ExecStartPre= would). */
export function parseUnitFile(text: string, file: string): UnitFile {
  const unit: UnitFile = new Map();
  let section: Map<string, string[]> | undefined;
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) return;
    if (raw.endsWith('\\')) throw new UnitFileError(`${file}:${i + 1}: continued lines are not supported`);
    const header = /^\[([A-Za-z]+)\]$/.exec(line);
    if (header) {
      section = new Map();
      unit.set(header[1] as string, section);
      return;
    }
    const eq = line.indexOf('=');
    if (eq <= 0 || section === undefined) throw new UnitFileError(`${file}:${i + 1}: not "Key=value" in a section`);
    const key = line.slice(0, eq).trim();
    section.set(key, [...(section.get(key) ?? []), line.slice(eq + 1).trim()]);
  });
  return unit;
}

/** The last value of a [Service] key (systemd's rule for single-valued settings). */
export function serviceSetting(unit: UnitFile, key: string): string | undefined {
  return unit.get('Service')?.get(key)?.at(-1);
}

/**
 * ExecStart= as an argument vector. systemd splits on whitespace with "…" and '…' quoting; the
 * special prefixes (-, @, :, +, !) and specifiers (%h, $VAR) are not used by refit-host.service and
 * are refused so that the lab never runs something other than what systemd would.
 */
export function execStartArgv(unit: UnitFile, file: string): string[] {
  const values = unit.get('Service')?.get('ExecStart') ?? [];
  if (values.length !== 1) throw new UnitFileError(`${file}: expected one ExecStart=, found ${values.length}`);
  const line = values[0] as string;
  if (/^[-@:+!]/.test(line)) throw new UnitFileError(`${file}: ExecStart= prefixes are not supported: ${line}`);
  if (/[%$]/.test(line))
    throw new UnitFileError(`${file}: ExecStart= specifiers and variables are not supported: ${line}`);
  const argv = splitQuoted(line, file);
  if (!argv[0]?.startsWith('/')) throw new UnitFileError(`${file}: ExecStart= must name an absolute path: ${line}`);
  return argv;
}

/** EnvironmentFile= paths; a leading "-" (file may be missing) is kept as `optional`. */
export function environmentFiles(unit: UnitFile): { path: string; optional: boolean }[] {
  return (unit.get('Service')?.get('EnvironmentFile') ?? []).map((v) =>
    v.startsWith('-') ? { path: v.slice(1), optional: true } : { path: v, optional: false },
  );
}

/** A time span as systemd writes it in these units: 5s, 90s, 500ms, 2min, or a bare number of seconds. */
export function timeSpanMs(value: string, what: string): number {
  const m = /^(\d+)\s*(ms|s|sec|min|m)?$/.exec(value.trim());
  if (!m) throw new UnitFileError(`${what}: unsupported time span "${value}"`);
  const n = Number(m[1]);
  return m[2] === 'ms' ? n : m[2] === 'min' || m[2] === 'm' ? n * 60_000 : n * 1_000;
}

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * An EnvironmentFile as systemd reads it: NAME=value lines, # and ; comments, blank lines, a value
 * in "…" or '…' quotes taken without them; no shell expansion. A line that is none of these is an
 * error naming file and line (systemd would log and skip it; the lab would rather stop).
 */
export function parseEnvironmentFile(text: string, file: string): Record<string, string> {
  const env: Record<string, string> = {};
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) return;
    const eq = line.indexOf('=');
    const name = eq > 0 ? line.slice(0, eq).trim() : '';
    if (!NAME.test(name)) throw new UnitFileError(`${file}:${i + 1}: not NAME=value: ${line}`);
    let value = line.slice(eq + 1).trim();
    const quote = value[0];
    if ((quote === '"' || quote === "'") && value.length >= 2 && value.endsWith(quote)) value = value.slice(1, -1);
    env[name] = value;
  });
  return env;
}

/**
 * The package's default environment file with some values set: a `NAME=` or commented `#NAME=`
 * line is replaced where it stands, names it does not mention are appended. Comments stay.
 */
export function withEnvironment(text: string, values: Record<string, string>): string {
  for (const [name, value] of Object.entries(values)) {
    if (!NAME.test(name) || /[\n"]/.test(value)) throw new UnitFileError(`cannot write ${name}=${value}`);
  }
  const pending = new Map(Object.entries(values));
  const lines = text.split('\n').map((line) => {
    const m = /^#?\s*([A-Za-z_][A-Za-z0-9_]*)=/.exec(line);
    const name = m?.[1];
    if (name === undefined || !pending.has(name)) return line;
    const value = pending.get(name) as string;
    pending.delete(name);
    return `${name}=${value}`;
  });
  const body = lines.join('\n').replace(/\n*$/, '\n');
  return pending.size === 0 ? body : body + [...pending].map(([k, v]) => `${k}=${v}`).join('\n') + '\n';
}

function splitQuoted(line: string, file: string): string[] {
  const words: string[] = [];
  const re = /"([^"]*)"|'([^']*)'|(\S+)/g;
  for (let m = re.exec(line); m !== null; m = re.exec(line)) {
    const word = m[1] ?? m[2] ?? m[3] ?? '';
    if (m[3] !== undefined && /["']/.test(word)) throw new UnitFileError(`${file}: unbalanced quotes in ${line}`);
    words.push(word);
  }
  return words;
}
