import { describe, expect, it } from 'vitest';
import { extractDocCommands, isSynopsis, synopsisChecks, withoutComment } from './doc-commands.js';

const markdown = [
  'Text with `$ not a command`.', // 1
  '```console', // 2
  '$ npx refit hosts   # the inventory', // 3
  '2 hosts, 2 online', // 4
  '# npx refit lab up --hosts 3 \\', // 5
  '    --vms 1', // 6
  '```', // 7
  '```yaml', // 8
  '# a comment in a plan', // 9
  '$ not: a command', // 10
  '```', // 11
  '```sh', // 12
  '# a comment', // 13
  'npm run bench -- --sections scale', // 14
  '```', // 15
].join('\n');

describe('the commands of a Markdown file', () => {
  it('takes prompted lines of console blocks with their output, and every line of sh blocks', () => {
    expect(extractDocCommands('x.md', markdown)).toEqual([
      {
        file: 'x.md',
        line: 3,
        prompt: '$',
        text: 'npx refit hosts   # the inventory',
        output: ['2 hosts, 2 online'],
        block: 0,
      },
      { file: 'x.md', line: 5, prompt: '#', text: 'npx refit lab up --hosts 3 --vms 1', output: [], block: 0 },
      { file: 'x.md', line: 14, prompt: '', text: 'npm run bench -- --sections scale', output: [], block: 2 },
    ]);
  });

  it('tells a synopsis from a command', () => {
    expect(isSynopsis('npx refit rollout status <id> [--json]')).toBe(true);
    expect(isSynopsis('npx refit rollout pause|resume <id>')).toBe(true);
    expect(isSynopsis('npx refit rollout pause --reason …')).toBe(true);
    expect(isSynopsis("dpkg-deb --contents x.deb | awk '{print $6}' | grep -v '/$'")).toBe(false);
    expect(isSynopsis(`temporal workflow list --query 'RefitRolloutId = "<id>"'`)).toBe(false);
    expect(isSynopsis('npx refit hosts   # waves, [budget] <note>')).toBe(false);
  });

  it('drops a trailing comment, not a # inside quotes', () => {
    expect(withoutComment(`echo '# kept' # dropped`)).toBe(`echo '# kept'`);
    expect(withoutComment('kill %1 %2')).toBe('kill %1 %2');
  });

  it("asks a synopsis's program for --help once per alternative, with every flag it shows", () => {
    expect(synopsisChecks('npx refit rollout pause|resume <id> [--reason …]')).toEqual([
      { help: 'npx refit rollout pause --help', flags: ['--reason'] },
      { help: 'npx refit rollout resume --help', flags: ['--reason'] },
    ]);
    expect(synopsisChecks('npx refit rollout start examples/ovs-sriov.yaml [--watch] [--id <id>]')).toEqual([
      { help: 'npx refit rollout start examples/ovs-sriov.yaml --help', flags: ['--watch', '--id'] },
    ]);
  });
});
