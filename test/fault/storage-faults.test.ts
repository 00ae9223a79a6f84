// Storage faults against every command, at the core level (the functions the
// CLI and the handlers call), with vaults opened over FaultyStorage behind the
// real RetryingStorage and the real files driver on a generated tree:
//
// - 10% and 40% transient faults (500, 503 SlowDown, resets, throttling, lost
//   replies after a put or delete took effect, listings that break off,
//   delays) on every operation and object: init, open, backup (full and
//   incremental; chunk-pool workers and the main-thread path), list, verify,
//   restore (latest and by id), replicate, retention on both vaults. Each
//   command either succeeds with correct results or fails with a retryable
//   named error; it is then retried, as the state machines' Retry does.
// - Reads that return corrupt or truncated bytes: every command that used
//   them fails with an IntegrityError naming the object (verify names it as
//   damage), and nothing wrong is written out (restored files, the DR vault).
// - Damage at rest (a put that stored a flipped bit or a prefix): verify
//   --read-data names every damaged object, restores refuse the backups that
//   need one, the others restore byte-identical.
//
// After every successful backup, replicate and retention, each backup they
// leave is restored from the vault without faults and compared with the tree
// it was taken of. Figures are printed at the end; data lost must be 0.
// Seeds: MEMVAULT_FAULT_SEED replays (the default is fixed).
import { afterAll, afterEach, describe, expect, it, onTestFailed, onTestFinished } from 'vitest';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { backupComponent, type BackupOutcome } from '../../functions/core/backup.ts';
import type { BackupType } from '../../functions/core/manifest.ts';
import { listManifestNames, Vault } from '../../functions/core/vault.ts';
import { verifyVault, type VerifyReport } from '../../functions/core/verify.ts';
import { replicate } from '../../functions/core/replicate.ts';
import { applyRetention } from '../../functions/core/retention.ts';
import { planRestore, restorePlan, type RestoreSelector } from '../../functions/core/restore.ts';
import { IntegrityError, MemvaultError, NotFoundError, isRetryable } from '../../functions/core/errors.ts';
import { keyProvider } from '../../functions/services.ts';
import { driverFor } from '../../functions/components/registry.ts';
import { silentLogger } from '../../functions/logger.ts';
import { runBackups } from '../../functions/ops.ts';
import { FileAlertSink } from '../../functions/adapters/alerts/local.ts';
import { FileStorage } from '../../functions/adapters/storage/file.ts';
import { RetryingStorage } from '../../functions/adapters/storage/retrying.ts';
import type { Storage } from '../../functions/core/ports.ts';
import { FaultyStorage, type FaultRule } from '../helpers/faulty-storage.ts';
import { compareTree, mutateTree, snapshotTree, type TreeSnapshot } from '../helpers/fault-tree.ts';
import { Figures } from '../helpers/fault-figures.ts';
import { baseSeed } from '../helpers/seeded-random.ts';
import {
  COMPONENT, FAST_RETRY, type Bed, checkAllRestorable, checkManifestMatches, checkNoWrongBytes, checkRestorable, cleanVault,
  faultyStorage, makeBed, newTarget, openFaultyVault, restoreById, vaultDir,
} from './helpers.ts';

const SEED = baseSeed();
const figures = new Figures('storage faults against every command (core level)', SEED);
afterAll(() => figures.print());
afterEach(() => { delete process.env.MEMVAULT_WORKERS; });

function replayHint(file = 'test/fault/storage-faults.test.ts'): void {
  onTestFailed(() => {
    process.stderr.write(`\nreplay: MEMVAULT_FAULT_SEED=${SEED} npx vitest run ${file}\n${figures.render()}\n`);
  });
}

/** Errors a transient storage fault may legitimately end a command with (after the retries). */
const RETRYABLE_NAMES = new Set(['TransientStorageError', 'ThrottledError', 'LockedError']);
/** Command-level retries, as the state machines' Retry on those errors. */
const OP_TRIES = 8;
/** Per test: generous for a machine shared with other work (alone on 2 cores each takes seconds). */
const TIMEOUT = 300_000;

/** Transient faults on every operation and object at `rate`. */
function transientRules(rate: number): FaultRule[] {
  return [
    { ops: ['list'], rate, kinds: { transient: 2, truncate: 2, throttle: 1, delay: 1 } },
    { rate, kinds: { transient: 4, throttle: 1, 'lost-reply': 2, delay: 2 } },
  ];
}

function errorName(err: unknown): string {
  return err instanceof Error ? err.name : typeof err;
}

/**
 * Runs a command until it succeeds, retrying it (up to OP_TRIES) when it fails with a
 * retryable named error. Any other failure fails the test, naming the command and the seed.
 */
async function attempt<T>(bed: Bed, op: string, fn: (i: number) => Promise<T>, o: { allowed?: Set<string>; tries?: number } = {}): Promise<T> {
  const allowed = o.allowed ?? RETRYABLE_NAMES;
  for (let i = 1; ; i++) {
    try {
      const v = await fn(i);
      figures.outcome(op, { ok: true });
      return v;
    } catch (err) {
      figures.outcome(op, { ok: false, error: errorName(err) });
      if (!(err instanceof MemvaultError) || !allowed.has(err.name)) {
        throw new Error(`${bed.name}: ${op} (try ${i}) failed with ${errorName(err)}: ${(err as Error).message}; expected success or one of ${[...allowed].join(', ')} (seed ${bed.seed})`, { cause: err });
      }
      if (!isRetryable(err) || i >= (o.tries ?? OP_TRIES)) {
        throw new Error(`${bed.name}: ${op} did not succeed in ${i} tries; last ${err.name}: ${err.message} (seed ${bed.seed})`, { cause: err });
      }
    }
  }
}

async function catalogIds(bed: Bed, side: 'primary' | 'secondary'): Promise<string[]> {
  return (await listManifestNames((await cleanVault(bed, side)).storage)).map((r) => r.id).sort();
}

/**
 * A backup under faults, retried until it succeeds. Every manifest that appears maps to the
 * tree as it is now (a try reported failed may still have written its manifest); the backup
 * reported successful is restored from a clean read at once.
 */
async function faultyBackup(bed: Bed, vault: Vault, type: BackupType): Promise<BackupOutcome> {
  const snap = await snapshotTree(bed.tree);
  const before = new Set(await catalogIds(bed, 'primary'));
  const out = await attempt(bed, `backup ${type}`, () =>
    backupComponent({ cfg: bed.f.cfg, vault, driverFor, log: silentLogger, lockWaitMs: 0 }, COMPONENT, type));
  for (const id of await catalogIds(bed, 'primary')) {
    if (before.has(id)) continue;
    bed.expected.set(id, snap);
    if (id !== out.backupId) {
      figures.count('backups written but reported failed (a later step of the try failed)');
    }
  }
  expect(bed.expected.get(out.backupId), `${bed.name}: the successful backup ${out.backupId} is in the catalog (seed ${bed.seed})`).toBeDefined();
  expect(await checkRestorable(bed, 'primary', out.backupId, `backup ${type} reported successful`)).toEqual([]);
  return out;
}

/** A restore under faults into fresh targets until one succeeds: byte-identical; failed tries leave no wrong bytes. */
async function faultyRestore(bed: Bed, vault: Vault, sel: RestoreSelector, label: string): Promise<void> {
  await attempt(bed, label, async () => {
    const target = newTarget(bed);
    const plan = await planRestore(vault, sel, [COMPONENT], [COMPONENT]);
    const expected = bed.expected.get(plan.items[0].ref.id)!;
    expect(expected, `${bed.name}: ${label} chose ${plan.items[0].ref.id}, a backup this test did not make`).toBeDefined();
    try {
      const r = await restorePlan({ cfg: bed.f.cfg, vault, driverFor, log: silentLogger }, plan, target, false);
      const problems = await compareTree(path.join(target, COMPONENT), expected);
      if (problems.length > 0 || !r.ok) figures.lost(`${bed.name}: ${label} reported success with wrong data: ${problems.slice(0, 3).join('; ')}`);
      expect(problems, `${bed.name}: ${label} restored bytes equal the originals (seed ${bed.seed})`).toEqual([]);
      expect(r.ok).toBe(true);
      figures.count('restores under faults byte-identical');
    } catch (err) {
      if (err instanceof MemvaultError) {
        expect(await checkNoWrongBytes(bed, target, expected, `${label} failed (${err.name})`), `${bed.name}: a failed ${label} leaves no wrong bytes`).toEqual([]);
      }
      throw err;
    } finally {
      await fs.rm(target, { recursive: true, force: true });
    }
  });
}

function expectCleanVerify(bed: Bed, r: VerifyReport, what: string): void {
  expect({ ok: r.ok, problems: r.problems, damagedManifests: r.damagedManifests }, `${bed.name}: ${what} (seed ${bed.seed})`)
    .toEqual({ ok: true, problems: [], damagedManifests: [] });
}

/** The open-or-init that `memvault init` does, on faulty storage. */
async function openOrInit(bed: Bed, storage: Storage): Promise<Vault> {
  const key = await keyProvider(bed.f.cfg, 'primary');
  try {
    return await Vault.open(storage, key);
  } catch (err) {
    if (!(err instanceof NotFoundError)) throw err;
    return Vault.init(storage, [key]);
  }
}

/** Every command in order, on vaults whose storage fails `rate` of the calls transiently. */
async function transientScenario(name: string, rate: number, seed: number): Promise<void> {
  const bed = await makeBed(name, seed, figures);
  const rules = transientRules(rate);

  // init: a third vault created on faulty storage opens cleanly afterwards.
  const fresh = path.join(bed.f.dir, 'vault-fresh');
  const freshFaulty = figures.track(new FaultyStorage(new FileStorage(fresh), { seed: seed + 1, rules }));
  const made = await attempt(bed, 'init', () => openOrInit(bed, new RetryingStorage(freshFaulty, FAST_RETRY)));
  const reopened = await Vault.open(new FileStorage(fresh), await keyProvider(bed.f.cfg, 'primary'));
  expect(reopened.id).toBe(made.id);

  const p = faultyStorage(bed, 'primary', rules, { seed: seed + 2 });
  const s = faultyStorage(bed, 'secondary', rules, { seed: seed + 3 });
  const vault = await attempt(bed, 'open', () => openFaultyVault(bed, 'primary', p.storage));

  const b1 = await faultyBackup(bed, vault, 'full');
  const files = (await (await cleanVault(bed)).readManifest(b1.manifestKey)).entries.filter((e) => e.type === 'file');
  expect(files.length).toBeGreaterThan(250);
  expect(files.some((e) => (e.chunks?.length ?? 0) >= 2), 'some file spans several chunks').toBe(true);

  await mutateTree(bed.tree, bed.rng.fork('mutate-1'));
  const b2 = await faultyBackup(bed, vault, 'incremental');
  expect(b2.parent).toBe(b1.backupId);
  expect(b2.stats.bytesUnchanged).toBeGreaterThan(0);

  const listed = await attempt(bed, 'list', () => listManifestNames(vault.storage));
  expect(listed.map((r) => r.id).sort()).toEqual(await catalogIds(bed, 'primary'));

  const meta = await attempt(bed, 'verify', () => verifyVault(vault));
  expectCleanVerify(bed, meta, 'verify under transient faults finds no damage');
  const full = await attempt(bed, 'verify --read-data', () => verifyVault(vault, { readData: 'all' }));
  expectCleanVerify(bed, full, 'verify --read-data under transient faults finds no damage');
  expect(full.chunksRead).toBe(full.chunksReferenced);
  expect(full.manifests).toBe(bed.expected.size);

  await faultyRestore(bed, vault, { mode: 'latest' }, 'restore --latest');
  await faultyRestore(bed, vault, { mode: 'backup', backupId: b1.backupId }, 'restore --backup');

  // replicate: the DR vault ends with every backup, each restorable from there.
  const rep = await attempt(bed, 'replicate', async () => replicate(vault, await openFaultyVault(bed, 'secondary', s.storage)));
  expect(rep.manifestsCopied + rep.alreadyPresent).toBeGreaterThan(0);
  expect(await catalogIds(bed, 'secondary')).toEqual(await catalogIds(bed, 'primary'));
  expectCleanVerify(bed, await verifyVault(await cleanVault(bed, 'secondary'), { readData: 'all' }), 'the DR vault verifies after replicate');
  expect(await checkManifestMatches(bed, 'secondary', b1.backupId, 'replicate reported successful')).toEqual([]);
  expect(await checkRestorable(bed, 'secondary', b2.backupId, 'replicate reported successful')).toEqual([]);

  await mutateTree(bed.tree, bed.rng.fork('mutate-2'));
  const b3 = await faultyBackup(bed, vault, 'incremental');

  // retention (keepLast 2): forgets the first backup, prunes what nothing references.
  const ret = await attempt(bed, 'retention', () => applyRetention(vault, { [COMPONENT]: { keepLast: 2 } }));
  expect(await catalogIds(bed, 'primary')).toEqual([b2.backupId, b3.backupId].sort());
  expect(ret.kept).toBe(2);
  const afterPrune = await verifyVault(await cleanVault(bed), { readData: 'all' });
  expectCleanVerify(bed, afterPrune, 'the vault verifies after retention');
  // Prune deletes or repacks packs that are mostly unreferenced; a pack mostly live keeps its few dead chunks.
  expect(afterPrune.unreferencedPacks).toBe(0);
  expect(afterPrune.unreferencedChunks).toBeLessThan(afterPrune.chunksInVault / 2);
  for (const b of [b2, b3]) expect(await checkManifestMatches(bed, 'primary', b.backupId, 'retention reported successful')).toEqual([]);

  // The DR side: replicate the new backup, then retention there too.
  await attempt(bed, 'replicate', async () => replicate(vault, await openFaultyVault(bed, 'secondary', s.storage)));
  const dr = await attempt(bed, 'open', () => openFaultyVault(bed, 'secondary', s.storage));
  await attempt(bed, 'retention', () => applyRetention(dr, { [COMPONENT]: { keepLast: 2 } }));
  expect(await catalogIds(bed, 'secondary')).toEqual([b2.backupId, b3.backupId].sort());
  expectCleanVerify(bed, await verifyVault(await cleanVault(bed, 'secondary'), { readData: 'all' }), 'the DR vault verifies after retention');
  expect(await checkManifestMatches(bed, 'secondary', b2.backupId, 'replicate and retention reported successful')).toEqual([]);
  expect(await checkRestorable(bed, 'secondary', b3.backupId, 'replicate and retention reported successful')).toEqual([]);

  // Hundreds of calls each time (restores read small files' chunks in batches, so a restore is a
  // few dozen ranged reads rather than one per file).
  expect(p.faulty.totalInjected + s.faulty.totalInjected, 'faults were injected').toBeGreaterThan(rate >= 0.4 ? 200 : 40);
  figures.count(`${name}: faults injected`, p.faulty.totalInjected + s.faulty.totalInjected + freshFaulty.totalInjected);
}

describe('transient storage faults, every command', () => {
  it('10% of calls fail, everything on the main thread (MEMVAULT_WORKERS=0): each command succeeds with correct results or fails with a retryable named error', async () => {
    replayHint();
    process.env.MEMVAULT_WORKERS = '0';
    await transientScenario('transient 10% (main thread)', 0.1, SEED);
  }, TIMEOUT);

  it('40% of calls fail, with chunk-pool workers (their chunks stored by the main thread): the same', async () => {
    replayHint();
    await transientScenario('transient 40% (workers)', 0.4, SEED + 100);
  }, TIMEOUT);
});

/** A backup without injected faults (setting up a trial); its tree is recorded. */
async function cleanBackup(bed: Bed, type: BackupType): Promise<BackupOutcome> {
  const snap = await snapshotTree(bed.tree);
  const out = await backupComponent({ cfg: bed.f.cfg, vault: await cleanVault(bed), driverFor, log: silentLogger }, COMPONENT, type);
  bed.expected.set(out.backupId, snap);
  return out;
}

/** Runs a command once; returns what it returned or threw. */
async function settle<T>(fn: () => Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: Error }> {
  try {
    return { ok: true, value: await fn() };
  } catch (error) {
    return { ok: false, error: error as Error };
  }
}

describe('permanent storage faults', () => {
  it('each command fails at once with the named error, naming the object, and leaves both vaults consistent', async () => {
    replayHint();
    const bed = await makeBed('permanent faults', SEED + 400, figures, { files: 150 });
    const b1 = await cleanBackup(bed, 'full');
    await replicate(await cleanVault(bed), await cleanVault(bed, 'secondary'));
    await mutateTree(bed.tree, bed.rng.fork('mutate-1'));
    const b2 = await cleanBackup(bed, 'incremental');

    /** One command against storage that fails `rule` permanently; it must throw PermanentError, untried again. */
    const fails = async (op: string, side: 'primary' | 'secondary', rule: FaultRule, fn: (vault: Vault, storage: Storage) => Promise<unknown>) => {
      let retries = 0;
      const { faulty, storage } = faultyStorage(bed, side, [rule], { seed: bed.seed + op.length, retry: { ...FAST_RETRY, sleep: async () => { retries++; } } });
      faulty.pause();
      const vault = await openFaultyVault(bed, side, storage);
      faulty.resume();
      const r = await settle(() => fn(vault, storage));
      figures.outcome(`${op} (permanent fault)`, r.ok ? { ok: true } : { ok: false, error: r.error.name });
      const injected = faulty.log.filter((f) => f.kind === 'permanent');
      expect(injected.length, `${op}: a permanent fault was injected (seed ${bed.seed})`).toBeGreaterThan(0);
      expect(r.ok ? 'succeeded' : r.error.name, `${op} under a permanent fault (seed ${bed.seed})`).toBe('PermanentError');
      const err = (r as { error: Error }).error;
      expect(injected.some((f) => err.message.includes(f.key)), `${op}: the error names the object: ${err.message}`).toBe(true);
      expect(retries, `${op}: a permanent error is not retried`).toBe(0);
      figures.count('permanent faults surfaced as PermanentError naming the object');
      return err;
    };

    await fails('open', 'primary', { ops: ['get'], prefixes: ['vault.json'], rate: 1, kinds: { permanent: 1 } }, (_v, s) => openFaultyVault(bed, 'primary', s as RetryingStorage));
    await fails('list', 'primary', { ops: ['list'], prefixes: ['manifests/'], rate: 1, kinds: { permanent: 1 } }, (_v, s) => listManifestNames(s));
    await fails('verify --read-data', 'primary', { ops: ['get'], prefixes: ['packs/'], rate: 0.05, kinds: { permanent: 1 } }, (v) => verifyVault(v, { readData: 'all' }));

    const target = newTarget(bed);
    await fails('restore --latest', 'primary', { ops: ['get'], prefixes: ['packs/'], rate: 0.05, kinds: { permanent: 1 } }, async (v) =>
      restorePlan({ cfg: bed.f.cfg, vault: v, driverFor, log: silentLogger }, await planRestore(v, { mode: 'latest' }, [COMPONENT], [COMPONENT]), target, false));
    expect(await checkNoWrongBytes(bed, target, bed.expected.get(b2.backupId)!, 'restore failed (PermanentError)')).toEqual([]);

    await mutateTree(bed.tree, bed.rng.fork('mutate-2'));
    const before = await catalogIds(bed, 'primary');
    await fails('backup incremental', 'primary', { ops: ['put'], prefixes: ['packs/'], rate: 1, kinds: { permanent: 1 } }, (v) =>
      backupComponent({ cfg: bed.f.cfg, vault: v, driverFor, log: silentLogger, lockWaitMs: 0 }, COMPONENT, 'incremental'));
    expect(await catalogIds(bed, 'primary'), 'a failed backup leaves no backup').toEqual(before);

    // replicate: the DR vault lacks b2; its puts fail.
    await fails('replicate', 'secondary', { ops: ['put'], prefixes: ['packs/', 'index/', 'manifests/'], rate: 0.5, kinds: { permanent: 1 } }, async (_v, dst) =>
      replicate(await cleanVault(bed), await openFaultyVault(bed, 'secondary', dst as RetryingStorage)));
    expectCleanVerify(bed, await verifyVault(await cleanVault(bed, 'secondary'), { readData: 'all' }), 'the DR vault verifies after a failed replicate');

    const b3 = await cleanBackup(bed, 'incremental');
    await fails('retention', 'primary', { ops: ['delete'], prefixes: ['manifests/'], rate: 1, kinds: { permanent: 1 } }, (v) =>
      applyRetention(v, { [COMPONENT]: { keepLast: 2 } }));
    expectCleanVerify(bed, await verifyVault(await cleanVault(bed), { readData: 'all' }), 'the vault verifies after a failed retention');
    // Forgetting b1 failed at its manifest's deletion (pack deletions failing part-way are in
    // test/integration/packs.test.ts, crashed at every step): every backup is still there.
    expect(await catalogIds(bed, 'primary')).toEqual([b1.backupId, b2.backupId, b3.backupId].sort());
    for (const b of [b2, b3]) expect(await checkManifestMatches(bed, 'primary', b.backupId, 'retention failed part-way')).toEqual([]);
    expect(await checkRestorable(bed, 'primary', b3.backupId, 'after permanent faults')).toEqual([]);
    expect(b1.backupId).not.toBe(b2.backupId);
  }, TIMEOUT);
});

/** Faults that hand the caller wrong bytes: corrupt or truncated reads of chunks and manifests, plus transient faults. */
function badReadRules(chunkRate: number, manifestRate: number): FaultRule[] {
  return [
    { ops: ['get'], prefixes: ['manifests/'], rate: manifestRate, kinds: { corrupt: 2, truncate: 1 } },
    { ops: ['get'], prefixes: ['packs/'], rate: chunkRate, kinds: { corrupt: 2, truncate: 1 } },
    ...transientRules(0.1),
  ];
}

const BAD_READ_ALLOWED = new Set(['IntegrityError', ...RETRYABLE_NAMES]);

/**
 * Runs one command under bad reads and checks what it did with them: if it failed, the error
 * is named and an IntegrityError names an object whose read was bad (never another); if it
 * used a bad read and still succeeded, that is counted (the callers' checks then show whether
 * wrong data got out). Returns the outcome and the keys read bad.
 */
async function underBadReads<T>(bed: Bed, op: string, storages: FaultyStorage[], fn: () => Promise<T>) {
  const marks = storages.map((s) => s.log.length);
  const r = await settle(fn);
  const bad = new Set(storages.flatMap((s, i) => s.since(marks[i]).filter((f) => f.op === 'get' && (f.kind === 'corrupt' || f.kind === 'truncate')).map((f) => f.key)));
  figures.outcome(`${op} (bad reads)`, r.ok ? { ok: true } : { ok: false, error: r.error.name });
  if (!r.ok) {
    expect(r.error instanceof MemvaultError && BAD_READ_ALLOWED.has(r.error.name), `${bed.name}: ${op} failed with ${r.error.name}: ${r.error.message} (seed ${bed.seed})`).toBe(true);
    if (r.error instanceof IntegrityError) {
      expect(r.error.objectKey && bad.has(r.error.objectKey), `${bed.name}: ${op}: the IntegrityError names an object read bad (${r.error.objectKey}; bad: ${[...bad].join(', ')})`).toBe(true);
      expect(r.error.message).toContain(r.error.objectKey!.split('/').at(-1)!);
      figures.count('bad reads: commands stopped by an IntegrityError naming the object');
    } else if (bad.size > 0) {
      figures.count('bad reads: commands stopped first by a transient fault');
    }
  } else if (bad.size > 0 && op !== 'verify --read-data') {
    figures.count(`bad reads: ${op} succeeded after reading wrong bytes`);
  }
  return { r, bad };
}

describe('reads that return wrong bytes', () => {
  it('restore, verify, backup and retention fail naming the object, or succeed with correct results; nothing wrong is written', async () => {
    replayHint();
    const bed = await makeBed('bad reads', SEED + 500, figures, { files: 150 });
    await cleanBackup(bed, 'full');
    await mutateTree(bed.tree, bed.rng.fork('mutate-1'));
    await cleanBackup(bed, 'incremental');
    const p = faultyStorage(bed, 'primary', badReadRules(0.005, 0.25), { seed: bed.seed + 1 });
    p.faulty.pause();
    const vault = await openFaultyVault(bed, 'primary', p.storage);
    p.faulty.resume();

    let restoredOk = 0;
    for (let i = 0; i < 4; i++) {
      const target = newTarget(bed);
      const latest = (await listManifestNames((await cleanVault(bed)).storage))[0];
      const expected = bed.expected.get(latest.id)!;
      const { r } = await underBadReads(bed, 'restore --latest', [p.faulty], async () =>
        restorePlan({ cfg: bed.f.cfg, vault, driverFor, log: silentLogger }, await planRestore(vault, { mode: 'latest' }, [COMPONENT], [COMPONENT]), target, false));
      if (r.ok) {
        const problems = await compareTree(path.join(target, COMPONENT), expected);
        if (problems.length > 0) figures.lost(`${bed.name}: restore reported success with wrong bytes: ${problems.slice(0, 3).join('; ')}`);
        expect(problems).toEqual([]);
        restoredOk++;
      } else {
        expect(await checkNoWrongBytes(bed, target, expected, `restore failed (${r.error.name})`)).toEqual([]);
      }
    }

    for (let i = 0; i < 2; i++) {
      const { r, bad } = await underBadReads(bed, 'verify --read-data', [p.faulty], () => verifyVault(vault, { readData: 'all' }));
      if (!r.ok) continue;
      // An object that fails its checks is read once more (a bad read is not damage at rest), so verify
      // names only objects whose reads were bad, never a healthy one (it names one read bad twice running).
      const named = new Set([...r.value.problems.map((x) => x.objectKey ?? x.chunk), ...r.value.damagedPacks.map((d) => d.key), ...r.value.damagedIndexes.map((d) => d.key), ...r.value.damagedManifests.map((d) => d.key)]);
      for (const k of named) expect(bad.has(k), `${bed.name}: verify named ${k}, whose reads were all good (seed ${bed.seed})`).toBe(true);
      expect(r.value.ok).toBe(named.size === 0 && r.value.chainProblems.length === 0);
      figures.count('bad reads: absorbed by a second read', bad.size - named.size);
      figures.count('bad reads: named by verify --read-data', named.size);
    }

    for (let i = 0; i < 2; i++) {
      await mutateTree(bed.tree, bed.rng.fork(`mutate-b${i}`));
      const snap = await snapshotTree(bed.tree);
      const before = new Set(await catalogIds(bed, 'primary'));
      const { r } = await underBadReads(bed, 'backup incremental', [p.faulty], () =>
        backupComponent({ cfg: bed.f.cfg, vault, driverFor, log: silentLogger, lockWaitMs: 0 }, COMPONENT, 'incremental'));
      for (const id of await catalogIds(bed, 'primary')) if (!before.has(id)) bed.expected.set(id, snap);
      if (r.ok) expect(await checkRestorable(bed, 'primary', r.value.backupId, 'backup reported successful under bad reads')).toEqual([]);
    }

    for (let i = 0; i < 2; i++) {
      await underBadReads(bed, 'retention', [p.faulty], () => applyRetention(vault, { [COMPONENT]: { keepLast: 2 } }));
      expectCleanVerify(bed, await verifyVault(await cleanVault(bed), { readData: 'all' }), 'the vault verifies after retention under bad reads');
      for (const id of await catalogIds(bed, 'primary')) expect(await checkManifestMatches(bed, 'primary', id, 'retention under bad reads')).toEqual([]);
    }

    // The stored objects were never changed by a bad read: the vault verifies clean, the newest backup restores.
    expectCleanVerify(bed, await verifyVault(await cleanVault(bed), { readData: 'all' }), 'the vault verifies after every bad read');
    const newest = (await listManifestNames((await cleanVault(bed)).storage))[0];
    expect(await checkRestorable(bed, 'primary', newest.id, 'after bad reads')).toEqual([]);
    expect(p.faulty.badReads.size, 'bad reads were injected').toBeGreaterThan(1);
    figures.count('bad reads injected', p.faulty.stats.byOp.get.corrupt! + p.faulty.stats.byOp.get.truncate!);
    figures.count('restores under bad reads that succeeded byte-identical', restoredOk);
  }, TIMEOUT);

  it('replicate never copies wrong bytes into the DR vault', async () => {
    replayHint();
    const bed = await makeBed('bad reads (replicate)', SEED + 600, figures, { files: 150 });
    await cleanBackup(bed, 'full');
    await mutateTree(bed.tree, bed.rng.fork('mutate-1'));
    await cleanBackup(bed, 'incremental');
    const key = await keyProvider(bed.f.cfg, 'primary');
    const { secret, vault: clean } = await Vault.openWithSecret((await cleanVault(bed)).storage, key);
    const problems: string[] = [];
    for (let i = 0; i < 3; i++) {
      // A fresh replica each trial, so every object is copied (and read) once.
      const dir = path.join(bed.f.dir, `replica-${i}`);
      await Vault.init(new FileStorage(dir), [key], { secret, doc: clean.doc });
      const src = faultyStorage(bed, 'primary', badReadRules(0.005, 0.25), { seed: bed.seed + 10 + i });
      const dst = figures.track(new FaultyStorage(new FileStorage(dir), { seed: bed.seed + 20 + i, rules: transientRules(0.1) }));
      const { r, bad } = await underBadReads(bed, 'replicate', [src.faulty], async () => replicate(await Vault.open(src.storage, key), await Vault.open(new RetryingStorage(dst, FAST_RETRY), key)));
      const v = await verifyVault(await Vault.open(new FileStorage(dir), key), { readData: 'all' });
      const written = [...v.problems.map((x) => x.objectKey ?? x.chunk), ...v.damagedPacks.map((d) => d.key), ...v.damagedIndexes.map((d) => d.key), ...v.damagedManifests.map((d) => d.key)];
      for (const k of written) {
        const what = `${bed.name}: replicate ${r.ok ? 'reported success' : `failed (${r.error.name})`} and left ${k} corrupt in the DR vault (its read returned wrong bytes; seed ${bed.seed}, trial ${i})`;
        figures.lost(what);
        problems.push(what);
      }
      figures.count('replicate trials under bad reads', 1);
      figures.count('replicate: bad reads during the copy', bad.size);
    }
    expect(problems).toEqual([]);
  }, TIMEOUT);
});

describe('damage at rest', () => {
  it('verify --read-data names every damaged object; restores refuse the backups that need one and restore the others byte-identical', async () => {
    replayHint();
    const bed = await makeBed('damage at rest', SEED + 700, figures, { files: 150 });
    // Packs of 64 KiB, so each backup writes several; every one of the second and third backups rots.
    process.env.MEMVAULT_PACK_BYTES = String(64 * 1024);
    onTestFinished(() => { delete process.env.MEMVAULT_PACK_BYTES; });
    const chunkRot: FaultRule = { ops: ['put'], prefixes: ['packs/'], rate: 1, kinds: { corrupt: 3, truncate: 1 } };
    const p = faultyStorage(bed, 'primary', [], { seed: bed.seed + 1 });
    const vault = await openFaultyVault(bed, 'primary', p.storage);
    const outcomes: BackupOutcome[] = [];
    for (let i = 0; i < 3; i++) {
      if (i > 0) await mutateTree(bed.tree, bed.rng.fork(`mutate-${i}`));
      const snap = await snapshotTree(bed.tree);
      // The first backup is stored intact; the second and third get chunks damaged at rest, and
      // the second's manifest too.
      p.faulty.setRules(i === 0 ? [] : i === 1 ? [{ ops: ['put'], prefixes: ['manifests/'], rate: 1, kinds: { corrupt: 1 } }, chunkRot] : [chunkRot]);
      if (i === 2) {
        // An incremental backup compares with the newest backup that opens: the damaged one is
        // passed over (not a backup any more), the intact first one is the parent.
        const inc = await settle(() => backupComponent({ cfg: bed.f.cfg, vault, driverFor, log: silentLogger }, COMPONENT, 'incremental'));
        figures.outcome('backup incremental (damaged parent)', inc.ok ? { ok: true } : { ok: false, error: inc.error.name });
        expect(inc.ok ? 'succeeded' : inc.error.name).toBe('succeeded');
        const incOut = (inc as { ok: true; value: BackupOutcome }).value;
        expect(incOut.parent).toBe(outcomes[0].backupId);
        bed.expected.set(incOut.backupId, snap);
      }
      // Full backups otherwise: they read no parent.
      const out = await backupComponent({ cfg: bed.f.cfg, vault, driverFor, log: silentLogger }, COMPONENT, 'full');
      figures.outcome('backup full (damage at rest)', { ok: true });
      bed.expected.set(out.backupId, snap);
      outcomes.push(out);
    }
    const damaged = p.faulty.damagedAtRest;
    expect(damaged.size, 'damage was injected').toBeGreaterThan(2);
    expect(damaged.has(outcomes[1].manifestKey)).toBe(true);

    const clean = await cleanVault(bed);
    const v = await verifyVault(clean, { readData: 'all' });
    const named = new Set([...v.problems.map((x) => x.objectKey ?? x.chunk), ...v.damagedPacks.map((d) => d.key), ...v.damagedIndexes.map((d) => d.key), ...v.damagedManifests.map((d) => d.key)]);
    // Every damaged manifest, and every damaged chunk a readable manifest refers to, is named; nothing else is.
    const refs = await listManifestNames(clean.storage);
    // Packs: where the damage landed decides what it hits (the fault log has the flipped bit): a
    // truncated pack or a flip in its header (past its chunks) hits every chunk and verify names the
    // pack; a flip inside one chunk hits that chunk only.
    const where = await clean.listChunks();
    const dataEnd = new Map<string, number>();
    for (const [, l] of where.entries()) {
      const k = `packs/${l.pack.slice(0, 2)}/${l.pack}`;
      dataEnd.set(k, Math.max(dataEnd.get(k) ?? 0, l.offset + l.length));
    }
    const rot = p.faulty.log.filter((l) => l.op === 'put' && l.key.startsWith('packs/') && (l.kind === 'corrupt' || l.kind === 'truncate'));
    const byteOf = (detail: string) => Number(/bit (\d+)/.exec(detail)![1]) >> 3;
    const headerHit = (k: string) => rot.some((l) => l.key === k && (l.kind === 'truncate' || byteOf(l.detail) >= (dataEnd.get(k) ?? 0)));
    const chunkHit = (k: string, offset: number, length: number) => headerHit(k)
      || rot.some((l) => l.key === k && l.kind === 'corrupt' && byteOf(l.detail) >= offset && byteOf(l.detail) < offset + length);
    const needs = new Map<string, Set<string>>();
    for (const r of refs) {
      const keys = new Set<string>([r.key]);
      if (!damaged.has(r.key)) {
        for (const e of (await clean.readManifest(r)).entries) {
          for (const c of e.chunks ?? []) {
            const l = where.get(c.id)!;
            const k = `packs/${l.pack.slice(0, 2)}/${l.pack}`;
            if (chunkHit(k, l.offset, l.length)) keys.add(k);
          }
        }
      }
      needs.set(r.id, keys);
    }
    const expectedNamed = [...damaged].filter((k) => headerHit(k) || [...needs.values()].some((s) => s.has(k))).sort();
    expect([...named].sort(), `verify --read-data names every damaged object (seed ${bed.seed})`).toEqual(expectedNamed);
    expect(v.ok).toBe(false);
    figures.count('damage at rest: objects damaged', damaged.size);
    figures.count('damage at rest: named by verify --read-data', named.size);

    for (const r of refs) {
      const hit = [...needs.get(r.id)!].filter((k) => damaged.has(k));
      const target = newTarget(bed);
      const res = await settle(() => restoreById(bed, clean, r.id, target));
      if (hit.length === 0) {
        expect(res.ok, `backup ${r.id} needs no damaged object and restores`).toBe(true);
        const problems = await compareTree(path.join(target, COMPONENT), bed.expected.get(r.id)!);
        if (problems.length > 0) figures.lost(`${bed.name}: undamaged backup ${r.id} restored wrong: ${problems.slice(0, 3).join('; ')}`);
        expect(problems).toEqual([]);
        figures.count('damage at rest: undamaged backups restored byte-identical');
      } else {
        expect(res.ok ? 'succeeded' : res.error.name, `restore of ${r.id}, which needs ${hit.join(', ')}`).toBe('IntegrityError');
        const err = (res as { ok: false; error: IntegrityError }).error;
        expect(hit, `the IntegrityError names a damaged object it needs: ${err.message}`).toContain(err.objectKey);
        expect(await checkNoWrongBytes(bed, target, bed.expected.get(r.id)!, 'restore of a damaged backup')).toEqual([]);
        figures.count('damage at rest: restores refused with IntegrityError naming the object');
      }
    }
  }, TIMEOUT);
});

describe('figures', () => {
  it('no data lost', () => {
    replayHint();
    expect(figures.trials).toBeGreaterThan(40);
    expect(figures.dataLost, figures.render()).toEqual([]);
  });
});
