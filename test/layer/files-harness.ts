/**
 * Remote files without Docker: the real Intproxy (src/intproxy/) whose agent port calls the real
 * agent file service (agent/src/files.ts) in-process, rooted at a temporary directory that stands
 * in for the target's root. Programs run under the real layer with the hints the CLI would set.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FileService, fileHandlers } from '../../agent/src/files.js';
import { configSchema, resolveFeatures } from '../../src/config/schema.js';
import { layerHintEnv } from '../../src/fs/rules.js';
import { Intproxy } from '../../src/intproxy/intproxy.js';
import { createLogger, parseLevel } from '../../common/log.js';
import { ApFrameReader, decodeResponse, encodeResponse } from '../../common/protocol/agent/index.js';
import { fakeAgentPort } from '../helpers/fake-agent-port.js';
import { layerEnv } from './harness.js';

export interface FsFixture {
  root: string;
  intproxy: Intproxy;
  files: FileService;
  /** fs.* requests the agent served, in order. */
  calls: string[];
  env(extra?: Record<string, string>): Promise<NodeJS.ProcessEnv>;
  stop(): Promise<void>;
}

export async function startFsFixture(fs: Record<string, unknown> = {}, mounts: string[] = []): Promise<FsFixture> {
  const root = mkdtempSync(path.join(os.tmpdir(), 'mirrord-fsroot-'));
  const log = createLogger('test', parseLevel(process.env.MIRRORD_LOG));
  const files = new FileService(root, '/proc', process.pid, log.child('agent-files'));
  const handlers = fileHandlers(files) as Record<string, (p: unknown) => Promise<{ result: unknown }>>;
  const calls: string[] = [];
  const agent = fakeAgentPort({
    async request(method, params) {
      calls.push(method);
      if (method === 'fs.mounts') return { mounts };
      const h = handlers[method];
      if (!h) throw Object.assign(new Error(`unknown ${method}`), { code: 'ENOSYS' });
      // Through the wire codec, as on the link (JSON, and raw bytes in the binary form).
      const result = (await h(JSON.parse(JSON.stringify(params)))).result;
      const [frame] = new ApFrameReader().push(encodeResponse(1, { ok: true, result }));
      const r = decodeResponse(frame!);
      return r.ok ? r.result : undefined;
    },
  });
  const features = resolveFeatures(configSchema.parse({ feature: { fs } }));
  const intproxy = await Intproxy.start({ agent, features, log: log.child('intproxy') });
  return {
    root,
    intproxy,
    files,
    calls,
    async env(extra = {}) {
      const hints = layerHintEnv(await intproxy.files.rules());
      return layerEnv(intproxy.address, { ...hints, ...extra });
    },
    async stop() {
      await intproxy.close();
      await files.closeAll();
      rmSync(root, { recursive: true, force: true });
    },
  };
}
