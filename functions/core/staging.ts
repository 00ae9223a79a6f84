// The staging area of a fanned-out backup (an s3-prefix component split into
// key-range partitions, each backed up by its own invocation):
//
//   staging/<runId>/<component>/plan   written by plan-partitions: the run is alive
//   staging/<runId>/<component>/<n>    partition n's entries, when too big for the
//                                      state payload (256 KiB per execution state)
//
// Each object is zstd-compressed JSON sealed with the vault's data key (the
// object key is the associated data), like a manifest. merge-partitions writes
// the one manifest and then removes the component's staging objects; a run
// that dies leaves them. The chunks of a running fanned-out backup are in no
// manifest yet, so retention (core/retention.ts, for every entry point) refuses
// to prune while a staging plan that opens is younger than STAGING_MAX_AGE_MS,
// and removes older staging (a dead run) so its chunks are pruned.
import zlib from 'node:zlib';
import { promisify } from 'node:util';
import { z } from 'zod';
import { open, seal } from './crypto.ts';
import { MAX_MANIFEST_BYTES, type Vault } from './vault.ts';
import { IntegrityError, NotFoundError } from './errors.ts';

const zstdCompress = promisify(zlib.zstdCompress);
const zstdDecompress = promisify(zlib.zstdDecompress);

export const STAGING_ROOT = 'staging/';
/** A backup run's time limit (backup-run.asl.json TimeoutSeconds): staging older than this belongs to a dead run. */
export const STAGING_MAX_AGE_MS = 24 * 3_600_000;

export function stagingPrefix(runId: string, component: string): string {
  const safe = (s: string) => s.replace(/[^A-Za-z0-9._-]/g, '_');
  return `${STAGING_ROOT}${safe(runId)}/${safe(component)}/`;
}

export async function putStaged(vault: Vault, key: string, doc: unknown): Promise<number> {
  const blob = seal(vault.keys.dataKey, await zstdCompress(Buffer.from(JSON.stringify(doc))), key);
  await vault.storage.put(key, blob);
  return blob.length;
}

export async function getStaged<T>(vault: Vault, key: string): Promise<T> {
  let blob: Buffer;
  try {
    blob = await vault.storage.get(key, { maxBytes: MAX_MANIFEST_BYTES });
  } catch (err) {
    if (err instanceof NotFoundError) throw new IntegrityError(`staging object ${key} is missing from ${vault.storage.url} (removed by retention after its run timed out?)`, key);
    throw err;
  }
  try {
    return JSON.parse((await zstdDecompress(open(vault.keys.dataKey, blob, key))).toString('utf8')) as T;
  } catch (err) {
    if (err instanceof IntegrityError) throw err;
    throw new IntegrityError(`staging object ${key}: cannot decode`, key);
  }
}

/** Removes every object under a staging prefix, the plan marker last. Returns how many. */
export async function removeStaging(vault: Vault, prefix: string): Promise<number> {
  const keys: string[] = [];
  for await (const o of vault.storage.list(prefix)) keys.push(o.key);
  keys.sort((a, b) => Number(a.endsWith('/plan')) - Number(b.endsWith('/plan')));
  for (const k of keys) await vault.storage.delete(k);
  return keys.length;
}

export const planMarker = z.object({ createdAt: z.string(), runId: z.string(), component: z.string(), partitions: z.number() });
export type PlanMarker = z.infer<typeof planMarker>;

export interface StagingRun {
  prefix: string;
  /** When its plan was written; null when no plan opens (not a live run). */
  createdAt: Date | null;
  objects: number;
}

/** The staging areas in a vault, one per run and component, with when each was planned. */
export async function listStaging(vault: Vault): Promise<StagingRun[]> {
  const groups = new Map<string, { objects: number; modified: Date | null; marker: string | null }>();
  for await (const o of vault.storage.list(STAGING_ROOT)) {
    const parts = o.key.slice(STAGING_ROOT.length).split('/');
    if (parts.length < 3) continue;
    const prefix = `${STAGING_ROOT}${parts[0]}/${parts[1]}/`;
    const g = groups.get(prefix) ?? { objects: 0, modified: null, marker: null };
    g.objects++;
    if (o.modified && (!g.modified || o.modified > g.modified)) g.modified = o.modified;
    if (parts[2] === 'plan') g.marker = o.key;
    groups.set(prefix, g);
  }
  const out: StagingRun[] = [];
  for (const [prefix, g] of groups) {
    // Only a plan that opens under the vault key shows a live run (objects anyone could
    // have planted, or a damaged plan, never hold up retention).
    let createdAt: Date | null = null;
    if (g.marker) {
      try {
        createdAt = new Date(planMarker.parse(await getStaged(vault, g.marker)).createdAt);
        if (Number.isNaN(createdAt.getTime())) createdAt = null;
      } catch (err) {
        if (!(err instanceof IntegrityError) && !(err instanceof z.ZodError)) throw err;
      }
    }
    out.push({ prefix, createdAt, objects: g.objects });
  }
  return out;
}
