// apply-retention: forget + prune one vault (primary or secondary) by each
// component's retention policy. Prune takes the vault's exclusive lock, so a
// running backup makes it throw LockedError, which the state machine retries
// later; the newest backup of a component is never forgotten.
import { z } from 'zod';
import { applyRetention, type RetentionReport } from '../core/retention.ts';
import type { Vault } from '../core/vault.ts';
import { LockedError } from '../core/errors.ts';
import { listStaging, removeStaging, STAGING_MAX_AGE_MS } from './partition-common.ts';
import { type HandlerDeps, emitMetrics, invocationLog, json, lazyHandler, parseEvent, side, traced } from './deps.ts';
import { METRICS } from './metrics.ts';
import { pruneServiceSnapshots, type SnapshotPruneReport } from '../ops.ts';

export const applyRetentionInput = z.object({
  side,
  request: z.object({ dryRun: z.boolean().default(false) }).strict().default({ dryRun: false }),
  ...traced,
});

/** Bytes of every object in the vault (chunks, manifests, staging), after retention. */
async function storedBytes(vault: Vault): Promise<number> {
  let n = 0;
  for await (const o of vault.storage.list('')) n += o.size;
  return n;
}

export function makeHandler(deps: HandlerDeps) {
  return async (event: unknown): Promise<RetentionReport & { side: string; skipped: boolean; stagingRemoved: string[]; snapshots: SnapshotPruneReport[] }> => {
    const e = parseEvent(applyRetentionInput, event, 'retention input', '{"dryRun":true}');
    const log = invocationLog(deps, 'apply-retention', e);
    if (e.side === 'secondary' && !deps.cfg.vault.secondary) {
      return { side: e.side, skipped: true, vault: '', dryRun: e.request.dryRun, forgotten: [], kept: 0, chunksPruned: 0, bytesPruned: 0, chunksKept: 0, stagingRemoved: [], snapshots: [] };
    }
    const policies = Object.fromEntries(Object.entries(deps.cfg.components).map(([n, c]) => [n, c.retention]));
    const vault = await deps.openVault(e.side);
    // A fanned-out backup's chunks are referenced only by its staging objects until its manifest is
    // written: while one is running, prune waits (LockedError, retried); a dead run's staging goes.
    const now = deps.clock.now();
    const staging = await listStaging(vault);
    const running = staging.filter((s) => s.createdAt !== null && now.getTime() - s.createdAt.getTime() < STAGING_MAX_AGE_MS);
    if (running.length && !e.request.dryRun) {
      throw new LockedError(`${vault.storage.url}: a backup run is still writing ${running.map((s) => s.prefix).join(', ')} (since ${running.map((s) => s.createdAt!.toISOString()).join(', ')}); retention prunes when it has finished`);
    }
    const dead = staging.filter((s) => !running.includes(s)).map((s) => s.prefix);
    if (!e.request.dryRun) for (const p of dead) await removeStaging(vault, p);
    if (dead.length) log.warn('staging of dead backup runs removed', { prefixes: dead });
    const r = await applyRetention(vault, policies, { now: deps.clock.now(), dryRun: e.request.dryRun });
    // Service snapshots (RDS, Aurora, DocumentDB) are pruned once, with the primary vault: each
    // driver covers both of its regions and deletes only snapshots it created.
    const snapshots = e.side === 'primary'
      ? await pruneServiceSnapshots(deps.cfg, deps.driverFor, { now: deps.clock.now(), dryRun: e.request.dryRun, log })
      : [];
    log.info('retention applied', { side: e.side, vault: r.vault, forgotten: r.forgotten.length, chunksPruned: r.chunksPruned });
    if (!e.request.dryRun) emitMetrics(deps, [{ name: METRICS.bytesStored, value: await storedBytes(vault), dimension: e.side }]);
    return json({ ...r, side: e.side, skipped: false, stagingRemoved: dead, snapshots });
  };
}

export const handler = lazyHandler(makeHandler);
