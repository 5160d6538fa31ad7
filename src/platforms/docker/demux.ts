/**
 * The Docker engine's multiplexed attach stream (no TTY): frames of an 8-byte header (stream type
 * 0|1|2, three zero bytes, u32 big-endian length) and the payload. docker-modem's demuxStream
 * concatenates every read onto its buffer and copies the rest after each frame, which costs a copy
 * or two of every byte of the agent link, and it writes without backpressure. This one hands on
 * subarrays of the reads (it copies only a header split between reads) and pauses the source while
 * stdout (the agent link) is full. stderr is written as it comes, as before: a caller that reads it
 * late must not stall the link.
 */
import type { Readable, Writable } from 'node:stream';

const HEADER = 8;

/**
 * How much of the container's stdout may wait for its reader before the attach stream is paused:
 * large enough that a link at full speed is not paused and resumed for every frame.
 */
export const LINK_BUFFER_BYTES = 1024 * 1024;

export function demuxAttach(source: Readable, stdout: Writable, stderr: Writable): void {
  const header = Buffer.alloc(HEADER);
  let headerFill = 0;
  /** Payload bytes still due for the current frame, and where they go. */
  let left = 0;
  let target: Writable = stdout;
  /** Not multiplexed after all (a TTY, or misaligned): everything else is stdout. */
  let raw = false;
  let waiting = 0;

  const onDrain = () => {
    if (--waiting === 0) source.resume();
  };
  const write = (to: Writable, chunk: Buffer) => {
    if (!to.write(chunk) && to === stdout) {
      waiting++;
      to.once('drain', onDrain);
    }
  };

  source.on('data', (chunk: Buffer) => {
    let at = 0;
    while (at < chunk.length) {
      if (raw) {
        write(stdout, at === 0 ? chunk : chunk.subarray(at));
        break;
      }
      if (left > 0) {
        const n = Math.min(left, chunk.length - at);
        write(target, n === chunk.length ? chunk : chunk.subarray(at, at + n));
        left -= n;
        at += n;
        continue;
      }
      const n = Math.min(HEADER - headerFill, chunk.length - at);
      chunk.copy(header, headerFill, at, at + n);
      headerFill += n;
      at += n;
      if (headerFill < HEADER) break;
      headerFill = 0;
      const type = header[0]!;
      if (type > 2 || header[1] !== 0 || header[2] !== 0 || header[3] !== 0) {
        // As docker-modem does for a stream that is not multiplexed: pass it through as it is.
        raw = true;
        write(stdout, Buffer.from(header));
        continue;
      }
      target = type === 1 ? stdout : stderr;
      left = header.readUInt32BE(4);
    }
    if (waiting > 0) source.pause();
  });
}
