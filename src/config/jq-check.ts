/**
 * jq expressions of the config (header_filter_jq, {"query": jq} items) are compiled when the config
 * is read, by the agent's own jq engine (agent/dist/jq-worker.cjs, jq-web), so that a bad one is
 * refused with jq's message before any session starts. Compiling only: nothing of the expression
 * runs here. Validation is synchronous (zod), so each check blocks on Atomics.wait until the engine's
 * thread (started once per process, unref'd) answers.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { MessageChannel, Worker, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { packageRoot } from '../package-root.js';

/** Loading jq-web takes about 0.1 s on an idle machine, several times that on a loaded one. */
const CHECK_WAIT_MS = 20_000;

const cache = new Map<string, string | undefined>();
let engine: { port: MessagePort; flag: Int32Array; worker: Worker } | undefined;

export function jqWorkerPath(root: string = packageRoot()): string {
  return path.join(root, 'agent/dist/jq-worker.cjs');
}

/** jq's compile error for the expression, or undefined when it compiles. */
export function jqProblem(expr: string): string | undefined {
  if (!cache.has(expr)) cache.set(expr, checkJq([expr])[0]);
  return cache.get(expr);
}

/** Each expression's compile error (undefined: it compiles). */
export function checkJq(exprs: string[], file: string = jqWorkerPath()): Array<string | undefined> {
  const all = (why: string) => exprs.map(() => `cannot check jq expressions: ${why}`);
  if (!engine) {
    if (!existsSync(file)) return all(`${file} is missing (run npm run build)`);
    const flag = new Int32Array(new SharedArrayBuffer(4));
    const { port1, port2 } = new MessageChannel();
    const worker = new Worker(file, { workerData: { port: port2, flag }, transferList: [port2] });
    worker.on('error', () => undefined);
    worker.unref();
    port1.unref();
    engine = { port: port1, flag, worker };
  }
  const { port, flag } = engine;
  Atomics.store(flag, 0, 0);
  port.postMessage({ check: exprs });
  if (Atomics.wait(flag, 0, 0, CHECK_WAIT_MS) === 'timed-out') {
    void engine.worker.terminate();
    engine = undefined;
    return all('the jq engine did not answer');
  }
  const reply = receiveMessageOnPort(port)?.message as { results?: Array<string | null>; error?: string } | undefined;
  if (!reply?.results) return all(reply?.error ?? 'the jq engine did not answer');
  return reply.results.map((r) => r ?? undefined);
}
