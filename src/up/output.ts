import { Writable } from 'node:stream';
import pc from 'picocolors';

const COLOURS = [pc.cyan, pc.yellow, pc.green, pc.magenta, pc.blue, pc.red];

export interface PrefixOptions {
  colour: boolean;
  prefix: boolean;
  /** Width the names are padded to (the longest service name). */
  width: number;
}

/**
 * A service's output, one line at a time, as `name | line` (padded, coloured on a TTY). A partial
 * last line is held until its newline comes or the stream ends.
 */
export function prefixedLines(name: string, index: number, out: NodeJS.WritableStream, o: PrefixOptions): Writable {
  const colour = o.colour ? COLOURS[index % COLOURS.length]! : (s: string) => s;
  const head = o.prefix ? colour(`${name.padEnd(o.width)} | `) : '';
  let partial = '';
  const emit = (lines: string[]) => {
    if (lines.length) out.write(lines.map((l) => `${head}${l}\n`).join(''));
  };
  return new Writable({
    decodeStrings: false,
    write(chunk: Buffer | string, _enc, cb) {
      const text = partial + chunk.toString();
      const lines = text.split('\n');
      partial = lines.pop()!;
      emit(lines);
      cb();
    },
    final(cb) {
      if (partial) emit([partial]);
      partial = '';
      cb();
    },
  });
}
