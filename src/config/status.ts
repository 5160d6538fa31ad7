/**
 * What each key of mirrord's configuration does here, carried in the schema's metadata so that
 * docs/configuration.md (src/config/write-docs.ts) and `mirrord verify-config` (src/config/notices.ts)
 * read the same facts. A key without a status is honoured as mirrord documents it.
 *
 * - `honoured`: does what mirrord's reference says;
 * - `differs`: honoured, with the difference given in `why`;
 * - `no-effect`: accepted so an existing file works, does nothing here (`why`); verify-config names it;
 * - `refused`: accepted by the schema, then refused with one line naming the key (`why`), exit 78;
 * - `ours`: a key of this tool that mirrord does not have.
 */
export type KeyStatus = 'honoured' | 'differs' | 'no-effect' | 'refused' | 'ours';

export const STATUS_KEY = 'x-mirrord-status';
export const WHY_KEY = 'x-mirrord-why';

export interface StatusMeta {
  [STATUS_KEY]: KeyStatus;
  [WHY_KEY]?: string;
  [k: string]: unknown;
}

export const differs = (why: string): StatusMeta => ({ [STATUS_KEY]: 'differs', [WHY_KEY]: why });
export const noEffect = (why: string): StatusMeta => ({ [STATUS_KEY]: 'no-effect', [WHY_KEY]: why });
export const refused = (why: string): StatusMeta => ({ [STATUS_KEY]: 'refused', [WHY_KEY]: why });
export const ours: StatusMeta = { [STATUS_KEY]: 'ours' };

/** The refusal of every paid-operator feature, word for word (the contract: name the key, this text, exit 78). */
export const NEEDS_OPERATOR = "needs mirrord's operator (a paid product this tool does not include): remove the key";
