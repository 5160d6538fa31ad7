/**
 * JSONPath (RFC 9535) queries for `body_filter`, as mirrord documents them, with mirrord's
 * `typeof()` function extension. Supported: `$`, `.name`, `['name']`, `.*`, `[*]`, `..` (descendants),
 * indexes (negative too), slices `[start:end:step]`, unions `[a,b]`, and filters `[?...]` with
 * `@`/`$` paths, literals, `== != < <= > >=`, `&& || !`, parentheses and the functions
 * `typeof`, `length`, `count`, `match` and `search`. A query outside that is refused when the
 * filter is compiled, with the position it stopped at, rather than matching something else.
 *
 * Hand-written because mirrord's filters need the non-standard typeof(): of the maintained RFC 9535
 * libraries for Node, jsonpath-rfc9535 (1.3) and jsonpath-js (0.3) take no custom function
 * extension (checked 2026-12), and RFC 9535 alone cannot express a type test.
 */

type Json = unknown;
type Selector =
  | { k: 'name'; name: string }
  | { k: 'wild' }
  | { k: 'index'; i: number }
  | { k: 'slice'; start?: number; end?: number; step?: number }
  | { k: 'filter'; e: Expr };
interface Segment {
  descendant: boolean;
  selectors: Selector[];
}
type Query = { root: '$' | '@'; segments: Segment[] };
type Expr =
  | { k: 'or' | 'and'; a: Expr; b: Expr }
  | { k: 'not'; a: Expr }
  | { k: 'cmp'; op: string; a: Expr; b: Expr }
  | { k: 'lit'; v: Json }
  | { k: 'query'; q: Query }
  | { k: 'fn'; name: string; args: Expr[] };

const NOTHING = Symbol('nothing');
type Value = Json | typeof NOTHING;

class Parser {
  i = 0;
  constructor(private readonly s: string) {}

  fail(what: string): never {
    throw new Error(`JSONPath ${JSON.stringify(this.s)}: ${what} at position ${this.i}`);
  }
  ws(): void {
    while (/\s/.test(this.s[this.i] ?? '')) this.i++;
  }
  eat(t: string): boolean {
    this.ws();
    if (this.s.startsWith(t, this.i)) {
      this.i += t.length;
      return true;
    }
    return false;
  }
  expect(t: string): void {
    if (!this.eat(t)) this.fail(`expected ${t}`);
  }

  query(root: '$' | '@'): Query {
    const segments: Segment[] = [];
    for (;;) {
      if (this.s.startsWith('..', this.i)) {
        this.i += 2;
        if (this.s[this.i] === '[') segments.push({ descendant: true, selectors: this.bracket() });
        else segments.push({ descendant: true, selectors: [this.dotName()] });
      } else if (this.s[this.i] === '.') {
        this.i++;
        segments.push({ descendant: false, selectors: [this.dotName()] });
      } else if (this.s[this.i] === '[') segments.push({ descendant: false, selectors: this.bracket() });
      else return { root, segments };
    }
  }
  dotName(): Selector {
    if (this.s[this.i] === '*') {
      this.i++;
      return { k: 'wild' };
    }
    const m = /^[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*/.exec(this.s.slice(this.i));
    if (!m) this.fail('expected a member name');
    this.i += m[0].length;
    return { k: 'name', name: m[0] };
  }
  bracket(): Selector[] {
    this.i++; // [
    const out: Selector[] = [];
    do out.push(this.selector());
    while (this.eat(','));
    this.expect(']');
    return out;
  }
  int(): number | undefined {
    this.ws();
    const m = /^-?\d+/.exec(this.s.slice(this.i));
    if (!m) return undefined;
    this.i += m[0].length;
    return Number(m[0]);
  }
  selector(): Selector {
    this.ws();
    const c = this.s[this.i];
    if (c === "'" || c === '"') return { k: 'name', name: this.string() };
    if (c === '*') {
      this.i++;
      return { k: 'wild' };
    }
    if (c === '?') {
      this.i++;
      return { k: 'filter', e: this.or() };
    }
    const start = this.int();
    if (this.eat(':')) {
      const end = this.int();
      const step = this.eat(':') ? this.int() : undefined;
      return { k: 'slice', start, end, step };
    }
    if (start === undefined) this.fail('expected a selector');
    return { k: 'index', i: start };
  }
  string(): string {
    const q = this.s[this.i]!;
    let out = '';
    for (this.i++; this.i < this.s.length; this.i++) {
      const c = this.s[this.i]!;
      if (c === q) {
        this.i++;
        return out;
      }
      if (c === '\\') {
        const n = this.s[++this.i];
        if (n === 'u') {
          out += String.fromCharCode(parseInt(this.s.slice(this.i + 1, this.i + 5), 16));
          this.i += 4;
        } else out += ({ n: '\n', t: '\t', r: '\r', b: '\b', f: '\f' } as Record<string, string>)[n ?? ''] ?? n ?? '';
      } else out += c;
    }
    this.fail('unterminated string');
  }
  or(): Expr {
    let a = this.and();
    while (this.eat('||')) a = { k: 'or', a, b: this.and() };
    return a;
  }
  and(): Expr {
    let a = this.unary();
    while (this.eat('&&')) a = { k: 'and', a, b: this.unary() };
    return a;
  }
  unary(): Expr {
    if (this.eat('!')) return { k: 'not', a: this.unary() };
    const a = this.primary();
    this.ws();
    const op = ['==', '!=', '<=', '>=', '<', '>'].find((o) => this.s.startsWith(o, this.i));
    if (!op) return a;
    this.i += op.length;
    return { k: 'cmp', op, a, b: this.primary() };
  }
  primary(): Expr {
    this.ws();
    const rest = this.s.slice(this.i);
    if (this.eat('(')) {
      const e = this.or();
      this.expect(')');
      return e;
    }
    const c = this.s[this.i];
    if (c === '@' || c === '$') {
      this.i++;
      return { k: 'query', q: this.query(c) };
    }
    if (c === "'" || c === '"') return { k: 'lit', v: this.string() };
    const num = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?/.exec(rest);
    if (num) {
      this.i += num[0].length;
      return { k: 'lit', v: Number(num[0]) };
    }
    for (const [word, v] of [
      ['true', true],
      ['false', false],
      ['null', null],
    ] as const) {
      if (rest.startsWith(word) && !/[\w(]/.test(rest[word.length] ?? '')) {
        this.i += word.length;
        return { k: 'lit', v };
      }
    }
    const fn = /^(typeof|length|count|match|search|value)\s*\(/.exec(rest);
    if (fn) {
      this.i += fn[0].length;
      const args: Expr[] = [];
      if (!this.eat(')')) {
        do args.push(this.or());
        while (this.eat(','));
        this.expect(')');
      }
      return { k: 'fn', name: fn[1]!, args };
    }
    this.fail('expected a path, a literal or a function');
  }
}

export interface JsonPath {
  /** Every node the query selects. */
  select(doc: Json): Json[];
}

export function compileJsonPath(text: string): JsonPath {
  const p = new Parser(text.trim());
  p.ws();
  if (!p.eat('$')) p.fail('a query starts with $');
  const q = p.query('$');
  p.ws();
  if (p.i !== text.trim().length) p.fail('unexpected text');
  return { select: (doc) => run(q, doc, doc) };
}

function children(v: Json): Json[] {
  if (Array.isArray(v)) return v;
  if (v && typeof v === 'object') return Object.values(v);
  return [];
}

function descendants(v: Json, out: Json[] = []): Json[] {
  out.push(v);
  for (const c of children(v)) descendants(c, out);
  return out;
}

function select(sel: Selector, v: Json, root: Json): Json[] {
  switch (sel.k) {
    case 'name':
      return v && typeof v === 'object' && !Array.isArray(v) && Object.hasOwn(v, sel.name) ? [(v as Record<string, Json>)[sel.name]] : [];
    case 'wild':
      return children(v);
    case 'index': {
      if (!Array.isArray(v)) return [];
      const i = sel.i < 0 ? v.length + sel.i : sel.i;
      return i >= 0 && i < v.length ? [v[i]] : [];
    }
    case 'slice': {
      if (!Array.isArray(v)) return [];
      const step = sel.step ?? 1;
      if (step === 0) return [];
      const norm = (i: number) => (i < 0 ? Math.max(v.length + i, step > 0 ? 0 : -1) : Math.min(i, step > 0 ? v.length : v.length - 1));
      const out: Json[] = [];
      if (step > 0) for (let i = norm(sel.start ?? 0); i < norm(sel.end ?? v.length); i += step) out.push(v[i]);
      else for (let i = norm(sel.start ?? v.length - 1); i > (sel.end === undefined ? -1 : norm(sel.end)); i += step) out.push(v[i]);
      return out;
    }
    case 'filter':
      return children(v).filter((c) => truthy(evaluate(sel.e, c, root)));
  }
}

function run(q: Query, current: Json, root: Json): Json[] {
  let nodes = [q.root === '$' ? root : current];
  for (const seg of q.segments) {
    const from = seg.descendant ? nodes.flatMap((n) => descendants(n)) : nodes;
    nodes = from.flatMap((n) => seg.selectors.flatMap((s) => select(s, n, root)));
  }
  return nodes;
}

/** A filter's value: a single value, NOTHING, or (from a query) a node list. */
type Result = { list: Json[] } | { value: Value };

function evaluate(e: Expr, current: Json, root: Json): Result {
  switch (e.k) {
    case 'lit':
      return { value: e.v };
    case 'query':
      return { list: run(e.q, current, root) };
    case 'or':
      return { value: truthy(evaluate(e.a, current, root)) || truthy(evaluate(e.b, current, root)) };
    case 'and':
      return { value: truthy(evaluate(e.a, current, root)) && truthy(evaluate(e.b, current, root)) };
    case 'not':
      return { value: !truthy(evaluate(e.a, current, root)) };
    case 'cmp':
      return { value: compare(e.op, single(evaluate(e.a, current, root)), single(evaluate(e.b, current, root))) };
    case 'fn':
      return {
        value: call(
          e.name,
          e.args.map((a) => evaluate(a, current, root)),
        ),
      };
  }
}

function truthy(r: Result): boolean {
  return 'list' in r ? r.list.length > 0 : r.value === true;
}

function single(r: Result): Value {
  if ('value' in r) return r.value;
  return r.list.length === 1 ? r.list[0] : NOTHING;
}

function typeName(v: Json): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'boolean') return 'bool';
  return typeof v; // number, string, object
}

function call(name: string, args: Result[]): Value {
  const [a, b] = args;
  switch (name) {
    case 'typeof': {
      // mirrord's extension: the one type every node shares, else nothing.
      const nodes = a && 'list' in a ? a.list : a && a.value !== NOTHING ? [a.value] : [];
      const types = new Set(nodes.map(typeName));
      return types.size === 1 ? [...types][0]! : NOTHING;
    }
    case 'count':
      return a && 'list' in a ? a.list.length : NOTHING;
    case 'length': {
      const v = a ? single(a) : NOTHING;
      if (typeof v === 'string') return [...v].length;
      if (Array.isArray(v)) return v.length;
      if (v && typeof v === 'object') return Object.keys(v).length;
      return NOTHING;
    }
    case 'value':
      return a ? single(a) : NOTHING;
    case 'match':
    case 'search': {
      const s = a ? single(a) : NOTHING;
      const re = b ? single(b) : NOTHING;
      if (typeof s !== 'string' || typeof re !== 'string') return false;
      try {
        return new RegExp(name === 'match' ? `^(?:${re})$` : re, 'u').test(s);
      } catch {
        return false;
      }
    }
  }
  return NOTHING;
}

function deepEqual(a: Json, b: Json): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  return ka.length === kb.length && ka.every((k) => deepEqual((a as Record<string, Json>)[k], (b as Record<string, Json>)[k]));
}

function compare(op: string, a: Value, b: Value): boolean {
  const eq = a === NOTHING || b === NOTHING ? a === b : deepEqual(a, b);
  if (op === '==') return eq;
  if (op === '!=') return !eq;
  const lt = (x: Value, y: Value) => ((typeof x === 'number' && typeof y === 'number') || (typeof x === 'string' && typeof y === 'string') ? x < y : false);
  if (op === '<') return lt(a, b);
  if (op === '>') return lt(b, a);
  if (op === '<=') return lt(a, b) || (eq && (typeof a === 'number' || typeof a === 'string'));
  return lt(b, a) || (eq && (typeof a === 'number' || typeof a === 'string'));
}

/** How mirrord compares a selected node with `matches`: strings as they are, the rest as JSON. */
export function stringify(v: Json): string {
  return typeof v === 'string' ? v : JSON.stringify(v);
}
