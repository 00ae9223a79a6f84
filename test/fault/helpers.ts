// Shared by the fault suite's files: a files component over a generated tree,
// vaults opened over FaultyStorage behind the real RetryingStorage, and the
// checks every trial ends with (a clean restore equals the tree the backup
// was taken of; a failed restore leaves no wrong bytes).
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { makeFixture, type Fixture } from '../helpers/fixture.ts';
import { FileStorage } from '../../functions/adapters/storage/file.ts';
import { RetryingStorage, type RetryOptions } from '../../functions/adapters/storage/retrying.ts';
import { Vault, listManifestNames } from '../../functions/core/vault.ts';
import { keyProvider, openVault, type Side } from '../../functions/services.ts';
import { planRestore, restorePlan, type RestoreResult } from '../../functions/core/restore.ts';
import { driverFor } from '../../functions/components/registry.ts';
import { silentLogger } from '../../functions/logger.ts';
import { FaultyStorage, type FaultRule } from '../helpers/faulty-storage.ts';
import { compareTree, generateTree, wrongFiles, type TreeSnapshot } from '../helpers/fault-tree.ts';
import { SeededRandom } from '../helpers/seeded-random.ts';
import type { Figures } from '../helpers/fault-figures.ts';

export const COMPONENT = 'tree';

/**
 * Retries as the real RetryingStorage does (exponential backoff, full jitter), with 8 attempts
 * instead of 6 and 1-20 ms instead of 100 ms-5 s so 40% faults finish in seconds.
 */
export const FAST_RETRY: RetryOptions = { attempts: 8, baseMs: 1, maxMs: 20 };

export interface Bed {
  name: string;
  seed: number;
  f: Fixture;
  /** The component's source directory. */
  tree: string;
  rng: SeededRandom;
  /** What each backup (by id) must restore to. */
  expected: Map<string, TreeSnapshot>;
  figures: Figures;
  targets: number;
}

/** A fixture with one files component (keepLast 2) over a generated tree, primary and DR vaults. */
export async function makeBed(name: string, seed: number, figures: Figures, o: { files?: number } = {}): Promise<Bed> {
  const f = await makeFixture({ [COMPONENT]: { kind: 'files', path: 'tree', retention: { keepLast: 2 } } });
  const rng = new SeededRandom(seed, name);
  const tree = path.join(f.dir, 'tree');
  await generateTree(tree, rng.fork('tree'), { files: o.files ?? 260 });
  return { name, seed, f, tree, rng, expected: new Map(), figures, targets: 0 };
}

export function vaultDir(bed: Bed, side: Side): string {
  return path.join(bed.f.dir, side === 'primary' ? 'vault-primary' : 'vault-dr');
}

/** FaultyStorage over the side's directory, behind RetryingStorage; tracked in the figures. */
export function faultyStorage(bed: Bed, side: Side, rules: FaultRule[], o: { seed?: number; retry?: RetryOptions } = {}) {
  const faulty = bed.figures.track(new FaultyStorage(new FileStorage(vaultDir(bed, side)), { seed: o.seed ?? bed.seed, rules }));
  return { faulty, storage: new RetryingStorage(faulty, o.retry ?? FAST_RETRY) };
}

export async function openFaultyVault(bed: Bed, side: Side, storage: RetryingStorage): Promise<Vault> {
  return Vault.open(storage, await keyProvider(bed.f.cfg, side));
}

/**
 * The vault without injected faults, for the checks. As the CLI opens it with `workers`;
 * otherwise its localRoot is hidden, so restores run on the main thread (starting chunk-pool
 * workers for every check costs more than the restore of a few MiB).
 */
export async function cleanVault(bed: Bed, side: Side = 'primary', o: { workers?: boolean } = {}): Promise<Vault> {
  if (o.workers) return openVault(bed.f.cfg, side);
  const plain = new FaultyStorage(new FileStorage(vaultDir(bed, side)), { seed: 0, rules: [] });
  return Vault.open(new RetryingStorage(plain), await keyProvider(bed.f.cfg, side));
}

export function newTarget(bed: Bed): string {
  return path.join(bed.f.dir, 'restores', String(++bed.targets));
}

export async function restoreById(bed: Bed, vault: Vault, backupId: string, target: string): Promise<RestoreResult> {
  const plan = await planRestore(vault, { mode: 'backup', backupId }, [COMPONENT], [COMPONENT]);
  return restorePlan({ cfg: bed.f.cfg, vault, driverFor, log: silentLogger }, plan, target, false);
}

/**
 * Restores a backup from the vault without injected faults and compares it with the tree it
 * was taken of. Any difference (or a failure) is data lost: recorded in the figures and returned.
 */
export async function checkRestorable(bed: Bed, side: Side, backupId: string, why: string): Promise<string[]> {
  const expected = bed.expected.get(backupId);
  if (!expected) return [`${side} backup ${backupId}: no record of the tree it was taken of`];
  const target = newTarget(bed);
  let problems: string[];
  try {
    const r = await restoreById(bed, await cleanVault(bed, side), backupId, target);
    problems = await compareTree(path.join(target, COMPONENT), expected);
    if (!r.ok) problems.push('restore validation failed');
  } catch (err) {
    problems = [`restore failed: ${(err as Error).name}: ${(err as Error).message}`];
  }
  await fs.rm(target, { recursive: true, force: true });
  if (problems.length > 0) bed.figures.lost(`${bed.name}: ${why}: ${side} backup ${backupId}: ${problems.slice(0, 3).join('; ')}`);
  else bed.figures.count('backups restored byte-identical (clean read)');
  return problems;
}

/** Every backup in the side's catalog restores to the tree it was taken of. */
export async function checkAllRestorable(bed: Bed, side: Side, why: string): Promise<string[]> {
  const refs = await listManifestNames((await cleanVault(bed, side)).storage);
  const problems: string[] = [];
  for (const r of refs) problems.push(...await checkRestorable(bed, side, r.id, why));
  return problems;
}

/** After a failed restore: no file with wrong bytes, no partial file. Wrong ones are data lost. */
export async function checkNoWrongBytes(bed: Bed, target: string, expected: TreeSnapshot, why: string): Promise<string[]> {
  const wrong = await wrongFiles(path.join(target, COMPONENT), expected);
  if (wrong.length > 0) bed.figures.lost(`${bed.name}: ${why}: wrong bytes left in ${target}: ${wrong.slice(0, 3).join('; ')}`);
  return wrong;
}

/**
 * The cheap half of "restorable": the backup's manifest opens and lists exactly the tree it
 * was taken of (paths, types, sizes, SHA-256, link targets). With a clean `verify --read-data`
 * (every chunk present, authentic, matching its id) this proves the backup restores; the
 * suite still restores the newest backup of each vault for real.
 */
export async function checkManifestMatches(bed: Bed, side: Side, backupId: string, why: string): Promise<string[]> {
  const expected = bed.expected.get(backupId);
  const vault = await cleanVault(bed, side);
  const ref = (await listManifestNames(vault.storage)).find((r) => r.id === backupId);
  let problems: string[] = [];
  if (!expected) problems.push(`no record of the tree backup ${backupId} was taken of`);
  else if (!ref) problems.push('not in the catalog');
  else {
    try {
      const m = await vault.readManifest(ref);
      const seen = new Set<string>();
      for (const e of m.entries) {
        seen.add(e.path);
        const x = expected.get(e.path);
        if (!x) problems.push(`${e.path}: not in the tree`);
        else if (x.type !== e.type) problems.push(`${e.path}: ${e.type}, expected ${x.type}`);
        else if (e.type === 'file' && (e.sha256 !== x.sha256 || e.size !== x.size)) problems.push(`${e.path}: recorded bytes differ`);
        else if (e.type === 'symlink' && e.target !== x.target) problems.push(`${e.path}: recorded link differs`);
      }
      for (const p of expected.keys()) if (!seen.has(p)) problems.push(`${p}: missing from the manifest`);
    } catch (err) {
      problems = [`manifest cannot be read: ${(err as Error).name}: ${(err as Error).message}`];
    }
  }
  if (problems.length > 0) bed.figures.lost(`${bed.name}: ${why}: ${side} backup ${backupId}: ${problems.slice(0, 3).join('; ')}`);
  return problems;
}
