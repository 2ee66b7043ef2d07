import { HostId } from '../../schemas/common.js';
import { StepKind } from '../../schemas/steps.js';
import type { FailureMode, SimFailures } from '../../activities/host/sim/driver.js';
import { RefitError } from '../../schemas/errors.js';

/** Injected failures per simulated host. */
export type FailSpec = Record<string, SimFailures>;

export class InvalidFailSpecError extends RefitError {}

/**
 * Parse `--fail sim-003=ovs-convert,sim-007=reboot:once`: the step fails on that host every time,
 * or only the first time with `:once`.
 */
export function parseFailSpec(text: string): FailSpec {
  const spec: FailSpec = {};
  for (const item of text.split(',').map((s) => s.trim())) {
    if (item === '') continue;
    const match = /^([^=]+)=([^:]+)(?::(.*))?$/.exec(item);
    if (!match) throw new InvalidFailSpecError(`"${item}" is not host=step or host=step:once`);
    const [, host = '', step = '', mode = 'always'] = match;
    if (!HostId.safeParse(host).success) throw new InvalidFailSpecError(`"${host}" in "${item}" is not a host id`);
    const kind = StepKind.safeParse(step);
    if (!kind.success)
      throw new InvalidFailSpecError(`"${step}" in "${item}" is not a step (${StepKind.options.join(', ')})`);
    if (mode !== 'always' && mode !== 'once')
      throw new InvalidFailSpecError(`"${mode}" in "${item}" is neither always nor once`);
    spec[host] = { ...spec[host], [kind.data]: mode satisfies FailureMode };
  }
  return spec;
}
