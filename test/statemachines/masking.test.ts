// Sanitized restores on the embedded default (real SQLite and files, the real
// state machines and handlers): a drill and a "sandbox": true restore mask what
// the component's rules name; a production restore of the same backup does not.
import { describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { makeFixture, writeTree, type Fixture } from '../helpers/fixture.ts';
import { run } from './helpers.ts';
import { cli } from '../helpers/cli.ts';

const EMAILS = ['ada.lovelace@prod-corp.com', 'grace.hopper@prod-corp.com', 'alan.turing@prod-corp.com'];
const NAMES = ['Ada Lovelace', 'Grace Hopper', 'Alan Turing'];
const TOKENS = ['sk_live_4f9a8b7c6d5e4f3a', 'sk_live_0a1b2c3d4e5f6a7b', 'sk_live_99887766554433aa'];

const MASK = [
  { table: 'users', column: 'email', method: 'hash' },
  { table: 'users', column: 'name', method: 'fake', fake: 'name' },
  { table: 'users', column: 'profile', path: '$.apiToken', method: 'redact', value: 'REDACTED' },
  { table: 'orders', column: 'user_email', method: 'hash' },
];

async function fixture(mask: unknown[] = MASK, extra: Record<string, unknown> = {}): Promise<Fixture & { db: string }> {
  const f = await makeFixture({
    'memory-db': { kind: 'sqlite', path: 'data/memory.db', mask, ...extra },
    docs: { kind: 'files', path: 'data/docs', mask: [{ files: 'secrets/*.env', action: 'replace', content: 'MASKED=1\n' }, { files: '**/*.log', action: 'remove' }] },
  });
  await writeTree(path.join(f.dir, 'data/docs'), {
    'readme.txt': 'public\n', 'secrets/prod.env': `TOKEN=${TOKENS[0]}\n`, 'logs/app.log': `login ${EMAILS[1]}\n`, 'logs/deep/x.log': 'y\n',
  });
  const db = path.join(f.dir, 'data/memory.db');
  const d = new DatabaseSync(db);
  d.exec('PRAGMA journal_mode = WAL');
  d.exec('CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT UNIQUE, name TEXT, profile TEXT, score REAL)');
  d.exec('CREATE TABLE orders (id INTEGER PRIMARY KEY, user_email TEXT, total INTEGER)');
  d.exec('CREATE TABLE facts (id INTEGER PRIMARY KEY, fact TEXT)');
  EMAILS.forEach((e, i) => {
    d.prepare('INSERT INTO users (email, name, profile, score) VALUES (?, ?, ?, ?)').run(e, NAMES[i], JSON.stringify({ apiToken: TOKENS[i], theme: 'dark', n: i }), i * 1.5);
    for (let k = 0; k <= i; k++) d.prepare('INSERT INTO orders (user_email, total) VALUES (?, ?)').run(e, 100 * i + k);
  });
  for (let i = 0; i < 40; i++) d.prepare('INSERT INTO facts (fact) VALUES (?)').run(`fact ${i}`);
  d.close();
  return { ...f, db };
}

/** The restored database file holds none of the production values (its bytes, not only its rows). */
async function expectNoProductionValues(file: string) {
  const bytes = (await fs.readFile(file)).toString('latin1');
  for (const v of [...EMAILS, ...NAMES, ...TOKENS]) expect(bytes.includes(v), `${v} in ${file}`).toBe(false);
  for (const side of ['-wal', '-journal']) {
    const s = await fs.readFile(file + side).catch(() => Buffer.alloc(0));
    for (const v of [...EMAILS, ...TOKENS]) expect(s.toString('latin1').includes(v)).toBe(false);
  }
}

function query(file: string, sql: string): Record<string, unknown>[] {
  const d = new DatabaseSync(file, { readOnly: true });
  try {
    return d.prepare(sql).all() as Record<string, unknown>[];
  } finally {
    d.close();
  }
}

/** A recovery check that copies what validation sees (drills remove their sandbox after passing). */
function copyCheck(to: string) {
  return [{ name: 'copy restored', command: { argv: ['sh', '-c', `cp -r "$MEMVAULT_RESTORED" "${to}"`], expectExitCode: 0, timeoutSeconds: 30 } }];
}

describe('sanitized restores (sqlite, files)', () => {
  it('a drill masks the sandbox: no production value left, counts equal, hashes deterministic with joins kept, other columns equal; the report lists each rule', async () => {
    const seen = path.join(await fs.mkdtemp('/tmp/memvault-mask-seen-'), 'db');
    const f = await fixture(MASK, { checks: copyCheck(seen) });
    expect((await run(f, 'backup-run', { type: 'full', replicate: false })).status).toBe('SUCCEEDED');
    const r = await run(f, 'verify-drill', { readData: 'none' }, { name: 'drill-mask' });
    expect(r.status, r.cause).toBe('SUCCEEDED');
    const out = r.output as any;
    const db = out.restores.find((x: any) => x.component === 'memory-db');
    expect(db.masking.rules.map((m: any) => [m.rule, m.touched, m.unit])).toEqual([
      ['components.memory-db.mask.0', 3, 'rows'],
      ['components.memory-db.mask.1', 3, 'rows'],
      ['components.memory-db.mask.2', 3, 'rows'],
      ['components.memory-db.mask.3', 6, 'rows'],
    ]);
    expect(db.masking.tables.users.columns.sort()).toEqual(['email', 'name', 'profile']);
    expect(db.validation.checks.some((c: any) => /unmasked columns/.test(c.name) && c.ok)).toBe(true);
    expect(db.validation.checks.find((c: any) => /^masking: 4 rule/.test(c.name))?.actual).toMatch(/not compared with the backup/);
    const docs = out.restores.find((x: any) => x.component === 'docs');
    expect(docs.masking.rules.map((m: any) => m.touched)).toEqual([1, 2]);
    expect(docs.masking.files).toEqual({ removed: ['logs/app.log', 'logs/deep/x.log'], replaced: ['secrets/prod.env'] });

    // What validation saw in the sandbox.
    await expectNoProductionValues(seen);
    const users = query(seen, 'SELECT id, email, name, profile, score FROM users ORDER BY id');
    const source = query(f.db, 'SELECT id, email, name, profile, score FROM users ORDER BY id');
    expect(users).toHaveLength(3);
    users.forEach((u, i) => {
      expect(u.email).toMatch(/^[a-z]+\.[a-z]+@[0-9a-f]{8}\.invalid$/);
      expect(String(u.email).split('@')[0].length).toBe(EMAILS[i].split('@')[0].length);
      expect(u.id).toBe(source[i].id);
      expect(u.score).toBe(source[i].score);
      const p = JSON.parse(String(u.profile));
      expect(p).toEqual({ apiToken: 'REDACTED', theme: 'dark', n: i });
    });
    // Joins survive hashing: each order still finds its user.
    expect(query(seen, 'SELECT count(*) AS n FROM orders o JOIN users u ON u.email = o.user_email')[0].n).toBe(6);
    expect(query(seen, 'SELECT total FROM orders ORDER BY id')).toEqual(query(f.db, 'SELECT total FROM orders ORDER BY id'));
    expect(query(seen, 'SELECT * FROM facts ORDER BY id')).toEqual(query(f.db, 'SELECT * FROM facts ORDER BY id'));

    // Deterministic: a second drill hashes the same values the same way.
    const seen2 = path.join(path.dirname(seen), 'db2');
    const f2cfg = { ...f.cfg, components: { ...f.cfg.components, 'memory-db': { ...f.cfg.components['memory-db'], checks: copyCheck(seen2) } } };
    const r2 = await run({ ...f, cfg: f2cfg as never }, 'verify-drill', { readData: 'none' }, { name: 'drill-mask-2' });
    expect(r2.status, r2.cause).toBe('SUCCEEDED');
    expect(query(seen2, 'SELECT email, name FROM users ORDER BY id')).toEqual(query(seen, 'SELECT email, name FROM users ORDER BY id'));
  });

  it('a "sandbox": true restore masks; a production restore of the same backup keeps every value', async () => {
    const f = await fixture();
    expect((await run(f, 'backup-run', { type: 'full', replicate: false })).status).toBe('SUCCEEDED');
    const s = await run(f, 'restore', { mode: 'latest', sandbox: true }, { name: 'sanitized' });
    expect(s.status, s.cause).toBe('SUCCEEDED');
    const root = path.join(f.dir, 'sandbox', 'restore-sanitized');
    await expectNoProductionValues(path.join(root, 'memory-db', 'memory.db'));
    expect(query(path.join(root, 'memory-db', 'memory.db'), 'SELECT count(*) AS n FROM orders')[0].n).toBe(6);
    expect(await fs.readFile(path.join(root, 'docs', 'secrets/prod.env'), 'utf8')).toBe('MASKED=1\n');
    await expect(fs.stat(path.join(root, 'docs', 'logs/app.log'))).rejects.toThrow();
    expect(await fs.readFile(path.join(root, 'docs', 'readme.txt'), 'utf8')).toBe('public\n');
    const comps = (s.output as any).components;
    expect(comps.find((c: any) => c.component === 'memory-db').masking.rules).toHaveLength(4);

    const p = await run(f, 'restore', { mode: 'latest' }, { name: 'production' });
    expect(p.status, p.cause).toBe('SUCCEEDED');
    const prod = path.join(f.dir, 'sandbox', 'restore-production');
    expect(query(path.join(prod, 'memory-db', 'memory.db'), 'SELECT email, name, profile FROM users ORDER BY id'))
      .toEqual(query(f.db, 'SELECT email, name, profile FROM users ORDER BY id'));
    expect(await fs.readFile(path.join(prod, 'docs', 'secrets/prod.env'), 'utf8')).toBe(`TOKEN=${TOKENS[0]}\n`);
    expect(await fs.readFile(path.join(prod, 'docs', 'logs/app.log'), 'utf8')).toBe(`login ${EMAILS[1]}\n`);
    expect((p.output as any).components.every((c: any) => c.masking === null)).toBe(true);
  });

  it('refuses a restore that asks to be both sanitized and in place', async () => {
    const f = await fixture();
    expect((await run(f, 'backup-run', { type: 'full', replicate: false })).status).toBe('SUCCEEDED');
    const r = await run(f, 'restore', { mode: 'latest', components: ['memory-db'], sandbox: true, target: { inPlace: true } });
    expect(r.status).toBe('FAILED');
    expect(r.cause).toMatch(/sandbox: a sanitized sandbox restore .* cannot be in place/);
  });

  it('a rule naming a missing column fails the drill naming the rule, and leaves no unmasked copy', async () => {
    const f = await fixture([MASK[0], { table: 'users', column: 'phone', method: 'redact' }]);
    expect((await run(f, 'backup-run', { type: 'full', replicate: false })).status).toBe('SUCCEEDED');
    const r = await run(f, 'verify-drill', { readData: 'none', components: ['memory-db'] }, { name: 'drill-bad' });
    expect(r.status).toBe('FAILED');
    expect(r.cause).toMatch(/components\.memory-db\.mask\.1 \(users\.phone redact\): table "users" has no column "phone"/);
    await expect(fs.stat(path.join(f.dir, 'sandbox', 'drill-drill-bad', 'memory-db'))).rejects.toThrow();
  });

  it('memvault restore --sanitize masks; without it the same backup restores the production values', async () => {
    const f = await fixture();
    const b = await cli(['backup', '--type', 'full', '--config', f.cfgFile, '--json']);
    expect(b.code, b.stderr).toBe(0);
    const s = await cli(['restore', '--latest', '--target', path.join(f.dir, 'out-sanitized'), '--sanitize', '--config', f.cfgFile]);
    expect(s.code, s.stderr).toBe(0);
    expect(s.stdout).toMatch(/masked memory-db: components\.memory-db\.mask\.0 \(users\.email hash\): 3 rows/);
    expect(s.stdout).toMatch(/masked docs: components\.docs\.mask\.1 \(files \*\*\/\*\.log remove\): 2 files/);
    await expectNoProductionValues(path.join(f.dir, 'out-sanitized', 'memory-db', 'memory.db'));
    expect(await fs.readFile(path.join(f.dir, 'out-sanitized', 'docs', 'secrets/prod.env'), 'utf8')).toBe('MASKED=1\n');
    const p = await cli(['restore', '--latest', '--target', path.join(f.dir, 'out-production'), '--config', f.cfgFile, '--json']);
    expect(p.code, p.stderr).toBe(0);
    expect(query(path.join(f.dir, 'out-production', 'memory-db', 'memory.db'), 'SELECT email, name, profile FROM users ORDER BY id'))
      .toEqual(query(f.db, 'SELECT email, name, profile FROM users ORDER BY id'));
    expect(JSON.parse(p.stdout).components.every((c: any) => c.masking === undefined)).toBe(true);
  });
});
