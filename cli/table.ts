import { terminalSafe } from './terminal-text.js';

export interface TableOptions {
  /** Column titles, printed as the first line. */
  header?: readonly string[];
  /** Put in front of every line. */
  indent?: string;
  /** Spaces between columns (2). */
  gap?: number;
}

/**
 * A plain-text table: each column as wide as its widest cell (the header's included), columns `gap`
 * spaces apart; the last column is not padded and no line ends in spaces. Every cell is made
 * terminal-safe first (`terminalSafe`): a cell is one line, whatever it holds.
 */
export function tableLines(rows: readonly (readonly string[])[], options: TableOptions = {}): string[] {
  const { header, indent = '', gap = 2 } = options;
  const all = (header === undefined ? rows : [header, ...rows]).map((row) => row.map(terminalSafe));
  const widths: number[] = [];
  for (const row of all) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  const separator = ' '.repeat(gap);
  return all.map((row) =>
    (
      indent + row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join(separator)
    ).trimEnd(),
  );
}
