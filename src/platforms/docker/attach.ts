import { Duplex, PassThrough } from 'node:stream';
import type Docker from 'dockerode';
import type { Logger } from '../../../common/log.js';
import { readableAgentLine } from '../agent-log.js';
import { LINK_BUFFER_BYTES, demuxAttach } from './demux.js';

/** A container's attached streams, demultiplexed: what it writes to stdout and stderr, and its stdin. */
export interface Attached {
  /** The hijacked connection itself: writing is the container's stdin, end() half-closes it. */
  raw: Duplex;
  stdout: PassThrough;
  stderr: PassThrough;
  /** stdout to read and stdin to write as one Duplex with backpressure (the agent link, the sidecar relay). */
  link(): Duplex;
  /** The last stderr lines (each also logged at debug as `NAME: line`), to explain a failed start. */
  recentStderr(): string[];
}

/**
 * Attaches before start (so no byte of output is lost), for every Docker API stream of a session:
 * the agent, the sidecar, the user's container. Without a TTY the engine multiplexes stdout and
 * stderr on one stream, which is split here; with one (`tty`), everything is stdout.
 * `stderrLines: false` leaves stderr unread for a caller that reads it itself.
 */
export async function attachContainer(
  docker: Docker,
  container: Docker.Container,
  opts: { name: string; log: Logger; stdin?: boolean; tty?: boolean; stderrLines?: boolean },
): Promise<Attached> {
  const raw = (await container.attach({ stream: true, stdin: opts.stdin ?? true, stdout: true, stderr: true, hijack: true })) as unknown as Duplex;
  const stdout = new PassThrough({ highWaterMark: LINK_BUFFER_BYTES });
  const stderr = new PassThrough();
  if (opts.tty) raw.pipe(stdout);
  else demuxAttach(raw, stdout, stderr);
  raw.on('end', () => {
    stdout.end();
    stderr.end();
  });
  // A broken attach ends the reader with its error; the reader's users see it as an error or an end
  // (a relay that was just unpiped has none, and an unheard error would end the process).
  raw.on('error', (err) => stdout.destroy(err));
  stdout.on('error', () => undefined);
  stderr.on('error', () => undefined);
  const tail: string[] = [];
  if (opts.stderrLines !== false) {
    stderr.setEncoding('utf8');
    stderr.on('data', (text: string) => {
      for (const line of text.split('\n').filter(Boolean).map(readableAgentLine)) {
        tail.push(line);
        if (tail.length > 20) tail.shift();
        opts.log.debug(`${opts.name}: ${line}`);
      }
    });
  }
  return { raw, stdout, stderr, link: () => joinStreams(stdout, raw), recentStderr: () => tail.slice() };
}

/** A Duplex reading the demultiplexed stdout and writing the container's stdin, with backpressure. */
export function joinStreams(readable: PassThrough, writable: Duplex): Duplex {
  const link = new Duplex({
    write(chunk, _enc, cb) {
      writable.write(chunk, (err) => cb(err ?? null));
    },
    final(cb) {
      // Half-close of the hijacked socket: the engine closes the container's stdin.
      writable.end();
      cb();
    },
    read() {
      readable.resume();
    },
    destroy(err, cb) {
      readable.destroy();
      writable.destroy();
      cb(err);
    },
  });
  readable.on('data', (chunk: Buffer) => {
    if (!link.push(chunk)) readable.pause();
  });
  readable.on('end', () => link.push(null));
  readable.on('error', (err) => link.destroy(err));
  return link;
}
