/**
 * What every fuzz property checks about a decoder call, whatever the input: it returns, or throws
 * the codec's own error class and nothing else (no RangeError from a Buffer read, no TypeError),
 * and it returns within a time budget (a synchronous decoder that loops shows up here as a slow
 * call rather than a stuck test).
 */
export const CALL_BUDGET_MS = 250;

type ErrorClass = abstract new (...args: never[]) => Error;

export class FuzzFailure extends Error {
  override readonly name = 'FuzzFailure';
}

/** Runs f; returns its value, or undefined when it threw `allowed`; any other outcome fails. */
export function onlyThrows<T>(allowed: ErrorClass, what: string, f: () => T): T | undefined {
  const started = performance.now();
  let out: T | undefined;
  try {
    out = f();
  } catch (err) {
    if (!(err instanceof allowed)) {
      throw new FuzzFailure(`${what} threw ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}, not ${allowed.name}`, { cause: err });
    }
    out = undefined;
  }
  const took = performance.now() - started;
  if (took > CALL_BUDGET_MS) throw new FuzzFailure(`${what} took ${took.toFixed(0)} ms (budget ${CALL_BUDGET_MS} ms)`);
  return out;
}

/** Splits `bytes` at the given cut points (any numbers; taken modulo the length, sorted). */
export function cut(bytes: Buffer, points: number[]): Buffer[] {
  if (bytes.length === 0) return [bytes];
  const at = [...new Set(points.map((p) => p % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of [...at, bytes.length]) {
    out.push(bytes.subarray(prev, p));
    prev = p;
  }
  return out;
}

/** One named property with the function that runs it for a given number of inputs. */
export interface FuzzTarget {
  /** Which decoder (or decoders) this exercises, for the counts printed by scripts/fuzz.sh. */
  name: string;
  run(numRuns: number, seed?: number): void;
}
