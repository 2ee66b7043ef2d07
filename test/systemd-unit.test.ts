import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  environmentFiles,
  execStartArgv,
  parseEnvironmentFile,
  parseUnitFile,
  serviceSetting,
  timeSpanMs,
  withEnvironment,
} from '../lab/systemd-unit.js';

const shipped = (name: string) => readFileSync(new URL(`../deploy/debian/${name}`, import.meta.url), 'utf8');

describe('reading refit-host.service as systemd would', () => {
  const unit = parseUnitFile(shipped('refit-host.service'), 'refit-host.service');

  it('finds the ExecStart line, the environment file and the restart policy of the shipped unit', () => {
    expect(execStartArgv(unit, 'refit-host.service')).toEqual(['/usr/bin/refit-host', 'run']);
    expect(environmentFiles(unit)).toEqual([{ path: '/etc/refit/host.env', optional: false }]);
    expect(serviceSetting(unit, 'Restart')).toBe('always');
    expect(serviceSetting(unit, 'StateDirectory')).toBe('refit');
    expect(unit.get('Unit')?.get('After')).toEqual(['network-online.target openvswitch-switch.service']);
    expect(unit.get('Unit')?.get('Requires')).toBeUndefined();
  });

  it('splits quoted arguments and refuses what it does not implement, naming the file', () => {
    const one = (line: string) => parseUnitFile(`[Service]\nExecStart=${line}\n`, 'x.service');
    expect(execStartArgv(one(`/usr/bin/a "b c" 'd'`), 'x.service')).toEqual(['/usr/bin/a', 'b c', 'd']);
    expect(() => execStartArgv(one('-/usr/bin/a'), 'x.service')).toThrow(/x.service: ExecStart= prefixes/);
    expect(() => execStartArgv(one('/usr/bin/a $HOME'), 'x.service')).toThrow(/variables are not supported/);
    expect(() => execStartArgv(one('a b'), 'x.service')).toThrow(/absolute path/);
    expect(() => parseUnitFile('Key=value\n', 'y.service')).toThrow(/y.service:1: not "Key=value" in a section/);
  });

  it('reads time spans in the units the unit uses', () => {
    expect(timeSpanMs('5s', 'x')).toBe(5_000);
    expect(timeSpanMs('90', 'x')).toBe(90_000);
    expect(timeSpanMs('250ms', 'x')).toBe(250);
    expect(timeSpanMs('2min', 'x')).toBe(120_000);
    expect(() => timeSpanMs('1h 5s', 'RestartSec=')).toThrow(/RestartSec=: unsupported time span/);
  });
});

describe('the environment file', () => {
  it('reads the shipped default: linux driver, state in /var/lib/refit, optional settings commented out', () => {
    const env = parseEnvironmentFile(shipped('host.env'), 'host.env');
    expect(env).toEqual({
      REFIT_NATS_URL: 'nats://127.0.0.1:4222',
      REFIT_HOST_LABELS: 'role=hypervisor',
      REFIT_DRIVER: 'linux',
      REFIT_STATE_DIR: '/var/lib/refit',
    });
  });

  it('takes quotes off, skips comments and names the line it cannot read', () => {
    expect(parseEnvironmentFile('# c\n; c\nA="x y"\nB=\'z\'\n\nC=1=2\n', 'f')).toEqual({ A: 'x y', B: 'z', C: '1=2' });
    expect(() => parseEnvironmentFile('A=1\nexport B=2\n', '/etc/refit/host.env')).toThrow(
      /\/etc\/refit\/host.env:2: not NAME=value/,
    );
  });

  it('sets values where the default names them, commented or not, and appends the others', () => {
    const text = withEnvironment(shipped('host.env'), {
      REFIT_HOST_ID: 'h1',
      REFIT_DRIVER: 'lab',
      REFIT_LAB_DIR: '/tmp/lab',
    });
    expect(text).toContain('\nREFIT_HOST_ID=h1\n');
    expect(text).not.toContain('#REFIT_HOST_ID=');
    expect(text).toContain("# This host's id in the inventory");
    expect(parseEnvironmentFile(text, 'x')).toMatchObject({ REFIT_DRIVER: 'lab', REFIT_LAB_DIR: '/tmp/lab' });
    expect(text.trimEnd().split('\n').at(-1)).toBe('REFIT_LAB_DIR=/tmp/lab');
    expect(() => withEnvironment('', { 'BAD NAME': 'x' })).toThrow(/cannot write/);
  });
});
