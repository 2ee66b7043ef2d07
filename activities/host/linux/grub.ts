import { IOMMU_OPTIONS, REMOVED_IOMMU_OPTIONS, type Iommu } from './boot-config.js';

const VARIABLE = 'GRUB_CMDLINE_LINUX_DEFAULT';
const ASSIGNMENT = /^(\s*GRUB_CMDLINE_LINUX_DEFAULT=)(?:"([^"]*)"|'([^']*)'|(\S*))(.*)$/;

export interface GrubPlan {
  changed: boolean;
  text: string;
  /** GRUB_CMDLINE_LINUX_DEFAULT before and after. */
  before: string;
  after: string;
}

/** The value of a `NAME=...` variable of /etc/default/grub (the last assignment wins, as in the shell). */
export function grubVariable(text: string, name: string): string | undefined {
  let value: string | undefined;
  const re = new RegExp(`^\\s*${name}=(?:"([^"]*)"|'([^']*)'|(\\S*))`);
  for (const line of text.split('\n')) {
    const m = re.exec(line);
    if (m !== null) value = m[1] ?? m[2] ?? m[3] ?? '';
  }
  return value;
}

function rewrite(text: string, edit: (words: string[]) => string[]): GrubPlan {
  const lines = text.split('\n');
  let index = -1;
  lines.forEach((l, i) => {
    if (ASSIGNMENT.test(l)) index = i;
  });
  const before = grubVariable(text, VARIABLE) ?? '';
  const words = before.split(/\s+/).filter((w) => w !== '');
  const edited = edit(words);
  const after = edited.join(' ');
  if (edited.length === words.length && edited.every((w, i) => w === words[i]))
    return { changed: false, text, before, after: before };
  if (index >= 0) {
    const m = ASSIGNMENT.exec(lines[index] as string) as RegExpExecArray;
    lines[index] = `${m[1]}"${after}"${m[5] ?? ''}`;
    return { changed: true, text: lines.join('\n'), before, after };
  }
  const sep = text === '' || text.endsWith('\n') ? '' : '\n';
  return { changed: true, text: `${text}${sep}${VARIABLE}="${after}"\n`, before, after };
}

/** Add the IOMMU options to GRUB_CMDLINE_LINUX_DEFAULT; a file that has them already is left as it is. */
export function planGrubIommu(text: string, iommu: Iommu): GrubPlan {
  return rewrite(text, (words) => [...words, ...IOMMU_OPTIONS[iommu].filter((o) => !words.includes(o))]);
}

/** Take every IOMMU option off GRUB_CMDLINE_LINUX_DEFAULT again. */
export function planGrubIommuRemoval(text: string): GrubPlan {
  return rewrite(text, (words) => words.filter((w) => !REMOVED_IOMMU_OPTIONS.has(w)));
}

/** The kernel command line update-grub would generate from /etc/default/grub (the parts refit cares about). */
export function kernelCmdlineFromGrub(text: string): string {
  return [grubVariable(text, 'GRUB_CMDLINE_LINUX') ?? '', grubVariable(text, VARIABLE) ?? '']
    .join(' ')
    .trim()
    .replace(/\s+/g, ' ');
}
