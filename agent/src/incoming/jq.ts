/**
 * mirrord's jq header filters (header_filter_jq, {"query": jq} in all_of/any_of): each expression
 * runs on a request's headers in a worker thread (jq-worker.ts), one evaluation at a time, and an
 * evaluation that runs past agent.jaq_time_limit (milliseconds, default 500) is cut: the thread is
 * terminated (a new one starts for the next evaluation) and the request does not match, so it goes
 * to the target's application. The agent's event loop never runs jq itself.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { createLogger, jsonLine, parseLevel, textLine, type Logger } from '../../../common/log.js';

/** mirrord's default limit of one jq evaluation. */
export const JQ_TIME_LIMIT_MS = 500;
export const JQ_TIME_LIMIT_ENV = 'MIRRORD_AGENT_JAQ_TIME_LIMIT';

export function jqTimeLimitMs(env: NodeJS.ProcessEnv = process.env): number {
  const v = env[JQ_TIME_LIMIT_ENV];
  const n = v === undefined || v === '' ? NaN : Number(v);
  return Number.isInteger(n) && n > 0 ? n : JQ_TIME_LIMIT_MS;
}

/**
 * The worker's bundle: beside the agent's bundle in the image (/opt/mirrord/jq-worker.cjs), or the
 * checkout's agent/dist/ when this runs from source (tests).
 */
export function jqWorkerFile(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  for (const candidate of [path.join(here, 'jq-worker.cjs'), path.resolve(here, '../../dist/jq-worker.cjs')]) {
    if (existsSync(candidate)) return candidate;
  }
  return path.join(here, 'jq-worker.cjs');
}

/** What jq sees of a request: one "name: value" string per header, names lower-cased as mirrord's agent has them. */
export function jqHeaderLines(rawHeaders: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    if (!name.startsWith(':')) out.push(`${name.toLowerCase()}: ${rawHeaders[i + 1]}`);
  }
  return out;
}

interface Job {
  expr: string;
  headers: string[];
  resolve: (match: boolean) => void;
}

type Reply = { ready: true } | { failed: string } | { id: number; match: boolean; error?: string };

export class JqEngine {
  private worker: Worker | undefined;
  private ready: Promise<Worker> | undefined;
  private readonly queue: Job[] = [];
  private running = false;
  private nextId = 1;
  /** Evaluations cut at the limit, and threads started: for tests and the debug log. */
  cut = 0;
  started = 0;

  constructor(
    private readonly limitMs: number = jqTimeLimitMs(),
    private readonly log?: Logger,
    private readonly file: string = jqWorkerFile(),
  ) {}

  /** Whether the expression matches some header; false on a timeout, a jq error or an engine that cannot start. */
  match(expr: string, headers: string[]): Promise<boolean> {
    return new Promise((resolve) => {
      this.queue.push({ expr, headers, resolve });
      void this.pump();
    });
  }

  /** Starts the thread now (loading jq takes 0.1-1.5 s): at subscription, not with the first request. */
  warm(): void {
    if (this.ready) return;
    this.ready = this.start();
    this.ready.catch(() => (this.ready = undefined));
  }

  close(): void {
    void this.worker?.terminate();
    this.worker = undefined;
    this.ready = undefined;
  }

  private start(): Promise<Worker> {
    this.started++;
    const w = new Worker(this.file);
    w.unref();
    this.worker = w;
    return new Promise((resolve, reject) => {
      const onMessage = (m: Reply) => {
        if ('ready' in m) {
          w.off('message', onMessage);
          resolve(w);
        } else if ('failed' in m) reject(new Error(m.failed));
      };
      w.on('message', onMessage);
      w.on('error', (err) => {
        this.log?.debug(`jq thread: ${err.message}`);
        reject(err);
      });
      w.once('exit', (code) => {
        if (this.worker === w) {
          this.worker = undefined;
          this.ready = undefined;
        }
        reject(new Error(`the jq thread exited (${code})`));
      });
    });
  }

  private async pump(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      for (let job = this.queue.shift(); job; job = this.queue.shift()) job.resolve(await this.run(job));
    } finally {
      this.running = false;
    }
  }

  private async run(job: Job): Promise<boolean> {
    let w: Worker;
    try {
      this.ready ??= this.start();
      w = await this.ready;
    } catch (err) {
      this.ready = undefined;
      this.log?.error(`jq filter: ${(err as Error).message}; the request goes to the application`);
      return false;
    }
    const id = this.nextId++;
    return new Promise<boolean>((resolve) => {
      const done = (match: boolean) => {
        clearTimeout(timer);
        w.off('message', onMessage);
        w.off('exit', onExit);
        resolve(match);
      };
      const onMessage = (m: Reply) => {
        if (!('id' in m) || m.id !== id) return;
        if (m.error) this.log?.debug(`jq filter ${JSON.stringify(job.expr)}: ${m.error}`);
        done(m.match);
      };
      const onExit = () => done(false);
      const timer = setTimeout(() => {
        this.cut++;
        this.log?.warn(`jq filter ${JSON.stringify(job.expr)} ran past agent.jaq_time_limit (${this.limitMs} ms): cut, the request goes to the application`);
        void w.terminate();
        done(false);
        // The next evaluation gets a thread started now (loading jq takes a while), not after it comes.
        if (this.worker === w) {
          this.ready = this.start();
          this.ready.catch(() => undefined);
        }
      }, this.limitMs);
      w.on('message', onMessage);
      w.once('exit', onExit);
      w.postMessage({ id, op: 'match', expr: job.expr, headers: job.headers });
    });
  }
}

let shared: JqEngine | undefined;

/** The agent's one engine (its thread starts with the first jq filter a request meets). */
export function jqEngine(): JqEngine {
  // The agent's own log settings (agent/src/main.ts): MIRRORD_AGENT_LOG, agent.json_log.
  const json = process.env.MIRRORD_AGENT_JSON_LOG === '1';
  shared ??= new JqEngine(jqTimeLimitMs(), createLogger('mirrord-agent', parseLevel(process.env.MIRRORD_AGENT_LOG), undefined, json ? jsonLine : textLine));
  return shared;
}

/** Every jq expression a request must be run through, once each, whatever the trees that hold it. */
export function evaluateJq(exprs: readonly string[], rawHeaders: string[], engine: JqEngine = jqEngine()): Promise<Map<string, boolean>> {
  const headers = jqHeaderLines(rawHeaders);
  return Promise.all(exprs.map(async (e) => [e, await engine.match(e, headers)] as const)).then((pairs) => new Map(pairs));
}
