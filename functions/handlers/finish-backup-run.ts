// finish-backup-run: the summary at the end of backup-run. Collects each
// component's outcome (from the Map) and the replication result, and decides
// whether the run succeeded. A failed run's `error`/`cause` feed the Fail state,
// so the execution shows red with every failed component named. Each failure
// was already alerted when it failed; when every one was, the cause starts with
// ALERTED_CAUSE_PREFIX and the EventBridge failure rule does not alert again
// (one failure, one alert). A component whose alert could not be sent leaves
// the cause unmarked, so the rule alerts for it.
//
// Replication is not a backup: when it fails, the backups that succeeded
// stay succeeded. The run ends ok with `replication.status: "failed"` and
// `replicationFailed: true` (the state machine then sends one alert naming
// what is not in the secondary vault); the next run's replicate copies
// everything still missing, oldest first, and rpo-watch alerts when the
// secondary's newest backup of a component is older than its rpo.
import { z } from 'zod';
import { ALERTED_CAUSE_PREFIX } from '../core/errors.ts';
import { type HandlerDeps, emitMetrics, invocationLog, json, lazyHandler, parseEvent } from './deps.ts';
import { METRICS } from './metrics.ts';
import { causeMessage } from './send-alert.ts';
import { auditActor, recordAudit } from '../core/audit.ts';

const caught = z.object({ Error: z.string().optional(), Cause: z.string().optional() }).passthrough();

export const finishBackupRunInput = z.object({
  state: z.object({
    plan: z.object({ runId: z.string(), replicate: z.boolean() }).passthrough(),
    results: z.array(z.object({ component: z.string(), ok: z.boolean(), alerted: z.boolean().optional() }).passthrough()),
    replication: z.record(z.string(), z.unknown()).optional(),
    replicationError: caught.optional(),
  }).passthrough(),
  startedAt: z.string().optional(),
  executionId: z.string().optional(),
});

/** A backup of this run that the secondary vault does not have (replication failed). */
export interface NotReplicated {
  component: string;
  backupId: string | null;
}

export type ReplicationSummary =
  | (Record<string, unknown> & { status: 'ok' })
  | { status: 'failed'; errorName: string; error: string; cause: string; notReplicated: NotReplicated[] };

export interface BackupRunSummary {
  runId: string;
  ok: boolean;
  components: Record<string, unknown>[];
  failed: { component: string; step: string; errorName: string; error: string; alerted: boolean }[];
  /** null: not replicated by this run (no secondary vault, or `"replicate": false`). */
  replication: ReplicationSummary | null;
  /** True when replication failed: the state machine alerts once; the run's backups stand. */
  replicationFailed: boolean;
  /** For the Fail state: error name and readable cause (empty when ok). */
  error: string;
  cause: string;
}

export function makeHandler(deps: HandlerDeps) {
  return async (event: unknown): Promise<BackupRunSummary> => {
    const e = parseEvent(finishBackupRunInput, event, 'finish-backup-run input');
    const log = invocationLog(deps, 'finish-backup-run', e);
    const s = e.state;
    const components: Record<string, unknown>[] = [];
    const failed: BackupRunSummary['failed'] = [];
    for (const r of s.results) {
      if (r.ok) {
        components.push((r as { backup?: Record<string, unknown> }).backup ?? r);
      } else {
        const err = (r as { error?: { Error?: string; Cause?: string } }).error;
        failed.push({
          component: r.component, step: String((r as { step?: unknown }).step ?? 'backup'), errorName: err?.Error ?? 'Error', error: causeMessage(err?.Cause),
          // Older state (no flag) came from ComponentFailed, which follows a sent alert.
          alerted: r.alerted ?? true,
        });
      }
    }
    let replication: ReplicationSummary | null = s.replication ? { ...s.replication, status: 'ok' } : null;
    if (s.replicationError) {
      const error = causeMessage(s.replicationError.Cause);
      // What this run backed up is not in the secondary (unless replication got that far: the
      // error says what it did not copy when it knows).
      const notReplicated = components.map((c) => ({ component: String(c.component), backupId: typeof c.backupId === 'string' ? c.backupId : null }));
      const errorName = s.replicationError.Error ?? 'Error';
      const cause = error
        + (notReplicated.length ? `; this run's backups not copied: ${notReplicated.map((n) => `${n.component}${n.backupId ? ` (${n.backupId})` : ''}`).join(', ')}` : '')
        + '; the next backup run copies everything still missing';
      replication = { status: 'failed', errorName, error, cause, notReplicated };
    }
    const ok = failed.length === 0;
    // 0 for each component that succeeded too, so the graph shows the runs, not only the failures.
    emitMetrics(deps, s.results.map((r) => ({ name: METRICS.backupFailures, value: r.ok ? 0 : 1, dimension: r.component })));
    const text = `backup run ${s.plan.runId}: ${failed.length} failure(s): ${failed.map((f) => `${f.component} at ${f.step}: ${f.errorName}: ${f.error}`).join(' | ')}`;
    const summary: BackupRunSummary = {
      runId: s.plan.runId, ok, components, failed, replication, replicationFailed: replication?.status === 'failed',
      error: ok ? '' : 'BackupRunFailed',
      cause: ok ? '' : failed.every((f) => f.alerted) ? `${ALERTED_CAUSE_PREFIX}${text}` : text,
    };
    const vault = await deps.openVault('primary').catch((err) => { log.warn('audit record not stored', { error: String(err) }); return null; });
    if (vault) {
      const started = e.startedAt;
      await recordAudit(vault, {
        op: 'backup', result: ok ? 'ok' : components.length ? 'partial' : 'failed', actor: auditActor(process.env, e.executionId),
        startedAt: typeof started === 'string' ? started : deps.clock.now().toISOString(), endedAt: deps.clock.now().toISOString(),
        components: s.results.map((r) => r.component),
        backupIds: components.map((c) => c.backupId).filter((b): b is string => typeof b === 'string'),
        ...(ok ? {} : { error: text }), details: { runId: s.plan.runId, replication: replication?.status ?? 'none' },
      }, log);
    }
    log.info('backup run finished', { runId: summary.runId, ok, failed: failed.map((f) => f.component), replication: replication?.status ?? 'none' });
    return json(summary);
  };
}

export const handler = lazyHandler(makeHandler);
