/**
 * The CLI's half of the mounted-file sync: a `docker exec` in the sidecar opens its mounts socket
 * and streams what it says (one JSON line, then a tar archive read from the target through the
 * agent) straight into the created, not yet started, user container (`putArchive`). Everything goes
 * through the Docker API, so a remote DOCKER_HOST works, and nothing is held in memory or on disk.
 */
import { PassThrough, Writable, type Duplex, type Readable } from 'node:stream';
import type Docker from 'dockerode';
import { ExitCode, MirrordError } from '../../../common/errors.js';
import type { Logger } from '../../../common/log.js';
import type { Progress } from '../../progress.js';
import { MOUNTS_SOCKET } from '../../../common/sidecar-contract.js';
import { formatBytes } from '../../../common/bytes.js';
import { demuxAttach } from '../../platforms/docker/demux.js';

interface Header {
  ok: boolean;
  roots?: string[];
  entries?: number;
  bytes?: number;
  tooLarge?: boolean;
  error?: string;
}

// Node is in the sidecar image; this copies the socket to the exec's stdout.
const RELAY = "require('net').connect(process.argv[1]).on('error', (e) => { console.error(e.message); process.exit(1); }).pipe(process.stdout)";

export async function syncMounts(
  docker: Docker,
  sidecar: Docker.Container,
  user: Docker.Container,
  o: { maxBytes: number; progress: Progress; log: Logger },
): Promise<void> {
  o.progress.update("reading the target's mounted files");
  const exec = await sidecar.exec({ Cmd: ['node', '-e', RELAY, MOUNTS_SOCKET], AttachStdout: true, AttachStderr: true });
  const raw = (await exec.start({ hijack: true, stdin: false })) as unknown as Duplex;
  let errText = '';
  const out = demux(raw, (d) => (errText += d.toString()));
  const header = await readHeader(out, () => errText);
  if (!header.ok) {
    raw.destroy();
    if (header.tooLarge) {
      throw new MirrordError(
        `the target's mounted files are larger than container.mounts.max_size (${formatBytes(o.maxBytes)}): ${header.error}`,
        ExitCode.Config,
        'Raise container.mounts.max_size, or set container.mounts.sync to false to read them through the layer instead',
      );
    }
    throw new MirrordError(
      `cannot copy the target's mounted files: ${header.error}`,
      ExitCode.Agent,
      'Run with MIRRORD_LOG=debug; container.mounts.sync = false skips the copy',
    );
  }
  o.log.debug(`mounts: ${header.roots?.join(', ') || 'none'} (${header.entries} entries, ${header.bytes} bytes)`);
  if (!header.entries) {
    out.resume();
    return;
  }
  o.progress.update(`copying the target's mounted files into the container (${header.entries} entries, ${formatBytes(header.bytes ?? 0)})`);
  try {
    await user.putArchive(out as unknown as NodeJS.ReadableStream, { path: '/' });
  } catch (e) {
    throw new MirrordError(
      `copying the target's mounted files failed: ${(e as Error).message}`,
      ExitCode.Agent,
      'container.mounts.sync = false skips the copy',
      { cause: e },
    );
  }
}

/** The exec's stdout, demultiplexed with backpressure (a slow archive upload must not pile the copy up in memory); stderr to `onErr`. */
function demux(raw: Duplex, onErr: (d: Buffer) => void): PassThrough {
  const out = new PassThrough({ highWaterMark: 1024 * 1024 });
  const err = new Writable({
    write(chunk: Buffer, _enc, cb) {
      onErr(chunk);
      cb();
    },
  });
  demuxAttach(raw, out, err);
  raw.on('end', () => out.end());
  raw.on('error', (e: Error) => out.destroy(e));
  return out;
}

/** The first line, parsed; the rest stays in the stream for the archive. */
function readHeader(stream: Readable, stderr: () => string): Promise<Header> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const nl = buf.indexOf(10);
      if (nl < 0) return;
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.pause();
      const rest = buf.subarray(nl + 1);
      if (rest.length) stream.unshift(rest);
      try {
        resolve(JSON.parse(buf.subarray(0, nl).toString('utf8')) as Header);
      } catch {
        reject(new MirrordError('the mirrord sidecar sent a malformed mounts header', ExitCode.Internal));
      }
    };
    const onEnd = () =>
      reject(
        new MirrordError(
          `the mirrord sidecar did not send the mounted files${stderr().trim() ? ` (${stderr().trim()})` : ''}`,
          ExitCode.Agent,
          'Run with MIRRORD_LOG=debug',
        ),
      );
    stream.on('data', onData);
    stream.once('end', onEnd);
  });
}
