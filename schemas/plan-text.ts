/** A plan file is a page or two; beyond this it is not a plan. */
export const MAX_PLAN_BYTES = 1024 * 1024;
/** How deep a plan's collections may nest; a plan needs about six levels. */
export const MAX_PLAN_DEPTH = 64;

/** Where a plan's text is too big or too deep to be parsed safely, and why; undefined if it is not. */
export interface TextProblem {
  offset: number;
  message: string;
}

/**
 * Checked before the YAML parser sees the text: it nests recursively, and a few thousand levels of
 * `[`, `{` or `- ` run it out of stack or, worse, out of memory, which no catch can answer. The
 * count is generous: brackets inside quotes or comments count too, and indentation counts a level
 * per column.
 */
export function planTextProblem(text: string): TextProblem | undefined {
  if (text.length > MAX_PLAN_BYTES)
    return { offset: 0, message: `${text.length} characters: a plan may have at most ${MAX_PLAN_BYTES}` };
  let depth = 0;
  let lineStart = true;
  let indent = 0;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === '\n') {
      lineStart = true;
      indent = 0;
      continue;
    }
    if (lineStart && (ch === ' ' || ch === '-' || ch === '?' || ch === ':' || ch === '\t')) indent++;
    else lineStart = false;
    if (ch === '[' || ch === '{') depth++;
    else if ((ch === ']' || ch === '}') && depth > 0) depth--;
    if (depth > MAX_PLAN_DEPTH || indent > 4 * MAX_PLAN_DEPTH)
      return { offset: i, message: `nested deeper than ${MAX_PLAN_DEPTH} levels` };
  }
  return undefined;
}
