import ora from 'ora';

/** A long wait's visible side: a spinner on a TTY, nothing otherwise (CI, pipes). */
export interface Progress {
  update(text: string): void;
  succeed(text?: string): void;
  fail(text?: string): void;
}

export function createProgress(stream: NodeJS.WriteStream = process.stderr): Progress {
  // A terminal that reports no width (some ptys) would make the spinner clear thousands of lines.
  if (!stream.isTTY || process.env.CI || !stream.columns) return quietProgress;
  const spinner = ora({ stream, discardStdin: false });
  return {
    update(text) {
      if (spinner.isSpinning) spinner.text = text;
      else spinner.start(text);
    },
    succeed(text) {
      if (spinner.isSpinning) spinner.succeed(text);
    },
    fail(text) {
      if (spinner.isSpinning) spinner.fail(text);
    },
  };
}

export const quietProgress: Progress = { update: () => undefined, succeed: () => undefined, fail: () => undefined };
