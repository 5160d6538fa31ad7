/**
 * The one table from the agent's error codes (Node's `err.code` on the target side, plus our link
 * codes) to what the layer hands the program: Linux errno values for connect(), EAI_* for getaddrinfo.
 */
const ERRNO: Record<string, number> = {
  EPERM: 1,
  // A unix socket's path in the target (feature.network.outgoing.unix_streams), as connect() says.
  ENOENT: 2,
  ENOTDIR: 20,
  ELOOP: 40,
  EACCES: 13,
  EINVAL: 22,
  ENETDOWN: 100,
  ENETUNREACH: 101,
  ECONNABORTED: 103,
  ECONNRESET: 104,
  ETIMEDOUT: 110,
  ECONNREFUSED: 111,
  EHOSTDOWN: 112,
  EHOSTUNREACH: 113,
  EADDRNOTAVAIL: 99,
  // The agent link is gone: the network "behind" the socket is unreachable, and the program sees
  // an immediate failure rather than a hang.
  ELINK: 101,
};

export function connectErrno(code: string | undefined): number {
  return -(ERRNO[code ?? ''] ?? ERRNO.ENETUNREACH!);
}

export const EAI = { NONAME: -2, AGAIN: -3, FAIL: -4, NODATA: -5, FAMILY: -6, SYSTEM: -11 } as const;

export function dnsStatus(code: string | undefined): number {
  switch (code) {
    case 'ENOTFOUND':
      return EAI.NONAME;
    case 'ENODATA':
      return EAI.NODATA;
    case 'EFORMERR':
    case 'EBADNAME':
      return EAI.FAIL;
    default:
      return EAI.AGAIN;
  }
}
