import { InterfaceName } from '../../../schemas/common.js';
import { InvalidStepParamsError } from '../driver.js';

declare const checked: unique symbol;
/** An interface name that passed the schema; command builders take only these. */
export type IfName = string & { readonly [checked]: 'IfName' };

/** Check an interface name before it can reach any command line. Throws InvalidStepParamsError. */
export function ifName(value: unknown, what = 'interface name'): IfName {
  const parsed = InterfaceName.safeParse(value);
  if (!parsed.success) {
    throw new InvalidStepParamsError(
      `${what} ${JSON.stringify(value)} is not valid: ${parsed.error.issues[0]?.message ?? 'rejected'}`,
    );
  }
  return parsed.data as IfName;
}

/** A VM or domain name as it may appear on a command line: no leading "-", no spaces or shell characters. */
export function vmArg(value: unknown, what = 'VM name'): string {
  if (typeof value !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(value)) {
    throw new InvalidStepParamsError(`${what} ${JSON.stringify(value)} is not valid`);
  }
  return value;
}
