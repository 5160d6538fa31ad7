/**
 * The one error type of the AP link, on both sides. `code` is 'ELINK' when the link dropped,
 * 'EHANDSHAKE', 'ETIMEDOUT', 'EPROTO', or whatever code the peer reported (ECONNREFUSED, ENOTFOUND...).
 */
export class AgentLinkError extends Error {
  override readonly name = 'AgentLinkError';
  constructor(
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /** The same error, with the stack of the place that asked (kept from the call site). */
  static at(site: Error, code: string, message: string, cause?: unknown): AgentLinkError {
    const e = new AgentLinkError(code, message, cause === undefined ? undefined : { cause });
    const frames = site.stack?.split('\n').slice(1).join('\n');
    if (frames) e.stack = `${e.name}: ${message}\n${frames}`;
    return e;
  }
}
