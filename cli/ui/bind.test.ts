import { describe, expect, it } from 'vitest';
import { UsageError } from '../../schemas/errors.js';
import { checkBind, isLoopback, loopbackHostHeaders } from './bind.js';

describe('where refit ui may listen', () => {
  it.each(['127.0.0.1', '127.1.2.3', '::1', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1', 'localhost', 'LOCALHOST'])(
    'counts %s as loopback',
    (address) => expect(isLoopback(address)).toBe(true),
  );

  it.each(['0.0.0.0', '::', '10.0.0.5', '128.0.0.1', '::ffff:10.0.0.1', 'example.org'])(
    'does not count %s as loopback',
    (address) => expect(isLoopback(address)).toBe(false),
  );

  it('refuses an address beyond loopback with the reason and the way out', () => {
    expect(() => checkBind('0.0.0.0', false)).toThrow(UsageError);
    expect(() => checkBind('0.0.0.0', false)).toThrow(/no login of its own.*ssh -L.*--allow-remote/s);
    expect(() => checkBind('0.0.0.0', true)).not.toThrow();
    expect(() => checkBind('127.0.0.1', false)).not.toThrow();
  });

  it('refuses a name that is not an address, even with --allow-remote', () => {
    expect(() => checkBind('evil.example', true)).toThrow(/not an IP address/);
  });

  it('answers only to loopback names on its own port', () => {
    const allowed = loopbackHostHeaders('127.0.0.1', 8470);
    expect([...allowed].sort()).toEqual(['127.0.0.1:8470', '[::1]:8470', 'localhost:8470']);
    expect(loopbackHostHeaders('::1', 1).has('[::1]:1')).toBe(true);
  });
});
