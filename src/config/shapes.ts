import { z } from 'zod';

/** Value shapes mirrord accepts in many places, each normalised to the one form the code reads. */

/** `"A;B"` or `["A", "B"]`, as mirrord accepts both. */
export const semicolonList = z.union([z.string(), z.array(z.string())]).transform((v) =>
  typeof v === 'string'
    ? v
        .split(';')
        .map((s) => s.trim())
        .filter(Boolean)
    : v,
);

/** One string or a list of them (mirrord's `VecOrSingle` read from a file: a single string is one entry). */
export const stringOrList = z.union([z.string(), z.array(z.string())]).transform((v) => (typeof v === 'string' ? [v] : v));

export const port = z.number().int().min(1).max(65535);

/** A port or a list of ports (`"ports": 80` is `[80]`). */
export const portOrList = z.union([port, z.array(port)]).transform((v) => (typeof v === 'number' ? [v] : v));

/** Regexes (JavaScript syntax), as a list or `;`-separated; each must compile. */
export const regexList = semicolonList.superRefine((list, ctx) => {
  for (const src of list) {
    const problem = regexProblem(src);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  }
});

/** Rust's regex syntax where it differs from JavaScript's and mirrord users write it: `(?P<name>` groups. */
export function jsRegexSource(src: string): string {
  return src.replace(/\(\?P</g, '(?<');
}

export function regexProblem(src: string): string | undefined {
  try {
    new RegExp(jsRegexSource(src));
    return undefined;
  } catch (err) {
    return `invalid regex ${JSON.stringify(src)}: ${(err as Error).message}`;
  }
}

/** `{regex: value}`, every regex compiling (feature.env.mapping, feature.fs.mapping). */
export const regexMap = z.record(z.string(), z.string()).superRefine((map, ctx) => {
  for (const src of Object.keys(map)) {
    const problem = regexProblem(src);
    if (problem) ctx.addIssue({ code: 'custom', message: problem, path: [src] });
  }
});

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
};
/** A byte count: a number, or a string with a unit (`"512KiB"`, `"64MiB"`, `"1GiB"`; powers of 1024). */
export const byteSize = z.union([z.number().int().min(0), z.string()]).transform((v, ctx) => {
  if (typeof v === 'number') return v;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(v);
  const unit = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) {
    ctx.addIssue({ code: 'custom', message: `expected a size like 512KiB, 64MiB or 1GiB, got ${JSON.stringify(v)}` });
    return z.NEVER;
  }
  return Math.floor(Number(m[1]) * unit);
});

/** mirrord lets several sections be a bare boolean or mode string; normalise them to objects. */
export const boolOr = <T extends z.ZodTypeAny>(obj: T, whenFalse: unknown, whenTrue: unknown = {}) =>
  z.preprocess((v) => (v === false ? whenFalse : v === true ? whenTrue : v), obj);

/** Kubernetes-style `{name: value}` maps (labels, annotations, node selectors). */
export const stringMap = z.record(z.string(), z.string());

/** Anything: for keys whose whole value is accepted without effect (mirrord's own settings of things we do not have). */
export const anything = z.unknown();
