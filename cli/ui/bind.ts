import net from 'node:net';
import { UsageError } from '../../schemas/errors.js';

/** Whether `address` is this machine's loopback: `localhost`, 127.0.0.0/8 or ::1. */
export function isLoopback(address: string): boolean {
  if (address.toLowerCase() === 'localhost') return true;
  if (net.isIPv4(address)) return address.startsWith('127.');
  if (net.isIPv6(address)) {
    const lower = address.toLowerCase();
    return lower === '::1' || /^(0:){7}1$/.test(lower) || /^::ffff:127\./.test(lower);
  }
  return false;
}

/**
 * Where `refit ui` may listen. The web view has no login of its own and shows every rollout, host
 * and audit event that the CLI's identity can read, so a bind beyond loopback must be asked for.
 */
export function checkBind(address: string, allowRemote: boolean): void {
  if (!net.isIP(address) && address.toLowerCase() !== 'localhost')
    throw new UsageError(`--bind ${address} is not an IP address (or localhost)`);
  if (isLoopback(address) || allowRemote) return;
  throw new UsageError(
    `refusing to serve the web view on ${address}: it has no login of its own, and anyone who reaches it reads every rollout, host and audit event this machine's refit identity can read. ` +
      'Keep the default 127.0.0.1 and reach it through an SSH tunnel (ssh -L 8470:127.0.0.1:8470 <this host>), or pass --allow-remote to serve beyond loopback anyway.',
  );
}

/**
 * The Host headers a loopback-bound server answers to: a page on another site cannot point its own
 * name at 127.0.0.1 (DNS rebinding) and read the view through the operator's browser.
 */
export function loopbackHostHeaders(address: string, port: number): ReadonlySet<string> {
  const bound = address.includes(':') ? `[${address.toLowerCase()}]` : address.toLowerCase();
  return new Set([`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, `${bound}:${port}`]);
}
