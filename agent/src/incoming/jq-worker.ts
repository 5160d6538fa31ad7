/**
 * The jq engine's thread (bundled by scripts/build-agent.mjs into agent/dist/jq-worker.cjs, with
 * jq-web's jq.wasm beside it). jq runs synchronously inside WebAssembly, so it runs here, never on
 * the agent's event loop: the agent cuts an evaluation at agent.jaq_time_limit by terminating this
 * thread (agent/src/incoming/jq.ts). The CLI starts it too, to refuse a bad expression when it reads
 * the config (src/config/jq-check.ts).
 *
 * Messages in: {id, op: 'check', expr} and {id, op: 'match', expr, headers}; out: {ready} once, then
 * {id, error?} and {id, match}. With workerData {port, flag} it answers {check: [expr]} messages on
 * that port instead, and wakes the (blocked) thread that asked through flag.
 */
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import jqWeb from 'jq-web';

/** The user's expression as a function of its own; newlines so that a trailing `# comment` ends there. */
const asFunction = (expr: string) => `def __mirrord_expr:\n${expr}\n;\n`;

/** Compiles (binds every name) without running anything: a runaway expression cannot hang a check. */
export const checkProgram = (expr: string) => `${asFunction(expr)}if false then __mirrord_expr else empty end`;

/**
 * Input: the request's headers, each "name: value". Per header, the first boolean the expression
 * outputs decides (other outputs are skipped; an error ends that header's run with no match); the
 * request matches when some header's answer is true.
 */
export const matchProgram = (expr: string) => `${asFunction(expr)}[.[] | (first((try __mirrord_expr catch empty) | select(type == "boolean")) // false)] | any`;

/** jq's own message, first error line, without the wrapper's line numbers or its shell hint. */
export function jqErrorText(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  const line = text.split('\n').find((l) => l.startsWith('jq: error')) ?? text.split('\n').find((l) => l.trim()) ?? 'jq failed';
  return line
    .replace(/^jq: error(?: \(at [^)]*\))?: /, '')
    .replace(/ \(Unix shell quoting issues\?\)/, '')
    .replace(/ at <top-level>, line \d+:?$/, '')
    .trim();
}

interface Jq {
  raw(input: string, filter: string, flags?: string[]): string;
}

function check(jq: Jq, expr: string): string | undefined {
  try {
    jq.raw('null', checkProgram(expr), ['-n', '-c']);
    return undefined;
  } catch (err) {
    return jqErrorText(err);
  }
}

type Request = { id: number; op: 'check'; expr: string } | { id: number; op: 'match'; expr: string; headers: string[] };

/** The CLI's checks: each {check} message on `port` is answered there, then `flag` wakes the thread waiting on it. */
function serveChecks(port: MessagePort, flag: Int32Array, jq: Jq | string): void {
  port.on('message', (m: { check: string[] }) => {
    port.postMessage(typeof jq === 'string' ? { error: jq } : { results: m.check.map((e) => check(jq, e) ?? null) });
    Atomics.store(flag, 0, 1);
    Atomics.notify(flag, 0);
  });
}

async function main(): Promise<void> {
  const data = workerData as { port?: MessagePort; flag?: Int32Array } | null;
  let jq: Jq;
  try {
    jq = (await jqWeb) as Jq;
  } catch (err) {
    const error = `the jq engine cannot start: ${(err as Error).message}`;
    if (data?.port && data.flag) serveChecks(data.port, data.flag, error);
    else parentPort?.postMessage({ failed: error });
    return;
  }
  if (data?.port && data.flag) return serveChecks(data.port, data.flag, jq);
  const port = parentPort;
  if (!port) return;
  port.on('message', (m: Request) => {
    if (m.op === 'check') return port.postMessage({ id: m.id, error: check(jq, m.expr) });
    try {
      port.postMessage({ id: m.id, match: jq.raw(JSON.stringify(m.headers), matchProgram(m.expr), ['-c']).trim() === 'true' });
    } catch (err) {
      port.postMessage({ id: m.id, match: false, error: jqErrorText(err) });
    }
  });
  port.postMessage({ ready: true });
}

if (parentPort) void main();
