import type { Command } from 'commander';
import { UsageError } from '../schemas/errors.js';

/** Every command path (`rollout start`) with the words that may follow it: its subcommands and options. */
function commandWords(cmd: Command, path: string[] = [], out = new Map<string, string[]>()): Map<string, string[]> {
  const words = [
    ...cmd.commands.map((c) => c.name()),
    ...cmd.options.flatMap((o) => [o.long, o.short].filter((f): f is string => f !== undefined)),
    '--help',
  ];
  out.set(path.join(' '), words);
  for (const sub of cmd.commands) if (sub.name() !== 'help') commandWords(sub, [...path, sub.name()], out);
  return out;
}

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * A bash completion script for `refit`, from the commands themselves: the words after the command
 * path typed so far (subcommands, then options); file names where none is known (plan files).
 * zsh loads the same script through bashcompinit.
 */
export function bashCompletion(program: Command): string {
  const table = commandWords(program);
  const cases = [...table.entries()]
    .map(([path, words]) => `    ${quote(path)}) words=${quote(words.join(' '))} ;;`)
    .join('\n');
  const paths = [...table.keys()].map((p) => `|${p}`).join('') + '|';
  return `# refit completion for bash (source it, or put it in /etc/bash_completion.d/refit)
_refit() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" path="" word words="" i
  local paths=${quote(paths)}
  for ((i = 1; i < COMP_CWORD; i++)); do
    word="\${COMP_WORDS[i]}"
    case "$word" in -*) continue ;; esac
    if [[ "$paths" == *"|\${path:+$path }$word|"* ]]; then path="\${path:+$path }$word"; fi
  done
  case "$path" in
${cases}
  esac
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o default -F _refit refit
`;
}

export function registerCompletionCommand(program: Command): void {
  program
    .command('completion <shell>')
    .description('print a shell completion script: bash or zsh (source <(refit completion bash))')
    .action((shell: string) => {
      const script = bashCompletion(program);
      if (shell === 'bash') process.stdout.write(script);
      else if (shell === 'zsh')
        process.stdout.write(
          `# refit completion for zsh, through bash's completion\nautoload -U +X bashcompinit && bashcompinit\n${script}`,
        );
      else throw new UsageError(`no completion for ${shell}: bash or zsh`);
    });
}
