import type { Ora } from 'ora';

/** A long wait's visible side: a spinner on a TTY, nothing otherwise (CI, pipes). */
export interface Progress {
  update(text: string): void;
  succeed(text?: string): void;
  fail(text?: string): void;
}

export function createProgress(stream: NodeJS.WriteStream = process.stderr): Progress {
  // A terminal that reports no width (some ptys) would make the spinner clear thousands of lines.
  if (!stream.isTTY || process.env.CI || !stream.columns) return quietProgress;
  // ora (with string-width's Unicode tables) costs about 90 ms to load: it loads beside the
  // session's first engine calls, and only on a terminal. Until it is there, the latest text waits.
  let spinner: Ora | undefined;
  let text: string | undefined;
  let ended: { ok: boolean; text?: string } | undefined;
  void import('ora').then(
    ({ default: ora }) => {
      spinner = ora({ stream, discardStdin: false });
      if (text === undefined) return;
      spinner.start(text);
      // Ended before ora was there: the same last line as if it had spun all along.
      if (ended) spinner[ended.ok ? 'succeed' : 'fail'](ended.text);
    },
    () => undefined,
  );
  return {
    update(t) {
      text = t;
      if (!spinner) return;
      if (spinner.isSpinning) spinner.text = t;
      else spinner.start(t);
    },
    succeed(t) {
      if (!spinner) ended = { ok: true, text: t };
      else if (spinner.isSpinning) spinner.succeed(t);
    },
    fail(t) {
      if (!spinner) ended = { ok: false, text: t };
      else if (spinner.isSpinning) spinner.fail(t);
    },
  };
}

export const quietProgress: Progress = { update: () => undefined, succeed: () => undefined, fail: () => undefined };
