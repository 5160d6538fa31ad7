/**
 * The agent's stdout when it carries the link (the container's attached stream, read by the
 * container runtime's shim and relayed by the engine).
 *
 * process.stdout writes synchronously to pipes on Linux, which would block the event loop (and the
 * heartbeat) whenever the client reads slowly: a net.Socket on fd 1 is asynchronous and reports
 * backpressure; a regular file (stdout redirected) needs an fs stream instead.
 *
 * Every write to that pipe wakes the shim, and a wake-up across processes is what costs here (about
 * 40 µs of the agent's CPU per write on the 2-core VM, against a few for the copy): so the writes
 * of one turn of the event loop (every frame a batch of captured packets produced, a frame's header
 * and its payload) leave as one writev. Duplex.from, which joins stdin and stdout into the link,
 * writes chunk by chunk and forwards no cork, hence the batching below it.
 */
import fs from 'node:fs';
import net from 'node:net';
import { Writable } from 'node:stream';

/** Writes to `sock` corked until the current tick's work is done, with `sock`'s backpressure. */
export function tickBatched(sock: net.Socket): Writable {
  let corked = false;
  const out = new Writable({
    write(chunk: Buffer, _enc, cb) {
      if (!corked) {
        corked = true;
        sock.cork();
        process.nextTick(() => {
          corked = false;
          sock.uncork();
        });
      }
      if (sock.write(chunk)) cb();
      else sock.once('drain', () => cb());
    },
    final(cb) {
      sock.end(() => cb());
    },
    destroy(err, cb) {
      sock.destroy(err ?? undefined);
      cb(err);
    },
  });
  sock.on('error', (err) => out.destroy(err));
  sock.on('close', () => out.destroy());
  return out;
}

export function openStdout(): Writable {
  const st = fs.fstatSync(1);
  if (st.isFIFO() || st.isSocket()) return tickBatched(new net.Socket({ fd: 1, readable: false, writable: true }));
  return fs.createWriteStream('', { fd: 1 });
}
