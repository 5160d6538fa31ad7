/**
 * Building blocks for the zod schemas of AP request params (one table per method family: net.ts,
 * fs.ts, primitives.ts; methods.ts joins them). Every schema carries its own message, naming the
 * field and what it must be, so an EINVAL tells the client exactly what it got wrong. The agent
 * checks the params of every REQUEST through them (never DATA frames: those carry no params).
 */
import * as z from 'zod/mini';

export type ParamsSchema = z.ZodMiniType<Record<string, unknown>>;

/** A method family: each method's params (the schema's type) and the result a success holds. */
export type MethodTable<S extends Record<string, ParamsSchema>, R extends { [M in keyof S]: unknown }> = {
  [M in keyof S]: { params: z.infer<S[M]>; result: R[M] };
};

/** The params object itself; unknown keys are dropped. */
export const params = <T extends z.core.$ZodLooseShape>(shape: T) => z.object(shape, { error: 'params must be an object' });

/** An integer in [min, max]. */
export function int(min: number, max: number, message: string) {
  return z.int({ error: message }).check(z.minimum(min, { error: message }), z.maximum(max, { error: message }));
}

export const u32 = (name: string) => int(0, 0xffffffff, `${name} must be a u32`);
export const nonZeroU32 = (name: string) => int(1, 0xffffffff, `${name} must be a non-zero u32`);
export const port = (name = 'port') => int(1, 65535, `${name} must be 1..65535`);
export const bool = (name: string) => z.boolean({ error: `${name} must be a boolean` });

/** A string of at most `max` UTF-16 units. */
export function str(message: string, min: number, max: number) {
  return z.string({ error: message }).check(z.minLength(min, { error: message }), z.maxLength(max, { error: message }));
}

/** An absolute path inside the target (the agent resolves it itself): no NUL, at most 4,096 units. */
export function absPath(name: string) {
  const message = `${name} must be an absolute path (at most 4096 characters, no NUL)`;
  return z.string({ error: message }).check(
    z.startsWith('/', { error: message }),
    z.maxLength(4096, { error: message }),
    z.refine((v) => !v.includes('\0'), { error: message }),
  );
}

/** The message of a failed parse: its first issue's (each schema above names its field). */
export function firstProblem(error: z.core.$ZodError): string {
  return error.issues[0]?.message ?? 'params are malformed';
}
