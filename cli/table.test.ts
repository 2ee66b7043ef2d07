import { describe, expect, it } from 'vitest';
import { tableLines } from './table.js';

describe('tableLines', () => {
  it('makes each column as wide as its widest cell, header included, two spaces apart', () => {
    expect(
      tableLines(
        [
          ['sim-001', 'online', 'rack=r1'],
          ['a-much-longer-host', 'OFFLINE', ''],
        ],
        { header: ['HOST', 'STATE', 'LABELS'] },
      ),
    ).toEqual([
      'HOST                STATE    LABELS',
      'sim-001             online   rack=r1',
      'a-much-longer-host  OFFLINE',
    ]);
  });

  it('indents, takes another gap, and leaves no trailing spaces', () => {
    expect(
      tableLines(
        [
          ['h1', '', 'x'],
          ['h22', '', ''],
        ],
        { indent: '  ', gap: 1 },
      ),
    ).toEqual(['  h1   x', '  h22']);
  });

  it('has only the header when there are no rows', () => {
    expect(tableLines([], { header: ['A', 'B'] })).toEqual(['A  B']);
  });
});
