/**
 * The container-mode sidecar: runs the intproxy inside the network namespace the user's container
 * joins, so the layer's loopback requests and the one-shot listeners of redirected connections are
 * on that container's own 127.0.0.1. It speaks AP to the agent over its attached stdin/stdout (the
 * CLI relays the bytes to the agent's stream), and announces itself with one line on stderr.
 * Runs on Debian bookworm's Node 18 inside the sidecar image.
 */
import fs from 'node:fs';
import net from 'node:net';
import { Duplex, type Writable } from 'node:stream';
import { AgentConnection } from '../agent-link/connection.js';
import type { ResolvedFeatures } from '../config/schema.js';
import { layerHintEnv } from '../fs/rules.js';
import { Intproxy } from '../intproxy/intproxy.js';
import { createLogger, parseLevel } from '../log.js';

export const READY_PREFIX = 'MIRRORD_SIDECAR_READY ';
const log = createLogger('mirrord-sidecar', parseLevel(process.env.MIRRORD_SIDECAR_LOG));

function stdoutStream(): Writable {
  const st = fs.fstatSync(1);
  if (st.isFIFO() || st.isSocket()) return new net.Socket({ fd: 1, readable: false, writable: true });
  return fs.createWriteStream('', { fd: 1 });
}

async function main(): Promise<void> {
  const token = process.env.MIRRORD_SIDECAR_TOKEN ?? '';
  const features = JSON.parse(process.env.MIRRORD_SIDECAR_FEATURES ?? '{}') as ResolvedFeatures;
  const link = Duplex.from({ readable: process.stdin, writable: stdoutStream() });
  const agent = await AgentConnection.connect(link, { token, client: 'mirrord-sidecar/0.1.0', log: log.child('link') });
  const intproxy = await Intproxy.start({ agent, features, log: log.child('intproxy') });
  const env = (await agent.request('env.get', {})).env;
  const hints = layerHintEnv(await intproxy.files.rules());
  // agentPid: the CLI starts the guard that removes the agent's rules if the agent dies.
  process.stderr.write(READY_PREFIX + JSON.stringify({ layerAddr: intproxy.address, env, hints, agentPid: agent.info.agentPid }) + '\n');
  await new Promise<void>((resolve) => agent.onClose(() => resolve()));
  await intproxy.close();
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`mirrord-sidecar: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
