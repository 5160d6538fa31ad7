import { z } from 'zod';
import { configSchema } from './schema.js';
import { STATUS_KEY, WHY_KEY, type KeyStatus } from './status.js';

/**
 * Every key path of the configuration with its type, default, description and status, read from
 * the JSON Schema of the one schema in code. Types come from what a user writes (`io: 'input'`, as
 * schema/mirrord.schema.json); defaults from the parsed side (`io: 'output'`), so a default that
 * goes through a transform (container.mounts.max_size) is shown too. docs/configuration.md and the
 * notices of `mirrord verify-config` both read it.
 */

export type Json = {
  type?: string | string[];
  description?: string;
  default?: unknown;
  enum?: unknown[];
  const?: unknown;
  properties?: Record<string, Json>;
  additionalProperties?: Json | boolean;
  items?: Json | boolean;
  prefixItems?: Json[];
  anyOf?: Json[];
  oneOf?: Json[];
  allOf?: Json[];
  minimum?: number;
  maximum?: number;
  [STATUS_KEY]?: KeyStatus;
  [WHY_KEY]?: string;
};

export interface KeyDoc {
  path: string;
  type: string;
  default: string;
  description: string | undefined;
  status: KeyStatus;
  why?: string;
}

const MiB = 1024 * 1024;

function branches(s: Json): Json[] {
  return s.anyOf ?? s.oneOf ?? s.allOf ?? [];
}

function typeName(s: Json | boolean | undefined): string {
  if (s === undefined || s === true) return 'any';
  if (s === false) return 'nothing';
  if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(' | ');
  if (s.const !== undefined) return JSON.stringify(s.const);
  const alts = branches(s);
  if (alts.length) return [...new Set(alts.map(typeName))].join(' or ');
  const t = Array.isArray(s.type) ? s.type.join(' or ') : s.type;
  switch (t) {
    case 'integer': {
      if (s.minimum === 1 && s.maximum === 65535) return 'port';
      if (s.minimum !== undefined && (s.maximum === undefined || s.maximum >= Number.MAX_SAFE_INTEGER)) return `integer >= ${s.minimum}`;
      return 'integer';
    }
    case 'array':
      if (s.prefixItems) return `[${s.prefixItems.map(typeName).join(', ')}]`;
      return `list of ${typeName(s.items)}`;
    case 'object':
      if (!s.properties && s.additionalProperties !== undefined && s.additionalProperties !== false) {
        return `{NAME: ${typeName(s.additionalProperties)}}`;
      }
      return 'object';
    case undefined:
      return 'any';
    default:
      return t;
  }
}

function defaultText(value: unknown, input: Json): string {
  if (value === undefined) return '—';
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) return '—';
  // A byte size that the input may also write as a string: show it the way a user would write it.
  if (typeof value === 'number' && value >= MiB && value % MiB === 0 && branches(input).some((b) => b.type === 'string')) {
    return `\`"${value / MiB}MiB"\``;
  }
  return `\`${JSON.stringify(value)}\``;
}

/** The object schemas a value may be: itself, or the object branches of a union. */
function objectsOf(s: Json): Json[] {
  if (s.properties) return [s];
  return branches(s).filter((b) => b.properties);
}

/** A key under a key without effect, or refused, shares its parent's status (agent.dns.timeout). */
type Inherited = Pick<KeyDoc, 'status' | 'why'> | undefined;

function walk(input: Json, output: Json | undefined, prefix: string, out: KeyDoc[], inherited: Inherited): void {
  for (const obj of objectsOf(input)) {
    const outObj = output
      ? (objectsOf(output).find((o) => o.properties && Object.keys(o.properties).join() === Object.keys(obj.properties!).join()) ?? output)
      : undefined;
    for (const [key, child] of Object.entries(obj.properties!)) {
      const keyPath = prefix ? `${prefix}.${key}` : key;
      const outChild = outObj?.properties?.[key];
      const own = child[STATUS_KEY] ?? outChild?.[STATUS_KEY];
      const doc: KeyDoc = {
        path: keyPath,
        type: typeName(child),
        default: defaultText(child.default !== undefined ? child.default : outChild?.default, child),
        description: child.description ?? outChild?.description,
        ...(own ? { status: own, why: child[WHY_KEY] ?? outChild?.[WHY_KEY] } : (inherited ?? { status: 'honoured' })),
      };
      // The branches of a union (target.path's object forms) share some keys: one row each.
      if (!out.some((k) => k.path === keyPath)) out.push(doc);
      walk(child, outChild, keyPath, out, doc.status === 'no-effect' || doc.status === 'refused' ? { status: doc.status, why: doc.why } : undefined);
    }
  }
}

/** Every key path of the configuration, parents before their keys, in the schema's order. */
export function configKeys(): KeyDoc[] {
  const input = z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as Json;
  const output = z.toJSONSchema(configSchema, { io: 'output', unrepresentable: 'any' }) as Json;
  const keys: KeyDoc[] = [];
  walk(input, output, '', keys, undefined);
  return keys;
}
