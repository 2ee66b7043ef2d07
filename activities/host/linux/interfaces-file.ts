/**
 * /etc/network/interfaces as a list of blocks that print back byte for byte. Only the blocks a
 * planner replaces change; comments, blank lines and unrelated stanzas are kept exactly as read.
 */

/** `iface <name> <family> <method>` and its indented option lines. */
export interface IfaceStanza {
  type: 'iface';
  name: string;
  family: string;
  method: string;
  /** Options in file order; keys as written (`bridge-ports` and `bridge_ports` both occur). */
  options: { key: string; value: string }[];
  raw: string;
}
/** `auto a b c` or `allow-<class> a b c`. */
export interface ClassLine {
  type: 'class';
  cls: string;
  names: string[];
  raw: string;
}
/** Anything else: comments, blank lines, `source`, `mapping`, ... */
export interface OtherBlock {
  type: 'other';
  raw: string;
}
export type InterfacesBlock = IfaceStanza | ClassLine | OtherBlock;

const STANZA_START = /^(iface|mapping|auto|allow-\S+|source|source-directory|rename|no-auto-down|no-scripts)\b/;

/** Split the file into blocks. Joining every block's `raw` gives the input back exactly. */
export function parseInterfaces(text: string): InterfacesBlock[] {
  const lines = text.match(/[^\n]*\n|[^\n]+$/g) ?? [];
  const blocks: InterfacesBlock[] = [];
  for (let i = 0; i < lines.length;) {
    const line = lines[i] as string;
    const words = line.trim().split(/\s+/);
    if (/^iface\s/.test(line)) {
      const stanza: IfaceStanza = {
        type: 'iface',
        name: words[1] ?? '',
        family: words[2] ?? '',
        method: words[3] ?? '',
        options: [],
        raw: line,
      };
      i++;
      // Option lines are every following line that does not start a new stanza; trailing comments and
      // blank lines stay outside the stanza so that replacing it keeps the spacing around it.
      let end = i;
      for (let j = i; j < lines.length && !STANZA_START.test(lines[j] as string); j++) {
        if (/^\s*\S/.test(lines[j] as string) && !/^\s*#/.test(lines[j] as string)) end = j + 1;
      }
      for (; i < end; i++) {
        const opt = lines[i] as string;
        stanza.raw += opt;
        const m = /^\s*([^\s#]\S*)\s*(.*?)\s*$/.exec(opt);
        if (m !== null) stanza.options.push({ key: m[1] as string, value: m[2] as string });
      }
      blocks.push(stanza);
    } else if (/^(auto|allow-\S+)\s/.test(line)) {
      blocks.push({ type: 'class', cls: words[0] as string, names: words.slice(1), raw: line });
      i++;
    } else {
      blocks.push({ type: 'other', raw: line });
      i++;
    }
  }
  return blocks;
}

export function printInterfaces(blocks: readonly InterfacesBlock[]): string {
  return blocks.map((b) => b.raw).join('');
}

/** The value of an option, whichever of `-` and `_` the file uses. */
export function optionValue(stanza: IfaceStanza, key: string): string | undefined {
  const norm = key.replace(/-/g, '_');
  return stanza.options.find((o) => o.key.replace(/-/g, '_') === norm)?.value;
}

export function ifaceStanzas(blocks: readonly InterfacesBlock[], name: string): IfaceStanza[] {
  return blocks.filter((b): b is IfaceStanza => b.type === 'iface' && b.name === name);
}

/** Print a stanza the way Proxmox writes them: the iface line, then options indented by a tab. */
export function renderStanza(
  head: string[],
  name: string,
  family: string,
  method: string,
  options: [string, string][],
): string {
  return [...head, `iface ${name} ${family} ${method}`, ...options.map(([k, v]) => `\t${k} ${v}`)].join('\n') + '\n';
}

/** Take `names` off `auto`/`allow-*` lines; a line left with no names disappears. */
export function withoutClassNames(blocks: readonly InterfacesBlock[], names: ReadonlySet<string>): InterfacesBlock[] {
  const out: InterfacesBlock[] = [];
  for (const b of blocks) {
    if (b.type !== 'class' || !b.names.some((n) => names.has(n))) {
      out.push(b);
      continue;
    }
    const kept = b.names.filter((n) => !names.has(n));
    if (kept.length > 0) out.push({ ...b, names: kept, raw: `${b.cls} ${kept.join(' ')}\n` });
  }
  return out;
}

/**
 * Drop the stanzas of `names` (and their `auto`/`allow-*` mentions) and put `group` where the first
 * stanza of `anchor` was. A blank line that only separated a dropped stanza goes with it.
 */
export function replaceStanzas(
  blocks: InterfacesBlock[],
  names: ReadonlySet<string>,
  anchor: string,
  group: string,
): InterfacesBlock[] {
  const out: InterfacesBlock[] = [];
  let placed = false;
  let droppedLast = false;
  for (const b of withoutClassNames(blocks, names)) {
    if (b.type === 'iface' && names.has(b.name)) {
      if (b.name === anchor && !placed) {
        out.push({ type: 'other', raw: group });
        placed = true;
        droppedLast = false;
      } else {
        droppedLast = true;
      }
      continue;
    }
    if (droppedLast && b.type === 'other' && b.raw.trim() === '') {
      droppedLast = false;
      continue;
    }
    droppedLast = false;
    out.push(b);
  }
  return out;
}
