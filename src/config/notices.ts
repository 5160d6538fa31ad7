import { METALBEAR_IMAGE } from './agent-schema.js';
import { configKeys, type KeyDoc } from './keys.js';

/**
 * The keys of a file that are accepted but do nothing here, one notice each, for `mirrord
 * verify-config`: a mirrord user learns which settings of theirs have no counterpart, and why.
 */
export function noticesFor(raw: unknown, keys: KeyDoc[] = configKeys()): string[] {
  const byPath = new Map(keys.map((k) => [k.path, k]));
  const out: string[] = [];
  const visit = (v: unknown, prefix: string): void => {
    if (!isObject(v)) return;
    for (const [k, child] of Object.entries(v)) {
      const p = prefix ? `${prefix}.${k}` : k;
      const doc = byPath.get(p);
      if (!doc) continue;
      if (doc.status === 'no-effect') {
        out.push(`${p}: accepted, no effect here: ${doc.why ?? 'see docs/configuration.md'}`);
        continue; // its own keys say the same
      }
      visit(child, p);
    }
  };
  visit(raw, '');
  const image = isObject(raw) && isObject(raw.agent) ? raw.agent.image : undefined;
  const imageText = typeof image === 'string' ? image : isObject(image) && typeof image.registry === 'string' ? image.registry : undefined;
  if (imageText && METALBEAR_IMAGE.test(imageText)) {
    out.push(`agent.image: ${imageText} is mirrord's own agent, which does not speak this tool's protocol: the agent image of this package is used instead`);
  }
  return out;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
