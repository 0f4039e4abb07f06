// The typed error every command throws. main() is the one place that turns it
// into an exit code and a one-line message (problem, then the fix).
export const ExitCode = {
  Ok: 0,
  /** The cluster or the run is unhealthy, or a check failed. */
  Unhealthy: 1,
  /** Bad usage or bad input. */
  Usage: 2,
  /** The runtime is unavailable (no Docker daemon, no Postgres binaries). */
  RuntimeUnavailable: 3,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export type ErrorCode =
  | 'USAGE'
  | 'INVALID_TOPOLOGY'
  | 'INVALID_INPUT'
  | 'RUNTIME_UNAVAILABLE'
  | 'RUNTIME_UNSUPPORTED'
  | 'PORT_BUSY'
  | 'NOT_FOUND'
  | 'TIMEOUT'
  | 'UNHEALTHY'
  | 'CHECK_FAILED'
  | 'INTERNAL';

const EXIT_OF: Record<ErrorCode, ExitCode> = {
  USAGE: ExitCode.Usage,
  INVALID_TOPOLOGY: ExitCode.Usage,
  INVALID_INPUT: ExitCode.Usage,
  RUNTIME_UNAVAILABLE: ExitCode.RuntimeUnavailable,
  RUNTIME_UNSUPPORTED: ExitCode.Usage,
  PORT_BUSY: ExitCode.Usage,
  NOT_FOUND: ExitCode.Usage,
  TIMEOUT: ExitCode.Unhealthy,
  UNHEALTHY: ExitCode.Unhealthy,
  CHECK_FAILED: ExitCode.Unhealthy,
  INTERNAL: ExitCode.Unhealthy,
};

export class DvoteError extends Error {
  override readonly name = 'DvoteError';
  readonly exitCode: ExitCode;
  constructor(
    readonly code: ErrorCode,
    /** What went wrong, naming the object and the limit. */
    problem: string,
    /** The next step for the user. */
    readonly hint?: string,
    readonly details: string[] = [],
  ) {
    super(hint ? `${problem}: ${hint}` : problem);
    this.exitCode = EXIT_OF[code];
  }
}
