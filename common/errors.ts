/**
 * Every failure the user can act on is a MirrordError: one line saying what happened, a hint saying
 * what to do, and an exit code from the documented table. Only src/cli.ts turns it into an exit.
 */
export const ExitCode = {
  /** The CLI itself failed in a way not covered below (a bug: please report). */
  Internal: 70,
  /** Bad command line or configuration. */
  Usage: 64,
  Config: 78,
  /** The target does not exist, is not running, or cannot be chosen. */
  Target: 65,
  /** Docker engine or Kubernetes API not reachable / permission denied. */
  Platform: 69,
  /** The agent could not be started or its link broke. */
  Agent: 75,
  /** The program to run could not be started (not found, not executable). */
  Program: 127,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

export class MirrordError extends Error {
  override readonly name = 'MirrordError';
  constructor(
    message: string,
    readonly code: ExitCodeValue,
    readonly hint?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /** The line printed to stderr. */
  oneLine(): string {
    return this.hint ? `mirrord: ${this.message}. ${this.hint}` : `mirrord: ${this.message}`;
  }
}

/** Errno-style codes Node attaches to system errors. */
export function errnoCode(err: unknown): string | undefined {
  if (err && typeof err === 'object' && 'code' in err && typeof (err as { code: unknown }).code === 'string') {
    return (err as { code: string }).code;
  }
  return undefined;
}
