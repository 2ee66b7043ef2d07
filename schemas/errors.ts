/**
 * The base of refit's own errors: `name` is the class name (Temporal reports it as the failure
 * type, and logs show it), and a `cause` is kept.
 */
export class RefitError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * An error the operator can act on: the CLI prints its message without a stack and exits with its
 * code (2: fix the command line or the input; 1: the environment, such as a server that is down).
 */
export class UsageError extends RefitError {
  constructor(
    message: string,
    readonly exitCode = 2,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}
