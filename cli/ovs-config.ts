import { readFile } from 'node:fs/promises';
import { InvalidArgumentError, type Command } from 'commander';
import { InvalidStepParamsError } from '../activities/host/driver.js';
import { InterfacesPlanError, planOvsConversion } from '../activities/host/linux/ovs-plan.js';
import { UsageError } from '../schemas/errors.js';
import { integerBetween } from './numeric-options.js';
import {
  describeIfupdown,
  detectIfupdown,
  IFUPDOWN2_DIR,
  type IfupdownFlavour,
} from '../activities/host/linux/ifupdown.js';

function ifupdownFlavour(value: string): IfupdownFlavour {
  if (value === '1' || value === '2') return Number(value) as IfupdownFlavour;
  throw new InvalidArgumentError('Expected 1 (classic ifupdown) or 2 (ifupdown2).');
}

interface OvsConfigOptions {
  interfaces: string;
  bridge: string;
  uplink?: string;
  hostVlan: number;
  datapath?: string;
  ifupdown?: IfupdownFlavour;
  json?: boolean;
}

/** `refit ovs-config --json`: the converted file and what it was made for. */
export interface OvsConfigJson {
  interfaces: string;
  bridge: string;
  ifupdown: IfupdownFlavour;
  text: string;
}

/**
 * What `refit ovs-config` prints: the converted file, for the ifupdown flavour asked for or else this
 * machine's (`note` says which and why, for stderr). It never writes anything.
 */
export async function renderOvsConfig(
  opts: OvsConfigOptions,
  note: (line: string) => void = () => undefined,
): Promise<string> {
  return (await convertOvsConfig(opts, note)).text;
}

/** The converted file, with the file it came from, the bridge and the ifupdown flavour it is for. */
export async function convertOvsConfig(
  opts: OvsConfigOptions,
  note: (line: string) => void = () => undefined,
): Promise<OvsConfigJson> {
  if (opts.datapath !== undefined && opts.datapath !== 'netdev') throw new UsageError('--datapath can only be netdev');
  let text: string;
  try {
    text = await readFile(opts.interfaces, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read ${opts.interfaces}: ${(err as Error).message}`);
  }
  const flavour = opts.ifupdown ?? detectIfupdown();
  note(
    `refit ovs-config: writing for ${describeIfupdown(flavour)}${
      opts.ifupdown !== undefined
        ? ' (--ifupdown)'
        : `, this machine's (${IFUPDOWN2_DIR} ${flavour === 2 ? 'present' : 'absent'}); --ifupdown 1|2 chooses`
    }`,
  );
  try {
    const converted = planOvsConversion(text, {
      ifupdown: flavour,
      bridge: opts.bridge,
      uplink: opts.uplink,
      hostVlan: opts.hostVlan,
      datapathType: opts.datapath === 'netdev' ? 'netdev' : undefined,
    }).text;
    return { interfaces: opts.interfaces, bridge: opts.bridge, ifupdown: flavour, text: converted };
  } catch (err) {
    if (err instanceof InterfacesPlanError || err instanceof InvalidStepParamsError)
      throw new UsageError(`${opts.interfaces}: ${err.message}`);
    throw err;
  }
}

export function registerOvsConfigCommand(program: Command): void {
  program
    .command('ovs-config')
    .description('print an /etc/network/interfaces with the Linux bridge moved to Open vSwitch (changes nothing)')
    .requiredOption('--interfaces <file>', 'the interfaces file to convert, e.g. /etc/network/interfaces')
    .option('--bridge <name>', 'the Linux bridge to convert', 'vmbr0')
    .option('--uplink <if>', "the physical uplink (default: the bridge's only port)")
    .option(
      '--host-vlan <tag>',
      "VLAN tag of the host's internal port; untagged uplink traffic maps to it",
      integerBetween(1, 4094, 'a VLAN tag'),
      1,
    )
    .option('--datapath <type>', 'netdev for the userspace datapath (the lab); default: the kernel datapath')
    .option(
      '--ifupdown <1|2>',
      `1: classic ifupdown (allow-<bridge>), 2: ifupdown2 (auto, ifreload -a); default: this machine's (2 when ${IFUPDOWN2_DIR} exists)`,
      ifupdownFlavour,
    )
    .option('--json', 'print the converted file and what it is for as JSON')
    .action(async (opts: OvsConfigOptions) => {
      const out = await convertOvsConfig(opts, (line) => process.stderr.write(`${line}\n`));
      process.stdout.write(opts.json === true ? `${JSON.stringify(out)}\n` : out.text);
    });
}
