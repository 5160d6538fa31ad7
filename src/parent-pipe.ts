/**
 * The detached watchdogs' side of their parent's pipe (`mirrord up`'s compose watchdog, copy_target's):
 * the parent writes lines as it goes and `done` when it has cleaned up itself. Resolves, once the
 * pipe closes, with the lines written if `done` never came (the parent was killed), else undefined.
 */
export function parentGone(input: NodeJS.ReadableStream = process.stdin): Promise<string[] | undefined> {
  return new Promise((resolve) => {
    let text = '';
    input.setEncoding('utf8');
    input.on('data', (d: string) => (text += d));
    input.once('end', () => {
      const lines = text.split('\n');
      resolve(lines.includes('done') ? undefined : lines);
    });
    input.once('error', () => input.emit('end'));
  });
}
