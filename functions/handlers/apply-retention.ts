// apply-retention: forget + prune one vault (primary or secondary) by each
// component's retention policy (core/retention.ts). Prune takes the vault's
// exclusive lock and waits for fanned-out backup runs, so a running backup
// makes it throw LockedError, which the state machine retries later; the
// newest backup of a component is never forgotten.
import { z } from 'zod';
import { applyRetention, type RetentionReport } from '../core/retention.ts';
import type { Vault } from '../core/vault.ts';
import { type HandlerDeps, emitMetrics, invocationLog, json, lazyHandler, parseEvent, side, traced } from './deps.ts';
import { METRICS } from './metrics.ts';
import { pruneContinuousWal, pruneServiceSnapshots, retentionAudit, type SnapshotPruneReport } from '../ops.ts';
import { auditActor, recordAudit } from '../core/audit.ts';
import { checkBudget } from '../core/space.ts';

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
  return async (event: unknown): Promise<RetentionReport & { side: string; skipped: boolean; snapshots: SnapshotPruneReport[]; wal: { component: string; deleted: number; kept: number }[] }> => {
    const e = parseEvent(applyRetentionInput, event, 'retention input', '{"dryRun":true}');
    const log = invocationLog(deps, 'apply-retention', e);
    if (e.side === 'secondary' && !deps.cfg.vault.secondary) {
      return {
        side: e.side, skipped: true, vault: '', dryRun: e.request.dryRun, forgotten: [], kept: 0, chunksPruned: 0, bytesPruned: 0, chunksKept: 0,
        damaged: [], chainProblems: [], pruneSkipped: null, stagingRemoved: [], locksRemoved: 0, temporariesRemoved: 0, snapshots: [],
        packsDeleted: 0, packsRepacked: 0, bytesRepacked: 0, indexesMerged: 0, wal: [],
      };
    }
    const policies = Object.fromEntries(Object.entries(deps.cfg.components).map(([n, c]) => [n, c.retention]));
    const vault = await deps.openVault(e.side);
    const startedAt = deps.clock.now().toISOString();
    const r = await applyRetention(vault, policies, { now: deps.clock.now(), dryRun: e.request.dryRun });
    await recordAudit(vault, { ...retentionAudit(r, startedAt), actor: auditActor(process.env, e.executionId) }, log);
    // Shipped / archived WAL of continuous components that no kept base needs any more (counts only:
    // the state's payload stays small).
    const wal = (await pruneContinuousWal(deps.cfg, vault, e.request.dryRun)).map((w) => ({ component: w.component, deleted: w.deleted.length, kept: w.kept }));
    if (wal.some((w) => w.deleted > 0)) log.info('shipped WAL pruned', { side: e.side, wal });
    // Service snapshots (RDS, Aurora, DocumentDB) are pruned once, with the primary vault: each
    // driver covers both of its regions and deletes only snapshots it created.
    const snapshots = e.side === 'primary'
      ? await pruneServiceSnapshots(deps.cfg, deps.driverFor, { now: deps.clock.now(), dryRun: e.request.dryRun, log })
      : [];
    if (r.stagingRemoved.length) log.warn('staging of dead backup runs removed', { prefixes: r.stagingRemoved });
    if (r.pruneSkipped || r.damaged.length || r.chainProblems.length) {
      // Retention went as far as was safe; what stopped it (or what it saw) needs an operator.
      log.warn('retention found damage', { pruneSkipped: r.pruneSkipped, damaged: r.damaged.length, chainProblems: r.chainProblems.length });
      await deps.alerts.send({
        severity: 'error', subject: `retention found damage in the ${e.side} vault`, step: 'retention', time: deps.clock.now().toISOString(),
        message: [r.pruneSkipped, ...r.chainProblems, ...r.damaged.map((d) => `${d.key}: ${d.problem}`)].filter(Boolean).slice(0, 10).join('; '),
        cause: r.pruneSkipped ?? r.chainProblems[0] ?? `${r.damaged[0]?.key}: ${r.damaged[0]?.problem}`,
        details: { executionId: e.executionId, vault: r.vault, damaged: r.damaged.map((d) => d.key).slice(0, 50) },
      });
    }
    log.info('retention applied', { side: e.side, vault: r.vault, forgotten: r.forgotten.length, chunksPruned: r.chunksPruned, damaged: r.damaged.length });
    if (!e.request.dryRun) {
      const bytes = await storedBytes(vault);
      emitMetrics(deps, [{ name: METRICS.bytesStored, value: bytes, dimension: e.side }]);
      // The size budget (vault.budget), checked after the prune: what is left is what counts.
      const f = checkBudget(deps.cfg.vault.budget, vault.storage.url, bytes);
      if (f) {
        log.warn('vault size budget', f.details);
        await deps.alerts.send({ severity: f.severity, subject: f.subject, step: 'budget', message: f.message, time: deps.clock.now().toISOString(), details: { ...f.details, executionId: e.executionId } });
      }
    }
    return json({ ...r, side: e.side, skipped: false, snapshots, wal });
  };
}

export const handler = lazyHandler(makeHandler);
