/** A command shown in a Markdown file, as written there. */
export interface DocCommand {
  file: string;
  /** 1-based line of the command in the file. */
  line: number;
  /** `$` a user, `#` root (the lab), `''` a line of an sh/bash block. */
  prompt: '$' | '#' | '';
  /** The command without its prompt, trailing comment kept: exactly what the reader would paste. */
  text: string;
  /** The lines shown after it, up to the next command or the block's end. */
  output: string[];
  /** Index of its code block in the file: commands of one block run in one shell, in order. */
  block: number;
}

const FENCE = /^\s*```\s*([\w-]*)/;
/** Blocks whose commands are the lines that start with a prompt; the rest is output. */
const SESSION = new Set(['console', 'shell-session', '']);
/** Blocks that are scripts: every line that is not a comment is a command. */
const SCRIPT = new Set(['sh', 'bash', 'shell']);

/**
 * The shell commands of a Markdown file: in console (and untagged) blocks the lines after a `$ ` or
 * `# ` prompt, in sh/bash blocks every line that is not blank or a comment. A line ending in `\`
 * continues on the next.
 */
export function extractDocCommands(file: string, markdown: string): DocCommand[] {
  const commands: DocCommand[] = [];
  const lines = markdown.split('\n');
  let lang: string | undefined;
  let block = -1;
  let current: DocCommand | undefined;
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i] ?? '';
    const fence = FENCE.exec(raw);
    if (fence) {
      if (lang === undefined) {
        lang = fence[1] ?? '';
        block++;
      } else lang = undefined;
      current = undefined;
      continue;
    }
    if (lang === undefined) continue;
    const line = raw.trim();
    let prompt: DocCommand['prompt'] | undefined;
    let text: string | undefined;
    if (SESSION.has(lang) && /^[$#] /.test(line)) {
      prompt = line[0] as '$' | '#';
      text = line.slice(2);
    } else if (SCRIPT.has(lang) && line !== '' && !line.startsWith('#')) {
      prompt = '';
      text = line;
    }
    if (prompt === undefined || text === undefined) {
      current?.output.push(raw);
      continue;
    }
    const start = i + 1;
    while (text.endsWith('\\') && i + 1 < lines.length) text = `${text.slice(0, -1)}${(lines[++i] ?? '').trim()}`;
    current = { file, line: start, prompt, text, output: [], block };
    commands.push(current);
  }
  return commands;
}

/**
 * Is this a synopsis rather than a command: it shows `<placeholders>`, `[optional parts]`,
 * `a|b` alternatives or `…` (outside quotes, and not a pipe between commands)?
 */
export function isSynopsis(text: string): boolean {
  const bare = withoutComment(text).replace(/'[^']*'|"[^"]*"/g, "''");
  return /<[\w-]+>|\[[^\]]*\]|\S\|\S|…/.test(bare);
}

/** The command without a trailing `# comment` (outside quotes). */
export function withoutComment(text: string): string {
  let quote: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote) {
      if (c === quote) quote = undefined;
    } else if (c === "'" || c === '"') quote = c;
    else if (c === '#' && (i === 0 || /\s/.test(text[i - 1] ?? ''))) return text.slice(0, i).trimEnd();
  }
  return text.trimEnd();
}

/**
 * What a synopsis asks of the program: one help command per alternative (`pause|resume` → two),
 * made of its words without placeholders and optional parts, and every `--flag` it names, which
 * that help must list.
 */
export function synopsisChecks(text: string): { help: string; flags: string[] }[] {
  const bare = withoutComment(text);
  const flags = [...new Set(bare.match(/(?<![\w-])--[a-z][\w-]*/g) ?? [])];
  const words = bare
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/'[^']*'|"[^"]*"/g, "''")
    .split(/\s+/)
    .filter((w) => w !== '' && !/^<[^>]*>$/.test(w) && w !== '…' && w !== "''");
  // Drop each flag named without its value, so the help is asked of the command itself.
  const kept: string[] = [];
  for (const w of words) {
    if (w.startsWith('--')) break;
    kept.push(w);
  }
  const alternatives = kept.map((w) => (/^[\w-]+(\|[\w-]+)+$/.test(w) ? w.split('|') : [w]));
  let helps = [''];
  for (const options of alternatives) helps = helps.flatMap((h) => options.map((o) => (h === '' ? o : `${h} ${o}`)));
  return helps.map((h) => ({ help: `${h} --help`, flags }));
}
