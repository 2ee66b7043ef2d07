import { describe, expect, it } from 'vitest';
import { stepLabel } from './names.js';

describe('stepLabel', () => {
  it('names an apply by its kind and a revert as revert:<kind>', () => {
    expect(stepLabel('drain', 'apply')).toBe('drain');
    expect(stepLabel('ovs-convert', 'revert')).toBe('revert:ovs-convert');
  });
});
