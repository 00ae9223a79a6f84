// Masking rules for sanitized restores: drills and sandbox restores
// (`"sandbox": true`, `memvault restore --sanitize`) replace the production
// values a component's `mask:` rules name, so a sandbox never holds them; a
// production (in-place, or not sandboxed) restore never masks.
//
// A rule names what to change and a method:
//   redact    NULL (or `value`), the same for every row
//   constant  `value` for every row
//   hash      keyed (HMAC-SHA-256 under a key derived from the vault's keys),
//             deterministic, so equal values stay equal and joins still work;
//             format-preserving: letters stay letters (same case), digits stay
//             digits, other characters stay; an email keeps its shape
//             (<local>@<label>.invalid); integers stay integers (1 .. 2^31-1)
//   fake      a plausible value of `fake` (email, name, phone, text) chosen by
//             the keyed hash, so it is deterministic too
// Per kind: sqlite, postgres, vector `table` + `column` (+ `path` like
// `$.user.email` for a JSON field inside a json/jsonb/text column; vector:
// metadata columns only); mongodb `collection` + `field` (a dotted path; the
// schema is here, the driver does not mask yet, so the config refuses it);
// redis `keys` (a glob) with
// `method: delete | redact | hash`; files `files` (a glob below the
// component's root) with `action: remove | replace`.
//
// Applying the rules is each driver's (`mask()`, components/types.ts); this
// module holds what they share: the schemas, the value methods and JSON paths.
import { createHash, createHmac } from 'node:crypto';
import { z } from 'zod';
import { ConfigError } from './errors.ts';

const method = z.enum(['redact', 'constant', 'hash', 'fake']);
const fakeKind = z.enum(['email', 'name', 'phone', 'text']);
const scalar = z.union([z.string(), z.number(), z.boolean(), z.null()]);

/** `$.a.b[0].c`: object keys and array indexes (`[*]`: every element). */
export const JSON_PATH = /^\$((\.[A-Za-z_][A-Za-z0-9_-]*)|(\[(\d+|\*)\]))+$/;

function methodRefine(r: { method: string; value?: unknown; fake?: unknown }, ctx: z.RefinementCtx): void {
  if (r.method === 'constant' && r.value === undefined) ctx.addIssue({ code: 'custom', path: ['value'], message: 'method constant needs a value (e.g. value: "masked")' });
  if (r.method === 'fake' && r.fake === undefined) ctx.addIssue({ code: 'custom', path: ['fake'], message: 'method fake needs fake: email | name | phone | text' });
  if (r.method !== 'fake' && r.fake !== undefined) ctx.addIssue({ code: 'custom', path: ['fake'], message: 'only used with method: fake' });
  if ((r.method === 'hash' || r.method === 'fake') && r.value !== undefined) ctx.addIssue({ code: 'custom', path: ['value'], message: `only used with method redact or constant, not ${r.method}` });
}

/** sqlite, postgres, vector: a column of a table, or a JSON field inside it. */
export const tableMaskRule = z.object({
  /** Table name; postgres and vector: `schema.table` or `table` (schema public). */
  table: z.string().min(1),
  column: z.string().min(1),
  /** A JSON field inside the column (json, jsonb or text holding JSON), e.g. `$.user.email`. */
  path: z.string().regex(JSON_PATH, 'expected a JSON path like $.user.email or $.items[*].token').optional(),
  method,
  /** redact: the replacement (default NULL); constant: required. */
  value: scalar.optional(),
  fake: fakeKind.optional(),
}).strict().superRefine(methodRefine);

/** mongodb: a field of the documents of a collection (`db.collection` or `collection`, every database). */
export const documentMaskRule = z.object({
  collection: z.string().min(1),
  /** Dotted path, e.g. `user.email`; arrays on the way are walked. */
  field: z.string().regex(/^[^.$][^.]*(\.[^.$][^.]*)*$/, 'expected a dotted field path like user.email'),
  method,
  value: scalar.optional(),
  fake: fakeKind.optional(),
}).strict().superRefine(methodRefine);

/** redis: keys matching a glob (Redis MATCH syntax), deleted or with their values replaced. */
export const keyMaskRule = z.object({
  keys: z.string().min(1),
  /** delete the keys; redact: string values (or every field of a hash, or `field`) become `value` (default "" ); hash: keyed hash of each value. */
  method: z.enum(['delete', 'redact', 'hash']),
  /** A hash field (HSET) to change instead of every field. */
  field: z.string().optional(),
  value: z.string().optional(),
}).strict().superRefine((r, ctx) => {
  if (r.method === 'delete' && (r.field !== undefined || r.value !== undefined)) ctx.addIssue({ code: 'custom', path: ['method'], message: 'method delete takes no field or value' });
  if (r.method === 'hash' && r.value !== undefined) ctx.addIssue({ code: 'custom', path: ['value'], message: 'only used with method redact' });
});

/** files: paths below the component's root matching a glob (`**` any depth), removed or replaced. */
export const fileMaskRule = z.object({
  files: z.string().min(1).refine((g) => !g.startsWith('/') && !g.split('/').includes('..'), 'a glob relative to the component root, without ..'),
  action: z.enum(['remove', 'replace']),
  /** replace: the new content. @default "" */
  content: z.string().optional(),
}).strict().superRefine((r, ctx) => {
  if (r.action === 'remove' && r.content !== undefined) ctx.addIssue({ code: 'custom', path: ['content'], message: 'only used with action: replace' });
});

export type TableMaskRule = z.infer<typeof tableMaskRule>;
export type DocumentMaskRule = z.infer<typeof documentMaskRule>;
export type KeyMaskRule = z.infer<typeof keyMaskRule>;
export type FileMaskRule = z.infer<typeof fileMaskRule>;
export type MaskRule = TableMaskRule | DocumentMaskRule | KeyMaskRule | FileMaskRule;

/** The rule schema of each kind that can be masked. */
export const MASK_RULE_SCHEMAS: Record<string, z.ZodType> = {
  sqlite: tableMaskRule,
  postgres: tableMaskRule,
  vector: tableMaskRule,
  redis: keyMaskRule,
  files: fileMaskRule,
};

/** What one rule changed in one sanitized restore. */
export interface MaskRuleResult {
  /** components.<name>.mask.<i> */
  rule: string;
  /** The rule in a few words, e.g. `users.email hash`. */
  describe: string;
  /** Rows, documents, keys or files changed (a row counts once per rule). */
  touched: number;
  unit: 'rows' | 'documents' | 'keys' | 'files';
}

/** Figures of a masked table taken in the same restore step, before masking (for validation after it). */
export interface MaskedTable {
  columns: string[];
  rows: number;
  /** SHA-256 over the table's other columns, in a stable row order, before masking. */
  unmaskedSha256: string;
}

/** The result of masking one restored component. */
export interface MaskOutcome {
  rules: MaskRuleResult[];
  /** sqlite, postgres, vector: per masked table. */
  tables?: Record<string, MaskedTable>;
  /** redis: per backed-up database number: keys deleted, and a digest of the keys no rule touched. */
  databases?: Record<string, { deleted: number; changed: number; untouchedKeys: number; untouchedSha256: string }>;
  /** mongodb: per `db.collection`: documents before and after masking. */
  collections?: Record<string, { documents: number }>;
  /** files: paths (relative to the component root) removed and replaced. */
  files?: { removed: string[]; replaced: string[] };
  /** The driver's own validation against the backup, run before masking: every check passed. */
  validatedBeforeMasking: number;
  /** How validation after masking compares masked data (for the report). */
  note: string;
}

export function ruleName(component: string, i: number): string {
  return `components.${component}.mask.${i}`;
}

/** The masking key of a vault: derived from its id key, never stored. */
export function maskKeyFrom(idKey: Buffer): Buffer {
  return createHmac('sha256', idKey).update('memvault/mask/v1').digest();
}

function stream(key: Buffer, input: string, n: number): Buffer {
  const out: Buffer[] = [];
  let len = 0;
  for (let i = 0; len < n; i++) {
    const b = createHmac('sha256', key).update(`${i}\0${input}`).digest();
    out.push(b);
    len += b.length;
  }
  return Buffer.concat(out).subarray(0, n);
}

const LOWER = 'abcdefghijklmnopqrstuvwxyz';
const UPPER = LOWER.toUpperCase();

/** Letters to letters (same case), digits to digits, the rest unchanged, keyed by the whole input. */
function preserveFormat(key: Buffer, s: string, salt: string): string {
  const chars = [...s];
  const r = stream(key, `${salt}\0${s}`, chars.length);
  return chars.map((c, i) => {
    if (c >= 'a' && c <= 'z') return LOWER[r[i] % 26];
    if (c >= 'A' && c <= 'Z') return UPPER[r[i] % 26];
    if (c >= '0' && c <= '9') return String(r[i] % 10);
    return c;
  }).join('');
}

const EMAIL = /^([^@\s]+)@([^@\s]+\.[^@\s]+)$/;

/** The keyed, deterministic, format-preserving hash of a value (null stays null). */
export function hashValue(key: Buffer, v: unknown): unknown {
  if (v === null || v === undefined) return v;
  if (typeof v === 'number' || typeof v === 'bigint') {
    const n = stream(key, `n\0${String(v)}`, 6).readUIntBE(0, 6);
    return (n % 2_147_483_646) + 1;
  }
  if (typeof v === 'boolean') return v;
  const s = typeof v === 'string' ? v : Buffer.isBuffer(v) || v instanceof Uint8Array ? Buffer.from(v).toString('hex') : JSON.stringify(v);
  const m = EMAIL.exec(s);
  if (m) return `${preserveFormat(key, m[1], 'local')}@${stream(key, `d\0${m[2]}`, 4).toString('hex')}.invalid`;
  return preserveFormat(key, s, 's');
}

const FIRST = ['Alex', 'Sam', 'Robin', 'Jordan', 'Taylor', 'Casey', 'Morgan', 'Jamie', 'Riley', 'Avery', 'Quinn', 'Drew'];
const LAST = ['Smith', 'Lee', 'Garcia', 'Brown', 'Novak', 'Khan', 'Silva', 'Meyer', 'Rossi', 'Kim', 'Dubois', 'Okafor'];

/** A plausible fake value, chosen by the keyed hash of the original (deterministic). */
export function fakeValue(key: Buffer, kind: 'email' | 'name' | 'phone' | 'text', v: unknown): unknown {
  if (v === null || v === undefined) return v;
  const r = stream(key, `fake\0${kind}\0${typeof v === 'string' ? v : JSON.stringify(v)}`, 8);
  const first = FIRST[r[0] % FIRST.length];
  const last = LAST[r[1] % LAST.length];
  const n = r.readUInt32BE(4) % 100000;
  switch (kind) {
    case 'email': return `${first}.${last}${n}@example.invalid`.toLowerCase();
    case 'name': return `${first} ${last}`;
    case 'phone': return `+1-555-${String(r.readUInt16BE(2) % 10000).padStart(4, '0')}`;
    case 'text': return `masked text ${r.toString('hex').slice(0, 8)}`;
  }
}

/** The new value of one field under a rule with method redact | constant | hash | fake. */
export function maskValue(key: Buffer, rule: { method: string; value?: unknown; fake?: 'email' | 'name' | 'phone' | 'text' }, v: unknown): unknown {
  switch (rule.method) {
    case 'redact': return rule.value ?? null;
    case 'constant': return rule.value;
    case 'hash': return hashValue(key, v);
    case 'fake': return fakeValue(key, rule.fake!, v);
    default: throw new Error(`unknown masking method ${rule.method}`);
  }
}

type Step = { key: string } | { index: number } | { all: true };

export function parseJsonPath(p: string): Step[] {
  const steps: Step[] = [];
  const re = /\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+|\*)\]/g;
  for (const m of p.slice(1).matchAll(re)) {
    if (m[1] !== undefined) steps.push({ key: m[1] });
    else if (m[2] === '*') steps.push({ all: true });
    else steps.push({ index: Number(m[2]) });
  }
  return steps;
}

/**
 * Replaces the values at `steps` in a parsed JSON document with fn(old); returns how many
 * were replaced (0 when the path is not there: that row holds no such field).
 */
export function replaceAtPath(doc: unknown, steps: Step[], fn: (old: unknown) => unknown): number {
  if (steps.length === 0) return 0;
  const [s, ...rest] = steps;
  const children: [Record<string, unknown> | unknown[], string | number][] = [];
  if ('key' in s) {
    if (doc && typeof doc === 'object' && !Array.isArray(doc) && Object.hasOwn(doc, s.key)) children.push([doc as Record<string, unknown>, s.key]);
  } else if (Array.isArray(doc)) {
    if ('all' in s) doc.forEach((_, i) => children.push([doc, i]));
    else if (s.index < doc.length) children.push([doc, s.index]);
  }
  let n = 0;
  for (const [parent, k] of children) {
    const cur = (parent as Record<string | number, unknown>)[k];
    if (rest.length === 0) {
      (parent as Record<string | number, unknown>)[k] = fn(cur);
      n++;
    } else {
      n += replaceAtPath(cur, rest, fn);
    }
  }
  return n;
}

/** A glob (`*` within a path segment, `**` across them, `?` one character) as a RegExp. */
export function globRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === '*' && glob[i + 1] === '*') {
      re += glob[i + 2] === '/' ? '(?:.*/)?' : '.*';
      i += glob[i + 2] === '/' ? 2 : 1;
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/** `rules` named and described for the report, before they are applied. */
export function describeRule(r: MaskRule): string {
  if ('table' in r) return `${r.table}.${r.column}${r.path ? ` ${r.path}` : ''} ${r.method}${r.method === 'fake' ? ` ${r.fake}` : ''}`;
  if ('collection' in r) return `${r.collection} ${r.field} ${r.method}${r.method === 'fake' ? ` ${r.fake}` : ''}`;
  if ('keys' in r) return `keys ${r.keys}${r.field ? ` field ${r.field}` : ''} ${r.method}`;
  return `files ${r.files} ${r.action}`;
}

/** A column rule with its place in the component's list (for names in messages and the report). */
export interface IndexedTableRule { i: number; rule: TableMaskRule }

/**
 * Applies the rules of one table to one row's masked columns (values as the database gave
 * them; JSON columns as text or parsed). Returns the new values of the columns and, per
 * rule, whether it changed this row. A JSON path rule on a value that is not JSON throws
 * (naming the rule): a value the rule cannot read might be the production value itself.
 */
export function maskRow(key: Buffer, rules: IndexedTableRule[], row: Record<string, unknown>, name: (i: number) => string): { values: Record<string, unknown>; changed: boolean[] } {
  const values: Record<string, unknown> = {};
  const changed = rules.map(() => false);
  for (const [k, v] of Object.entries(row)) values[k] = v;
  rules.forEach(({ i, rule }, n) => {
    const before = values[rule.column];
    if (rule.path) {
      if (before === null || before === undefined) return;
      const asText = typeof before === 'string' || Buffer.isBuffer(before) || before instanceof Uint8Array;
      let doc: unknown;
      try {
        doc = asText ? JSON.parse(Buffer.isBuffer(before) || before instanceof Uint8Array ? Buffer.from(before).toString('utf8') : before) : structuredClone(before);
      } catch {
        throw new ConfigError(`${name(i)}: ${rule.table}.${rule.column} holds a value that is not JSON, so ${rule.path} cannot be masked in it`);
      }
      const old = JSON.stringify(doc);
      replaceAtPath(doc, parseJsonPath(rule.path), (x) => maskValue(key, rule, x));
      const now = JSON.stringify(doc);
      if (now !== old) {
        values[rule.column] = asText ? now : doc;
        changed[n] = true;
      }
      return;
    }
    const after = maskValue(key, rule, before);
    if (!sameValue(before, after)) {
      values[rule.column] = after;
      changed[n] = true;
    }
  });
  return { values, changed };
}

function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a === null || b === null || a === undefined || b === undefined) return false;
  return String(a) === String(b);
}

/** Order-independent digest of rows: the sum of each row's SHA-256 (first 128 bits), mod 2^128. */
export class RowDigest {
  private sum = 0n;
  rows = 0;
  add(record: string): void {
    const h = createHash('sha256').update(record).digest();
    this.sum = (this.sum + ((h.readBigUInt64BE(0) << 64n) | h.readBigUInt64BE(8))) & ((1n << 128n) - 1n);
    this.rows++;
  }
  hex(): string {
    return this.sum.toString(16).padStart(32, '0');
  }
}
