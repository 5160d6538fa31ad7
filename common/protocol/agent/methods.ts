/**
 * The AP method table: what each REQUEST carries (its params schema, whose type is the params type)
 * and what a successful RESPONSE holds. The agent must not trust params from the wire: it parses
 * them with parseApParams before a handler sees them.
 */
import { AP_FILE_PARAMS, type ApFileMethods } from './fs.js';
import { AP_NET_PARAMS, type ApNetMethods } from './net.js';
import { firstProblem } from './params.js';
import { AP_PRIMITIVE_PARAMS, type ApPrimitiveMethods } from './primitives.js';

export type ApMethods = ApPrimitiveMethods & ApNetMethods & ApFileMethods;
export type ApMethod = keyof ApMethods;

/** Every method's params schema. */
export const AP_PARAM_SCHEMAS = { ...AP_PRIMITIVE_PARAMS, ...AP_NET_PARAMS, ...AP_FILE_PARAMS } as const;
// Each family's table has exactly its methods (a method without a schema fails to compile here).
AP_PARAM_SCHEMAS satisfies { [M in ApMethod]: unknown };

export function isApMethod(m: unknown): m is ApMethod {
  return typeof m === 'string' && Object.prototype.hasOwnProperty.call(AP_PARAM_SCHEMAS, m);
}

export type ApParamsParse<M extends ApMethod> = { ok: true; params: ApMethods[M]['params'] } | { ok: false; problem: string };

/** The params as the method's schema reads them (unknown keys dropped), or what is wrong with them. */
export function parseApParams<M extends ApMethod>(method: M, params: unknown): ApParamsParse<M> {
  const r = AP_PARAM_SCHEMAS[method].safeParse(params);
  return r.success ? { ok: true, params: r.data as ApMethods[M]['params'] } : { ok: false, problem: firstProblem(r.error) };
}

/** Each method's check as a message (undefined: well formed); the same schemas, for tests and fuzzing. */
export const AP_PARAM_CHECKS = Object.fromEntries(
  Object.keys(AP_PARAM_SCHEMAS).map((m) => [
    m,
    (p: unknown) => {
      const r = parseApParams(m as ApMethod, p);
      return r.ok ? undefined : r.problem;
    },
  ]),
) as { [M in ApMethod]: (p: unknown) => string | undefined };
