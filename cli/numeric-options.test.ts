import { InvalidArgumentError } from 'commander';
import { describe, expect, it } from 'vitest';
import { integerBetween, nonNegativeInteger, positiveInteger, positiveNumber } from './numeric-options.js';

describe('numeric option parsers', () => {
  it('take plain decimals only', () => {
    expect(positiveInteger('50')).toBe(50);
    expect(nonNegativeInteger('0')).toBe(0);
    expect(positiveNumber('0.5')).toBe(0.5);
    expect(integerBetween(1, 4094, 'a VLAN tag')('4094')).toBe(4094);
    for (const text of ['', ' ', '1e3', '0x10', '+5', '5 ', 'Infinity', '9007199254740993'])
      expect(() => positiveInteger(text), text).toThrow(InvalidArgumentError);
  });

  it('say what they expected', () => {
    expect(() => positiveInteger('0')).toThrow('Expected a whole number above 0.');
    expect(() => nonNegativeInteger('-1')).toThrow('Expected a whole number, 0 or more.');
    expect(() => positiveNumber('0')).toThrow('Expected a number above 0.');
    expect(() => integerBetween(1, 65535, 'a port number')('65536')).toThrow('Expected a port number (1-65535).');
  });
});
