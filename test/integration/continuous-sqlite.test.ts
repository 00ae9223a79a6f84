// Continuous protection of SQLite, end to end with the real CLI: a writer process
// commits into a WAL-mode database (autocheckpoints, TRUNCATE attempts, and the
// shipper's own checkpoints restart the WAL) while `memvault watch` ships frames;
// restores to several moments hold exactly the rows committed by then.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { DatabaseSync } from 'node:sqlite';
import { makeFixture, type Fixture } from '../helpers/fixture.ts';
import { cli, cliSpawn, killTree, stopped } from '../helpers/cli.ts';
import { openVault } from '../../functions/services.ts';
import { listShipped } from '../../functions/core/continuous.ts';

// Inserts `batches` transactions of `rows` rows, `pauseMs` apart; prints {batch, total, t} after each commit.
const WRITER = `
import { DatabaseSync } from 'node:sqlite';
const [file, batches, rows, pauseMs, truncateEvery] = process.argv.slice(1);
const db = new DatabaseSync(file, { timeout: 10000 });
db.exec('PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=20; CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, batch INT, payload TEXT)');
const ins = db.prepare('INSERT INTO t(id, batch, payload) VALUES (?, ?, ?)');
let total = db.prepare('SELECT count(*) AS n FROM t').get().n;
for (let b = 0; b < Number(batches); b++) {
  db.exec('BEGIN');
  for (let i = 0; i < Number(rows); i++) { total++; ins.run(total, b, ('row ' + total + ' ').repeat(40)); }
  db.exec('COMMIT');
  process.stdout.write(JSON.stringify({ batch: b, total, t: Date.now() }) + '\\n');
  if (Number(truncateEvery) && b % Number(truncateEvery) === Number(truncateEvery) - 1) { try { db.exec('PRAGMA wal_checkpoint(TRUNCATE)'); } catch {} }
  await new Promise((r) => setTimeout(r, Number(pauseMs)));
}
db.close();
`;

interface Commit { batch: number; total: number; t: number }

function runWriter(file: string, batches: number, rows: number, pauseMs: number, truncateEvery = 0): { child: ChildProcess; done: Promise<Commit[]> } {
  const child = spawn(process.execPath, ['--input-type=module', '-e', WRITER, file, String(batches), String(rows), String(pauseMs), String(truncateEvery)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => { out += d; });
  child.stderr!.on('data', (d) => { err += d; });
  const done = new Promise<Commit[]>((resolve, reject) => child.on('close', (code) => (code === 0 ? resolve(out.trim().split('\n').map((l) => JSON.parse(l) as Commit)) : reject(new Error(`writer exited ${code}: ${err}`)))));
  return { child, done };
}

function figures(file: string): { n: number; max: number; bad: number; integrity: string } {
  const db = new DatabaseSync(file, { readOnly: true });
  try {
    const integrity = (db.prepare('PRAGMA integrity_check').get() as { integrity_check: string }).integrity_check;
    const r = db.prepare('SELECT count(*) AS n, coalesce(max(id), 0) AS max FROM t').get() as { n: number; max: number };
    let bad = 0;
    for (const row of db.prepare('SELECT id, payload FROM t').iterate() as Iterable<{ id: number; payload: string }>) if (row.payload !== `row ${row.id} `.repeat(40)) bad++;
    return { ...r, bad, integrity };
  } finally {
    db.close();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitShipped(fx: Fixture, component: string, after: number, timeoutMs = 20_000): Promise<void> {
  const vault = await openVault(fx.cfg, 'primary');
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const l = await listShipped(vault, component);
    if (l.frames.some((f) => f.time.getTime() > after)) return;
    await sleep(300);
  }
  throw new Error(`nothing shipped after ${new Date(after).toISOString()}`);
}

describe('continuous sqlite (memvault watch, restore --at)', { timeout: 180_000 }, () => {
  let fx: Fixture;
  let db: string;
  let commits: Commit[] = [];
  let watcher: ReturnType<typeof cliSpawn>;

  beforeAll(async () => {
    fx = await makeFixture({
      memory: { kind: 'sqlite', path: 'memory.db', critical: true, rpo: '6s', continuous: { intervalSeconds: 1, snapshotEvery: '1h', checkpointFrames: 40 } },
    }, { secondary: false });
    db = path.join(fx.dir, 'memory.db');
    const d = new DatabaseSync(db);
    d.exec('PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, batch INT, payload TEXT)');
    d.close();
    watcher = cliSpawn(['watch', '--config', fx.cfgFile]);
    await waitForBase(fx);
    const w = runWriter(db, 7, 60, 3000, 3);
    commits = await w.done;
    await waitShipped(fx, 'memory', commits.at(-1)!.t);
  });

  afterAll(async () => {
    try { killTree(watcher); } catch { /* already gone */ }
  });

  it('restores --at several moments to exactly the rows committed by then, integrity ok', async () => {
    const vault = await openVault(fx.cfg, 'primary');
    const l = await listShipped(vault, 'memory');
    // The WAL restarted (checkpoints by the writer and the shipper) and shipping went on in the same generation.
    expect(new Set(l.frames.map((f) => f.generation)).size).toBe(1);
    expect(Math.max(...l.frames.map((f) => f.index))).toBeGreaterThanOrEqual(2);
    for (const k of [0, 2, 3, 5]) {
      const at = new Date(commits[k].t + 2500);
      const target = path.join(fx.dir, `restore-at-${k}`);
      const r = await cli(['restore', '--config', fx.cfgFile, '--at', at.toISOString(), '--component', 'memory', '--target', target]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const f = figures(path.join(target, 'memory', 'memory.db'));
      expect(f).toEqual({ n: commits[k].total, max: commits[k].total, bad: 0, integrity: 'ok' });
    }
  });

  it('the restore state machine (a console restore by point in time) replays the shipped WAL too', async () => {
    const at = new Date(commits[3].t + 2500);
    const dir = path.join(fx.dir, 'restore-machine');
    const input = { mode: 'point-in-time', at: at.toISOString(), components: ['memory'], target: { dir, outsideSandbox: true } };
    const r = await cli(['run', 'restore', '--config', fx.cfgFile, '--input', JSON.stringify(input)]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(figures(path.join(dir, 'memory', 'memory.db'))).toEqual({ n: commits[3].total, max: commits[3].total, bad: 0, integrity: 'ok' });
  });

  it('restore --latest applies everything shipped and equals the source', async () => {
    const target = path.join(fx.dir, 'restore-latest');
    const r = await cli(['restore', '--config', fx.cfgFile, '--latest', '--component', 'memory', '--target', target]);
    expect(r.code, r.stderr).toBe(0);
    const src = figures(db);
    expect(figures(path.join(target, 'memory', 'memory.db'))).toEqual(src);
    expect(src.n).toBe(commits.at(-1)!.total);
  });

  it('a damaged or missing WAL object stops the restore naming it', async () => {
    const vault = await openVault(fx.cfg, 'primary');
    const l = await listShipped(vault, 'memory');
    // An object holding frames (losing an idle heartbeat loses nothing).
    const full = l.frames.filter((f) => f.last >= f.first);
    const victim = full[Math.floor(full.length / 2)];
    const file = path.join(fx.dir, 'vault-primary', victim.key);
    const orig = await fs.readFile(file);
    const bad = Buffer.from(orig);
    bad[bad.length - 20] ^= 0xff;
    await fs.writeFile(file, bad);
    try {
      const r = await cli(['restore', '--config', fx.cfgFile, '--latest', '--component', 'memory', '--target', path.join(fx.dir, 'restore-damaged')]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(victim.key);
      await expect(fs.access(path.join(fx.dir, 'restore-damaged', 'memory', 'memory.db'))).rejects.toThrow();
      await fs.rm(file);
      const m = await cli(['restore', '--config', fx.cfgFile, '--latest', '--component', 'memory', '--target', path.join(fx.dir, 'restore-missing')]);
      expect(m.code).not.toBe(0);
      expect(m.stderr).toMatch(/objects are missing/);
    } finally {
      await fs.writeFile(file, orig);
    }
  });

  it('the verification drill restores the shipped WAL and reports the measured RPO next to the target', async () => {
    const last = commits.at(-1)!.t;
    const r = await cli(['run', 'verify-drill', '--config', fx.cfgFile, '--json', '--input', '{"readData":"none"}']);
    const out = JSON.parse(r.stdout);
    expect(out.status, r.stdout).toBe('SUCCEEDED');
    const m = out.output.rpo as { component: string; target: string; newestRestorableCommit: string; measuredRpoMs: number; ok: boolean }[];
    expect(m).toHaveLength(1);
    expect(m[0].component).toBe('memory');
    expect(m[0].target).toBe('6s');
    // The drill restored every commit: its recovery point is after the newest commit.
    expect(Date.parse(m[0].newestRestorableCommit)).toBeGreaterThanOrEqual(last);
    expect(m[0].measuredRpoMs).toBeGreaterThanOrEqual(0);
    expect(m[0].measuredRpoMs).toBeLessThan(Date.now() - last + 1000);
    expect(m[0].ok).toBe(m[0].measuredRpoMs <= 6000);
    const restored = (out.output.restores as { component: string; validation: { checks: { name: string; actual: unknown }[] } }[])[0];
    expect(restored.validation.checks.find((c) => c.name === 'tables after the shipped WAL')?.actual).toEqual({ t: commits.at(-1)!.total });
  });

  it('rpo-watch measures continuous components by shipping lag, and alerts naming the component when shipping stops', async () => {
    // Shipping: the base snapshot is older than the 6s rpo, the newest shipped commit is not.
    await fs.rm(fx.alertsFile, { force: true });
    const w = runWriter(db, 1, 5, 0);
    await w.done;
    await sleep(2000);
    const ok = await cli(['run', 'rpo-watch', '--config', fx.cfgFile, '--json']);
    expect(JSON.parse(ok.stdout).status, `${ok.stdout} ${await fs.readFile(fx.alertsFile, 'utf8').catch(() => '')} ${watcher.exitCode}`).toBe('SUCCEEDED');
    // Shipping stops: the lag passes the rpo.
    killTree(watcher);
    await sleep(7000);
    const late = await cli(['run', 'rpo-watch', '--config', fx.cfgFile, '--json']);
    expect(JSON.parse(late.stdout).status).toBe('FAILED');
    const alerts = (await fs.readFile(fx.alertsFile, 'utf8')).trim().split('\n').map((x) => JSON.parse(x) as { subject: string; component?: string; message: string });
    const a = alerts.find((x) => x.subject === 'rpo breached: memory');
    expect(a?.component).toBe('memory');
    expect(a?.message).toMatch(/shipped WAL .* behind|lag/);
  });

  it('objects lost from the end of a generation are named by its head, not restored around silently', async () => {
    // The shipper is stopped (previous test): nothing replaces the head meanwhile.
    const vault = await openVault(fx.cfg, 'primary');
    const l = await listShipped(vault, 'memory');
    const gen = l.frames.at(-1)!.generation;
    const head = l.heads.get(gen)!;
    expect(head).toBe(`wal/memory/${gen}/head`);
    // The tail from the newest object holding frames on (heartbeats after it too).
    const inGen = l.frames.filter((f) => f.generation === gen);
    const from = inGen.findLastIndex((f) => f.last >= f.first);
    const tail = inGen.slice(from);
    const newestLeft = inGen[from - 1];
    const saved = new Map<string, Buffer>();
    for (const k of [...tail.map((f) => f.key), head]) saved.set(k, await fs.readFile(path.join(fx.dir, 'vault-primary', k)));
    try {
      for (const f of tail) await fs.rm(path.join(fx.dir, 'vault-primary', f.key));
      const r = await cli(['restore', '--config', fx.cfgFile, '--latest', '--component', 'memory', '--target', path.join(fx.dir, 'restore-tail-lost')]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(tail.at(-1)!.key);
      expect(r.stderr).toContain('commits shipped after it are lost');
      await expect(fs.access(path.join(fx.dir, 'restore-tail-lost', 'memory', 'memory.db'))).rejects.toThrow();
      // Up to the newest object still there, the restore is whole and goes through.
      const early = await cli(['restore', '--config', fx.cfgFile, '--at', newestLeft.time.toISOString(), '--component', 'memory', '--target', path.join(fx.dir, 'restore-before-tail')]);
      expect(early.code, early.stderr).toBe(0);
      expect(figures(path.join(fx.dir, 'restore-before-tail', 'memory', 'memory.db')).integrity).toBe('ok');
      // The head itself lost too: the objects say they are headed, so that is named.
      await fs.rm(path.join(fx.dir, 'vault-primary', head));
      const h = await cli(['restore', '--config', fx.cfgFile, '--latest', '--component', 'memory', '--target', path.join(fx.dir, 'restore-head-lost')]);
      expect(h.code).not.toBe(0);
      expect(h.stderr).toContain(head);
    } finally {
      for (const [k, b] of saved) await fs.writeFile(path.join(fx.dir, 'vault-primary', k), b);
    }
    const back = await cli(['restore', '--config', fx.cfgFile, '--latest', '--component', 'memory', '--target', path.join(fx.dir, 'restore-tail-back')]);
    expect(back.code, back.stderr).toBe(0);
    expect(figures(path.join(fx.dir, 'restore-tail-back', 'memory', 'memory.db'))).toEqual(figures(db));
  });
});


describe('continuous sqlite: a shipper killed mid-upload; retention', { timeout: 240_000 }, () => {
  let fx: Fixture;
  let db: string;
  const watchers: ReturnType<typeof cliSpawn>[] = [];
  const watch = (env?: Record<string, string>) => {
    const w = cliSpawn(['watch', '--config', fx.cfgFile], { env: { MEMVAULT_LOG: 'info', ...env } });
    let log = '';
    w.stderr.on('data', (d) => {
      log += d;
      if (process.env.DEBUG_WATCH) process.stderr.write(`watch ${w.pid}: ${d}`);
    });
    watchers.push(w);
    /** Resolves with the watcher's log once it contains `text`. */
    const until = async (text: string) => {
      for (let i = 0; i < 600 && !log.includes(text); i++) await sleep(100);
      if (!log.includes(text)) throw new Error(`the watcher never logged "${text}":\n${log}`);
      return log;
    };
    return Object.assign(w, { until });
  };

  beforeAll(async () => {
    fx = await makeFixture({
      memory: { kind: 'sqlite', path: 'memory.db', continuous: { intervalSeconds: 1, snapshotEvery: '3s', checkpointFrames: 40 }, retention: { keepLast: 1 } },
    }, { secondary: false });
    db = path.join(fx.dir, 'memory.db');
    const d = new DatabaseSync(db);
    d.exec('PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, batch INT, payload TEXT)');
    d.close();
  });

  afterAll(() => {
    for (const w of watchers) try { killTree(w); } catch { /* gone */ }
  });

  it('leaves a vault that verifies, and the next shipper resumes the same generation', async () => {
    // The platform's own connection stays open (the last one to close would checkpoint and remove the WAL).
    const app = new DatabaseSync(db);
    app.prepare('SELECT count(*) FROM t').get();
    // Ships one batch, then stops with the second read and not yet stored.
    const first = watch({ MEMVAULT_TEST_PAUSE: 'wal-frames-read:2' });
    await waitForBase(fx);
    await runWriter(db, 2, 30, 2500).done;
    await stopped(first.pid!);
    // Killed while storing: what a killed file:// put leaves is a temporary next to the object.
    const vault = await openVault(fx.cfg, 'primary');
    const gen = (await listShipped(vault, 'memory')).frames[0].generation;
    await fs.mkdir(path.join(fx.dir, 'vault-primary', 'wal', 'memory', gen, '000000-0000000000000000'), { recursive: true });
    await fs.writeFile(path.join(fx.dir, 'vault-primary', 'wal', 'memory', gen, '000000-0000000000000000', '0000000001-0000000009-20261207T000000000Z.frames.tmp-0123456789ab'), Buffer.alloc(100, 7));
    killTree(first);
    const v = await cli(['verify', '--config', fx.cfgFile]);
    expect(v.code, v.stdout + v.stderr).toBe(0);
    const before = (await listShipped(vault, 'memory')).frames.map((f) => f.generation);
    await watch().until('continuous shipping resumed');
    const w = runWriter(db, 3, 30, 800);
    const commits = await w.done;
    await waitShipped(fx, 'memory', commits.at(-1)!.t);
    const after = await listShipped(vault, 'memory');
    expect(new Set([...before, ...after.frames.map((f) => f.generation)]).size).toBe(1);
    const target = path.join(fx.dir, 'restore-resumed');
    const r = await cli(['restore', '--config', fx.cfgFile, '--latest', '--component', 'memory', '--target', target]);
    expect(r.code, r.stderr).toBe(0);
    expect(figures(path.join(target, 'memory', 'memory.db'))).toEqual(figures(db));
    app.close();
  });

  it('retention prunes shipped WAL no kept snapshot needs, and keeps what they need', async () => {
    // The shipper stops; the writer's checkpoints restart the WAL meanwhile: the next shipper starts a new generation.
    for (const w of watchers) try { killTree(w); } catch { /* gone */ }
    await runWriter(db, 4, 60, 0).done;
    await watch().until('new generation');
    const c = await runWriter(db, 8, 30, 1500).done;
    await waitShipped(fx, 'memory', c.at(-1)!.t);
    const vault = await openVault(fx.cfg, 'primary');
    const before = (await listShipped(vault, 'memory')).frames;
    const gens = [...new Set(before.map((f) => f.generation))].sort();
    expect(gens.length).toBe(2);
    for (const w of watchers) try { killTree(w); } catch { /* gone */ }
    const r = await cli(['retention', '--config', fx.cfgFile, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const wal = JSON.parse(r.stdout).wal as { deleted: string[] }[];
    const after = (await listShipped(vault, 'memory')).frames;
    expect(after.length).toBe(before.length - wal[0].deleted.filter((k) => !k.endsWith('/head')).length);
    // The old generation has no kept snapshot: gone. The new one lost only what precedes its oldest kept snapshot.
    expect(after.every((f) => f.generation === gens[1])).toBe(true);
    // Its head went with it; the kept generation's head stayed, naming an object still there.
    const heads = (await listShipped(vault, 'memory')).heads;
    expect([...heads.keys()]).toEqual([gens[1]]);
    expect(wal[0].deleted).toContain(`wal/memory/${gens[0]}/head`);
    expect(wal[0].deleted.some((k) => k.includes(`/${gens[1]}/`)), `${r.stdout}\n${after.map((f) => f.key).join('\n')}`).toBe(true);
    const list = JSON.parse((await cli(['list', '--config', fx.cfgFile, '--json'])).stdout).backups as { id: string; time: string }[];
    expect(list.length).toBe(1);
    // The kept snapshot still restores to the newest commit, and to its own moment.
    const latest = path.join(fx.dir, 'restore-after-retention');
    const l = await cli(['restore', '--config', fx.cfgFile, '--latest', '--component', 'memory', '--target', latest]);
    expect(l.code, l.stderr).toBe(0);
    expect(figures(path.join(latest, 'memory', 'memory.db'))).toEqual(figures(db));
    const oldest = list.map((b) => b.time).sort()[0];
    const early = path.join(fx.dir, 'restore-oldest-kept');
    const e = await cli(['restore', '--config', fx.cfgFile, '--at', new Date(Date.parse(oldest) + 1500).toISOString(), '--component', 'memory', '--target', early]);
    expect(e.code, e.stderr).toBe(0);
    expect(figures(path.join(early, 'memory', 'memory.db')).integrity).toBe('ok');
  });
});

async function waitForBase(fx: Fixture, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const r = await cli(['list', '--config', fx.cfgFile, '--component', 'memory', '--json']);
    if (r.code === 0 && JSON.parse(r.stdout).backups.length > 0) return;
    await sleep(500);
  }
  throw new Error('the watcher took no base snapshot');
}
