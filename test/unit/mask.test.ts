// Masking rules: validated per kind in memvault.yaml with the path of each
// problem, and the value methods (keyed, deterministic, format-preserving hash).
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../functions/core/config.ts';
import { kindSchemas } from '../../functions/components/registry.ts';
import { ConfigError } from '../../functions/core/errors.ts';
import { globRegExp, hashValue, maskKeyFrom, maskRow, replaceAtPath, parseJsonPath } from '../../functions/core/mask.ts';
import { redisGlob } from '../../functions/components/redis.ts';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { buildReport } from '../../functions/core/report.ts';
import { renderHtml } from '../../cli/report-html.ts';
import type { Catalog } from '../../functions/core/catalog.ts';

function config(components: Record<string, unknown>) {
  return parseConfig({ vault: { primary: 'file://vault' }, encryption: { key: 'k' }, components }, kindSchemas, '/');
}

function problems(components: Record<string, unknown>): string[] {
  try {
    config(components);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}

describe('mask rules in memvault.yaml', () => {
  it('accepts the rules of each kind that can be masked', () => {
    const cfg = config({
      db: { kind: 'sqlite', path: 'm.db', mask: [{ table: 'users', column: 'email', method: 'hash' }, { table: 'events', column: 'payload', path: '$.user.email', method: 'fake', fake: 'email' }] },
      pg: { kind: 'postgres', url: 'postgres://u@h/db', mask: [{ table: 'app.users', column: 'name', method: 'redact' }, { table: 'users', column: 'plan', method: 'constant', value: 'free' }] },
      cache: { kind: 'redis', url: 'redis://h:6379', mask: [{ keys: 'session:*', method: 'delete' }, { keys: 'user:*', method: 'hash', field: 'email' }] },
      docs: { kind: 'files', path: 'docs', mask: [{ files: '**/*.env', action: 'replace', content: '' }, { files: 'logs/*', action: 'remove' }] },
    });
    expect(cfg.components.db.mask).toHaveLength(2);
    expect(cfg.components.cache.mask).toEqual([{ keys: 'session:*', method: 'delete' }, { keys: 'user:*', method: 'hash', field: 'email' }]);
  });

  it('the example in README.md validates', () => {
    const readme = readFileSync(path.resolve(import.meta.dirname, '../../README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('### Sanitized restores (masking)'));
    const yaml = /```yaml\n([\s\S]*?)```/.exec(section)![1];
    const cfg = config(parseYaml(yaml).components);
    expect(Object.values(cfg.components).map((c) => (c.mask as unknown[]).length)).toEqual([4, 2, 2]);
  });

  it('names the path and the fix of each bad rule', () => {
    const p = problems({
      db: { kind: 'sqlite', path: 'm.db', mask: [
        { table: 'users', column: 'email', method: 'scramble' },
        { table: 'users', column: 'plan', method: 'constant' },
        { table: 'users', column: 'data', path: 'user.email', method: 'hash' },
        { keys: 'session:*', method: 'delete' },
      ] },
    });
    expect(p.find((x) => x.startsWith('components.db.mask.0.method: '))).toBeDefined();
    expect(p).toContain('components.db.mask.1.value: method constant needs a value (e.g. value: "masked")');
    expect(p.find((x) => x.startsWith('components.db.mask.2.path: expected a JSON path like $.user.email'))).toBeDefined();
    // A redis rule on a sqlite component: the table rule's fields are missing, its own are unknown.
    expect(p.filter((x) => x.startsWith('components.db.mask.3')).length).toBeGreaterThan(0);
    expect(p.every((x) => /^components\.db\.mask\.[0-3]/.test(x))).toBe(true);
    expect(problems({ w: { kind: 's3-prefix', bucket: 'b', prefix: 'p/', mask: [{ files: '*', action: 'remove' }] } }))
      .toEqual([expect.stringMatching(/^components\.w\.mask: a s3-prefix component cannot be masked; masking rules apply to sqlite, postgres, vector, redis, files$/)]);
    expect(problems({ c: { kind: 'redis', url: 'redis://h:6379', mask: [{ keys: 'a*', method: 'delete', value: 'x' }] } }))
      .toEqual(['components.c.mask.0.method: method delete takes no field or value']);
    expect(problems({ d: { kind: 'files', path: 'd', mask: [{ files: '../etc/*', action: 'remove' }] } }))
      .toEqual(['components.d.mask.0.files: a glob relative to the component root, without ..']);
  });
});

describe('mask values', () => {
  const key = maskKeyFrom(Buffer.alloc(32, 1));
  const other = maskKeyFrom(Buffer.alloc(32, 2));

  it('hashes deterministically under the key, keeping the format', () => {
    expect(hashValue(key, 'ada.lovelace@prod-corp.com')).toBe(hashValue(key, 'ada.lovelace@prod-corp.com'));
    expect(hashValue(key, 'ada.lovelace@prod-corp.com')).toMatch(/^[a-z]{3}\.[a-z]{8}@[0-9a-f]{8}\.invalid$/);
    expect(hashValue(other, 'ada.lovelace@prod-corp.com')).not.toBe(hashValue(key, 'ada.lovelace@prod-corp.com'));
    expect(hashValue(key, 'Sk-Live 1234')).toMatch(/^[A-Z][a-z]-[A-Z][a-z]{3} \d{4}$/);
    expect(hashValue(key, 'Sk-Live 1234')).not.toBe('Sk-Live 1234');
    const n = hashValue(key, 42) as number;
    expect(Number.isInteger(n) && n >= 1 && n < 2 ** 31).toBe(true);
    expect(hashValue(key, null)).toBeNull();
  });

  it('masks JSON fields by path, every element with [*], and leaves rows without the field alone', () => {
    const doc = { user: { email: 'a@b.co' }, items: [{ token: 't1' }, { token: 't2' }, {}] };
    expect(replaceAtPath(doc, parseJsonPath('$.items[*].token'), () => 'x')).toBe(2);
    expect(doc.items).toEqual([{ token: 'x' }, { token: 'x' }, {}]);
    expect(replaceAtPath(doc, parseJsonPath('$.missing.email'), () => 'x')).toBe(0);
    const m = maskRow(key, [{ i: 0, rule: { table: 't', column: 'c', path: '$.user.email', method: 'redact' } }], { c: JSON.stringify(doc) }, () => 'rule 0');
    expect(JSON.parse(m.values.c as string).user.email).toBeNull();
    expect(m.changed).toEqual([true]);
    expect(() => maskRow(key, [{ i: 0, rule: { table: 't', column: 'c', path: '$.a', method: 'redact' } }], { c: 'not json' }, () => 'components.x.mask.0'))
      .toThrow(/components\.x\.mask\.0: t\.c holds a value that is not JSON/);
  });

  it('matches file and key globs', () => {
    expect(globRegExp('**/*.log').test('a/b/c.log')).toBe(true);
    expect(globRegExp('**/*.log').test('c.log')).toBe(true);
    expect(globRegExp('secrets/*.env').test('secrets/x/y.env')).toBe(false);
    expect(redisGlob('user:*').test('user:1:email')).toBe(true);
    expect(redisGlob('token:?').test('token:12')).toBe(false);
    expect(redisGlob('k[ab]').test('kb')).toBe(true);
  });
});

describe('recovery report', () => {
  it('lists each component\'s mask rules under its drills', () => {
    const cfg = config({
      db: { kind: 'sqlite', path: 'm.db', mask: [{ table: 'users', column: 'email', method: 'hash' }] },
      docs: { kind: 'files', path: 'docs' },
    });
    const catalog = { vault: 'file://v', future: [], damaged: [], chain: [], heads: new Map(), tombstones: new Map(), headKeys: new Map(), entries: [] } as unknown as Catalog;
    const r = buildReport({ cfg, catalog, vaultUrl: 'file://v', vaultCreated: new Date('2026-03-01T00:00:00Z'), metrics: [], metricsFile: null, now: new Date('2026-03-02T00:00:00Z') });
    expect(r.components.map((c) => [c.name, c.masking])).toEqual([['db', ['components.db.mask.0: users.email hash']], ['docs', []]]);
    expect(renderHtml(r)).toContain('drills and sandbox restores mask: components.db.mask.0: users.email hash');
  });
});
