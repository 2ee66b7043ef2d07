/**
 * Characters a terminal acts on instead of showing: C0 controls (ESC starts colour, cursor and title
 * sequences; CR overwrites a line; BEL rings), DEL, C1 controls (U+009B is a one-byte CSI), and the
 * invisible Unicode formatting characters that reorder or hide text (bidi embeddings, overrides and
 * isolates, zero-width characters, line and paragraph separators, the byte-order mark).
 */
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]/gu;

const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t', '\x1b': '\\e' };

function escape(ch: string): string {
  const named = NAMED[ch];
  if (named !== undefined) return named;
  const code = ch.codePointAt(0) ?? 0;
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
}

/**
 * Text from outside (host ids, labels, facts and error messages from hosts, plan contents, audit
 * events) made safe to print on a terminal: every character a terminal would act on is shown as an
 * escape (`\e`, `\r`, `\x07`, `\u202e`), a line break too. Printable text, any script, is unchanged,
 * and safe text stays as it is (escaping twice changes nothing more).
 */
export function terminalSafe(text: string): string {
  return text.replace(UNSAFE, escape);
}

/** Lines of output, each made terminal-safe, joined: line breaks inside a line are escaped, not followed. */
export function safeLines(lines: readonly string[]): string {
  return lines.map(terminalSafe).join('\n');
}
