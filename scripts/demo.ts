/**
 * The embedded default: a demo target on the local Docker engine and a local program run against it,
 * through the real CLI. Shows the target's environment, a name only the target can resolve, and a
 * connection made from the target's network. Everything it creates is removed at the end.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { RUN_ID, createNetwork, removeTestResources, runContainer } from '../test/helpers/docker-fixtures.js';

const cli = fileURLToPath(new URL('../bin/mirrord.js', import.meta.url));

function mirrord(title: string, args: string[]): number {
  process.stdout.write(`\n$ mirrord ${args.map((a) => (/[\s$'"]/.test(a) ? `'${a}'` : a)).join(' ')}\n# ${title}\n`);
  const r = spawnSync(process.execPath, [cli, ...args], { stdio: 'inherit' });
  return r.status ?? 1;
}

process.stdout.write('Preparing the demo: a target container "demo-app" and a neighbour "demo-redis" on a private Docker network...\n');
const network = await createNetwork('mirrord-demo');
let failures = 0;
try {
  await runContainer({
    name: 'demo-redis',
    network: network.name,
    aliases: ['demo-redis'],
    cmd: ['redis-server', '--protected-mode', 'no'],
    waitFor: { tcpPort: 6379 },
  });
  const app = await runContainer({
    name: 'demo-app',
    network: network.name,
    env: { GREETING: 'hello from inside the demo-app container', DATABASE_URL: 'redis://demo-redis:6379/0' },
    cmd: [
      'sh',
      '-c',
      'mkdir -p /srv && echo "served only on the target\'s own localhost" > /srv/index.html && exec python3 -m http.server 8000 --bind 127.0.0.1 --directory /srv',
    ],
    waitFor: { tcpPort: 8000 },
  });
  const t = `docker/${app.name}`;
  failures += mirrord("the target's environment, merged into the local program", [
    'exec',
    '-t',
    t,
    '--',
    'sh',
    '-c',
    'echo "GREETING=$GREETING"; echo "DATABASE_URL=$DATABASE_URL"',
  ])
    ? 1
    : 0;
  failures += mirrord('a name only the target can resolve, reached from the host', ['exec', '-t', t, '--', 'redis-cli', '-h', 'demo-redis', 'ping']) ? 1 : 0;
  failures += mirrord("a connection made from the target's network: its own 127.0.0.1", [
    'exec',
    '-t',
    t,
    '--',
    'python3',
    '-c',
    'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:8000/").read().decode().strip())',
  ])
    ? 1
    : 0;
} finally {
  await removeTestResources(RUN_ID);
}
process.stdout.write(failures ? `\n${failures} demo step(s) failed.\n` : '\nDemo finished: all three steps ran against the target. Nothing is left running.\n');
process.exitCode = failures ? 1 : 0;
