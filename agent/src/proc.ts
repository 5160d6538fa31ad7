/**
 * Reading /proc files whole. They report size 0, and Node 18's fs.promises.readFile (the agent runs
 * on Debian bookworm's Node 18) stops after the first read(2), which procfs answers one page at a
 * time: a target's mountinfo or environ longer than ~4 KiB came back cut. This reads until EOF.
 */
import { open } from 'node:fs/promises';

export async function readProcFile(path: string): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const chunks: Buffer[] = [];
    for (;;) {
      const buf = Buffer.allocUnsafe(64 * 1024);
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      chunks.push(buf.subarray(0, bytesRead));
    }
    return Buffer.concat(chunks);
  } finally {
    await fh.close();
  }
}

export async function readProcText(path: string): Promise<string> {
  return (await readProcFile(path)).toString('utf8');
}
