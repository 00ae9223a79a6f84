// The crash matrix: the real CLI (a child process) is SIGKILLed at a seeded
// random point of `backup`, `replicate` and `retention` (forget + prune, both
// vaults), a few trials each. The kill lands a random time after the command
// has visibly started on the vault (its lock appears, or its first object
// reaches the DR vault), within the time a complete run of the same command
// took (the first trial of each runs to the end to measure that). After every
// trial:
//   - `verify --read-data` passes on both vaults; what a kill may leave is
//     allowed and counted (unreferenced chunks, temporary files, the dead
//     process's lock), nothing else;
//   - the next backup (and, after replicate, the next replicate) succeeds,
//     and is not blocked by the dead process's lock;
//   - every kept backup restores byte-identical: each is restored for real
//     once per vault (the newest after every trial), and after every trial
//     each kept one is re-proved by the clean read-data verify plus its
//     manifest listing exactly the tree it was taken of.
// Figures are printed at the end; data lost must be 0. MEMVAULT_FAULT_SEED
// replays the kill points (the default seed is fixed).
import { afterAll, describe, expect, it, onTestFailed } from 'vitest';
import { promises as fs, readdirSync, watch } from 'node:fs';
import path from 'node:path';
import { cliSpawn, killTree } from '../helpers/cli.ts';
import { backupComponent } from '../../functions/core/backup.ts';
import { listManifestNames } from '../../functions/core/vault.ts';
import { verifyVault } from '../../functions/core/verify.ts';
import { replicateVaults, retentionRun } from '../../functions/ops.ts';
import { driverFor } from '../../functions/components/registry.ts';
import { silentLogger } from '../../functions/logger.ts';
import type { Side } from '../../functions/services.ts';
import { mutateTree, snapshotTree, type TreeSnapshot } from '../helpers/fault-tree.ts';
import { Figures } from '../helpers/fault-figures.ts';
import { baseSeed } from '../helpers/seeded-random.ts';
import { COMPONENT, type Bed, checkManifestMatches, checkRestorable, cleanVault, makeBed, vaultDir } from './helpers.ts';

const SEED = baseSeed();
const figures = new Figures('crash matrix (SIGKILL of the CLI)', SEED);
afterAll(() => figures.print());

function replayHint(): void {
  onTestFailed(() => {
    process.stderr.write(`\nreplay: MEMVAULT_FAULT_SEED=${SEED} npx vitest run test/fault/crash-matrix.test.ts\n${figures.render()}\n`);
  });
}

/**
 * Trials per command: the first runs to the end, the others are killed. (The test's timeout is
 * generous for a machine shared with other work; alone on 2 cores it takes about a minute.)
 */
const TRIALS: Record<Trial['op'], number> = { backup: 4, replicate: 3, retention: 3 };
// backup: the run to the end, one kill while it sets up, two while it writes.

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Files under a vault whose names mark them temporary (a write cut short). */
async function tmpFiles(dir: string): Promise<number> {
  let n = 0;
  const walk = async (d: string) => {
    for (const e of await fs.readdir(d, { withFileTypes: true }).catch(() => [])) {
      if (e.isDirectory()) await walk(path.join(d, e.name));
      else if (e.name.includes('.tmp-')) n++;
    }
  };
  await walk(dir);
  return n;
}

async function lockFiles(dir: string): Promise<string[]> {
  return (await fs.readdir(path.join(dir, 'locks')).catch(() => [] as string[])).filter((n) => !n.includes('.tmp-'));
}

/** Object keys (packs/, index/ and manifests/) of a vault directory, without temporary files. */
async function objectKeys(dir: string): Promise<Set<string>> {
  const out = new Set<string>();
  const walk = async (rel: string) => {
    for (const e of await fs.readdir(path.join(dir, rel), { withFileTypes: true }).catch(() => [])) {
      const r = `${rel}/${e.name}`;
      if (e.isDirectory()) await walk(r);
      else if (!e.name.includes('.tmp-')) out.add(r);
    }
  };
  await walk('packs');
  await walk('index');
  await walk('manifests');
  return out;
}

/**
 * Notes when a file is first created under `<dir>/packs` (a pack, or the temporary file of
 * one): inotify watches on the pack directories, cheaper than polling them.
 */
function chunkWatch(dir: string): { firstAt: () => number | undefined; close: () => void } {
  let firstAt: number | undefined;
  const watchers: ReturnType<typeof watch>[] = [];
  const root = path.join(dir, 'packs');
  const add = (d: string) => {
    try { watchers.push(watch(d, () => { firstAt ??= Date.now(); })); } catch { /* gone: ignore */ }
  };
  add(root);
  for (const d of readdirSync(root)) add(path.join(root, d));
  return { firstAt: () => firstAt, close: () => { for (const w of watchers) w.close(); } };
}

interface Trial {
  op: 'backup' | 'replicate' | 'retention';
  /** Kill this many ms after the command has started on the vault; undefined: let it finish. */
  killAfterMs?: number;
}

interface TrialResult {
  killed: boolean;
  /** ms from the start signal to the exit (or the kill). */
  activeMs: number;
  /** When it exited (Date.now()). */
  exitAt: number;
  exit: string;
}

/**
 * Runs the CLI command; once `started()` says it has begun on the vault, waits `killAfterMs`
 * and SIGKILLs it (its whole process group), unless it has exited by then.
 */
async function runTrial(bed: Bed, t: Trial, started: () => Promise<boolean>): Promise<TrialResult> {
  const args = t.op === 'backup' ? ['backup', '--type', 'incremental'] : [t.op];
  const child = cliSpawn([...args, '--config', bed.f.cfgFile], { cwd: bed.f.dir });
  let stderr = '';
  child.stderr!.on('data', (d) => { stderr += d; });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.on('close', (code, signal) => r({ code, signal })));
  let done = false;
  void exited.then(() => { done = true; });
  // Wait for the command to start on the vault (or to exit: a fast run the poll missed).
  const deadline = Date.now() + 60_000;
  while (!done && !(await started())) {
    if (Date.now() > deadline) { killTree(child); throw new Error(`${t.op}: did not start within 60 s`); }
    await sleep(3);
  }
  const t0 = Date.now();
  let killed = false;
  if (t.killAfterMs !== undefined && !done) {
    await Promise.race([sleep(t.killAfterMs), exited]);
    if (!done) {
      killTree(child);
      killed = true;
    }
  }
  const { code, signal } = await exited;
  const activeMs = Date.now() - t0;
  if (!killed && code !== 0) throw new Error(`${t.op} exited ${code ?? signal} without being killed (seed ${bed.seed}): ${stderr}`);
  return { killed, activeMs, exitAt: Date.now(), exit: killed ? 'SIGKILL' : `exit ${code}` };
}

/** Records every manifest new since `before` as a backup of `snap`. */
async function adoptNewBackups(bed: Bed, before: Set<string>, snap: TreeSnapshot): Promise<number> {
  let n = 0;
  for (const r of await listManifestNames((await cleanVault(bed)).storage)) {
    if (!before.has(r.id)) { bed.expected.set(r.id, snap); n++; }
  }
  return n;
}

async function catalog(bed: Bed, side: Side): Promise<string[]> {
  return (await listManifestNames((await cleanVault(bed, side)).storage)).map((r) => r.id);
}

/**
 * A backup in-process (backupComponent, as the CLI runs it) of the tree as it is, on the main
 * thread: the CLI trials run the chunk-pool workers, and starting them again in-process for
 * a few MiB costs more than the backup.
 */
async function backupNow(bed: Bed, why: string): Promise<string> {
  const snap = await snapshotTree(bed.tree);
  const vault = await cleanVault(bed, 'primary', { workers: true });
  process.env.MEMVAULT_WORKERS = '0';
  try {
    // lockWaitMs 0: a lock left by a killed process must not hold the next backup back.
    const out = await backupComponent({ cfg: bed.f.cfg, vault, driverFor, log: silentLogger, lockWaitMs: 0 }, COMPONENT, 'incremental');
    bed.expected.set(out.backupId, snap);
    figures.count(`backups in-process succeeded (${why})`);
    return out.backupId;
  } finally {
    delete process.env.MEMVAULT_WORKERS;
  }
}

/**
 * The checks after a trial, on both vaults: verify --read-data passes (unreferenced chunks,
 * temporary files and dead locks are what a kill may leave: counted), and every kept backup's
 * manifest lists exactly its tree: with the clean read-data verify, proof that it restores.
 */
async function checkVaults(bed: Bed, label: string, sides: readonly Side[] = ['primary', 'secondary']): Promise<number> {
  let unreferenced = 0;
  for (const side of sides) {
    const v = await verifyVault(await cleanVault(bed, side), { readData: 'all' });
    if (!v.ok) figures.lost(`${label}: ${side} vault fails verify --read-data: ${[...v.problems.map((p) => `${p.problem} ${p.chunk}`), ...v.damagedManifests.map((d) => d.key)].slice(0, 3).join('; ')}`);
    expect({ ok: v.ok, problems: v.problems, damagedManifests: v.damagedManifests }, `${label}: ${side} verify --read-data (seed ${bed.seed})`)
      .toEqual({ ok: true, problems: [], damagedManifests: [] });
    figures.count('verify --read-data passed after a trial');
    unreferenced += v.unreferencedChunks;
    for (const id of await catalog(bed, side)) {
      expect(await checkManifestMatches(bed, side, id, label), `${label}: ${side} backup ${id} lists its tree`).toEqual([]);
    }
  }
  return unreferenced;
}

/** side:id of the backups restored for real so far. */
const restored = new Set<string>();

/** Restores a backup for real and compares it with its tree. */
async function restoreReal(bed: Bed, side: Side, id: string, label: string): Promise<void> {
  expect(await checkRestorable(bed, side, id, label), `${label}: ${side} backup ${id} restores byte-identical (seed ${bed.seed})`).toEqual([]);
  restored.add(`${side}:${id}`);
}

/** What is in both vaults' directories before a trial: locks and temporary files. */
async function debris(bed: Bed): Promise<{ locks: Set<string>; tmp: number }> {
  const locks = new Set<string>();
  let tmp = 0;
  for (const side of ['primary', 'secondary'] as const) {
    for (const l of await lockFiles(vaultDir(bed, side))) locks.add(`${side}/${l}`);
    tmp += await tmpFiles(vaultDir(bed, side));
  }
  return { locks, tmp };
}

/** Counts what the trial left (temporary files, locks); a run that was not killed must leave no lock. */
async function leftovers(bed: Bed, label: string, killed: boolean, before: { locks: Set<string>; tmp: number }): Promise<void> {
  const after = await debris(bed);
  const newLocks = [...after.locks].filter((l) => !before.locks.has(l));
  figures.count('temporary files left by killed runs (allowed)', Math.max(0, after.tmp - before.tmp));
  figures.count('locks left by killed runs (allowed)', killed ? newLocks.length : 0);
  if (!killed) expect(newLocks, `${label}: a run that finished leaves no lock`).toEqual([]);
}

const killPoints: Record<string, number[]> = {};

// Packs of 256 KiB (not 16 MiB): a backup of the small tree writes several packs and index
// objects, so kill points land between them too (the CLI children inherit it).
process.env.MEMVAULT_PACK_BYTES = String(256 * 1024);

describe('crash matrix: SIGKILL at random points', () => {
  it('backup, replicate and retention killed at seeded random points leave vaults that verify, back up and restore', async () => {
    replayHint();
    const bed = await makeBed('crash matrix', SEED + 900, figures, { files: 150 });
    const kills = bed.rng.fork('kill-points');
    // A first backup and its replica, in-process.
    await backupNow(bed, 'setup');
    await replicateVaults(bed.f.cfg);
    const pDir = vaultDir(bed, 'primary');
    const sDir = vaultDir(bed, 'secondary');
    // A command has started when a lock of its kind appears that was not there before (locks of
    // killed runs stay behind).
    const lockStarted = async (kind: 'backup' | 'prune') => {
      const old = new Set(await lockFiles(pDir));
      return async () => (await lockFiles(pDir)).some((n) => n.startsWith(`${kind}-`) && !old.has(n));
    };

    for (const op of ['backup', 'replicate', 'retention'] as const) {
      let fullRunMs = 0;
      let setupMs = 0;
      // Bring the vaults to a steady state first, so the run to the end does the work of a trial.
      if (op === 'replicate') await replicateVaults(bed.f.cfg);
      if (op === 'retention') await retentionRun(bed.f.cfg);
      for (let i = 0; i < TRIALS[op]; i++) {
        const label = `${op} trial ${i + 1}`;
        let started: () => Promise<boolean>;
        let watcher: ReturnType<typeof chunkWatch> | undefined;
        if (op === 'backup') {
          await mutateTree(bed.tree, bed.rng.fork(`${label}-mutate`), { fraction: 0.35 });
          // Two phases: from the lock (reading the vault, starting workers) to the first chunk
          // written, then storing chunks and the manifest. The run to the end times both; the
          // second trial is killed in the first phase, the others in the second.
          watcher = chunkWatch(pDir);
          const w = watcher;
          started = i === 0 || i === 1 ? await lockStarted('backup') : async () => w.firstAt() !== undefined;
        } else if (op === 'replicate') {
          // A new backup for it to copy; it has started when the first object reaches the DR vault.
          await mutateTree(bed.tree, bed.rng.fork(`${label}-mutate`), { fraction: 0.35 });
          await backupNow(bed, 'setting up replicate trials');
          const dr = await objectKeys(sDir);
          const todo = [...await objectKeys(pDir)].filter((k) => !dr.has(k));
          const dirs = [...new Set(todo.map((k) => path.posix.dirname(k)))];
          const names = new Set(todo.map((k) => path.posix.basename(k)));
          started = async () => {
            for (const d of dirs) {
              for (const n of await fs.readdir(path.join(sDir, d)).catch(() => [] as string[])) if (names.has(n.split('.tmp-')[0])) return true;
            }
            return false;
          };
        } else {
          // A new backup, so retention (keepLast 2) has backups to forget and chunks only they need.
          await mutateTree(bed.tree, bed.rng.fork(`${label}-mutate`), { fraction: 0.35 });
          await backupNow(bed, 'setting up retention trials');
          await replicateVaults(bed.f.cfg);
          started = await lockStarted('prune');
        }
        const snap = await snapshotTree(bed.tree);
        const before = new Set(await catalog(bed, 'primary'));
        const litter = await debris(bed);
        const objects = { primary: await objectKeys(pDir), secondary: await objectKeys(sDir) };
        // The first trial runs to the end: its duration bounds the kill points of the others,
        // drawn one per stratum (early, middle, late) so a few trials still spread over the run.
        const n = TRIALS[op] - 1;
        let killAfterMs = i === 0 ? undefined : Math.floor(((i - 1 + kills.next()) / n) * fullRunMs * 1.1);
        if (op === 'backup' && i === 1) killAfterMs = Math.floor(kills.next() * setupMs);
        if (op === 'backup' && i > 1) killAfterMs = Math.floor(((i - 2 + kills.next()) / (n - 1)) * fullRunMs * 1.1);
        const r = await runTrial(bed, { op, killAfterMs }, started).finally(() => watcher?.close());
        if (i === 0) fullRunMs = Math.max(50, r.activeMs);
        if (op === 'backup' && i === 0) {
          // fullRunMs: the writing phase; setupMs: from the lock to the first chunk.
          const first = watcher!.firstAt() ?? r.exitAt;
          fullRunMs = Math.max(50, r.exitAt - first);
          setupMs = Math.max(10, r.activeMs - fullRunMs);
        }
        figures.outcome(`${op} (CLI) ${i === 0 ? 'run to the end' : r.killed ? 'SIGKILLed' : 'finished before the kill'}`, { ok: true });
        if (r.killed) (killPoints[op] ??= []).push(killAfterMs!);
        const made = await adoptNewBackups(bed, before, snap);
        if (op !== 'backup') expect(made, `${label} makes no backup`).toBe(0);
        const what = `after ${label} (${r.exit}${killAfterMs !== undefined ? `, kill point +${killAfterMs} ms of ~${fullRunMs} ms` : `, ${r.activeMs} ms`})`;
        await leftovers(bed, what, r.killed, litter);
        // Where the kill landed: objects the run wrote or deleted before it.
        const now = { primary: await objectKeys(pDir), secondary: await objectKeys(sDir) };
        const moved = (['primary', 'secondary'] as const).map((side) => {
          const added = [...now[side]].filter((k) => !objects[side].has(k));
          const removed = [...objects[side]].filter((k) => !now[side].has(k));
          const m = (l: string[]) => l.filter((k) => k.startsWith('manifests/')).length;
          return added.length + removed.length === 0 ? '' : `${side} +${added.length - m(added)} pack/index objects +${m(added)} manifests -${removed.length - m(removed)} pack/index objects -${m(removed)} manifests`;
        }).filter(Boolean).join(', ');
        // The vaults the command writes to: verify --read-data, and every kept backup lists its tree.
        const unreferenced = await checkVaults(bed, what, op === 'backup' ? ['primary'] : op === 'replicate' ? ['secondary'] : ['primary', 'secondary']);
        const phase = op !== 'backup' ? `a full run took ~${fullRunMs} ms` : i === 0 ? `setup ~${setupMs} ms, writing ~${fullRunMs} ms` : i === 1 ? `after the lock; setup took ~${setupMs} ms` : `after the first chunk; writing took ~${fullRunMs} ms`;
        figures.note(`${label}: ${r.exit}${killAfterMs !== undefined ? ` at +${killAfterMs} ms` : ''} (${phase}): ${moved || 'nothing written yet'}; verify --read-data passed${unreferenced ? `, ${unreferenced} unreferenced chunks (allowed)` : ''}`);
        // The next backup succeeds (the killed run's lock does not block it) and restores; after
        // replicate and retention, the next replicate completes the DR copy. After a backup trial
        // it backs up the same tree (reusing what the killed run stored); otherwise the tree
        // changes first, so retention always has chunks to prune.
        if (op !== 'backup') await mutateTree(bed.tree, bed.rng.fork(`${label}-mutate-next`), { fraction: 0.35 });
        await backupNow(bed, `after ${op}`);
        if (op === 'replicate') {
          await replicateVaults(bed.f.cfg);
          figures.count('next replicates succeeded (after a replicate trial)');
          const dr = new Set(await catalog(bed, 'secondary'));
          for (const id of await catalog(bed, 'primary')) expect(dr.has(id), `${label}: backup ${id} reached the DR vault`).toBe(true);
        }
        const side = op === 'replicate' ? 'secondary' : 'primary';
        await restoreReal(bed, side, (await catalog(bed, side))[0], `the newest backup after ${label}`);
      }
    }
    // Last: every kept backup of both vaults restored for real (those not restored yet).
    await checkVaults(bed, 'at the end');
    for (const side of ['primary', 'secondary'] as const) {
      for (const id of await catalog(bed, side)) if (!restored.has(`${side}:${id}`)) await restoreReal(bed, side, id, 'at the end');
    }
    expect(Object.values(killPoints).flat().length, 'some trials were killed mid-run').toBeGreaterThan(3);
  }, 600_000);

  it('no data lost', () => {
    replayHint();
    expect(figures.trials).toBeGreaterThan(0);
    expect(figures.dataLost, figures.render()).toEqual([]);
  });
});
