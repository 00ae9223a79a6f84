// finish-backup-run: the summary at the end of backup-run. Collects each
// component's outcome (from the Map) and the replication result, and decides
// whether the run succeeded. A failed run's `error`/`cause` feed the Fail state,
// so the execution shows red with every failed component named (each was
// already alerted when it failed).
import { z } from 'zod';
import { type HandlerDeps, emitMetrics, invocationLog, json, lazyHandler, parseEvent } from './deps.ts';
import { METRICS } from './metrics.ts';
import { causeMessage } from './send-alert.ts';

const caught = z.object({ Error: z.string().optional(), Cause: z.string().optional() }).passthrough();

export const finishBackupRunInput = z.object({
  state: z.object({
    plan: z.object({ runId: z.string(), replicate: z.boolean() }).passthrough(),
    results: z.array(z.object({ component: z.string(), ok: z.boolean() }).passthrough()),
    replication: z.record(z.string(), z.unknown()).optional(),
    replicationError: caught.optional(),
  }).passthrough(),
  executionId: z.string().optional(),
});

export interface BackupRunSummary {
  runId: string;
  ok: boolean;
  components: Record<string, unknown>[];
  failed: { component: string; step: string; errorName: string; error: string }[];
  replication: Record<string, unknown> | null;
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
        failed.push({ component: r.component, step: String((r as { step?: unknown }).step ?? 'backup'), errorName: err?.Error ?? 'Error', error: causeMessage(err?.Cause) });
      }
    }
    if (s.replicationError) {
      failed.push({ component: '(secondary vault)', step: 'replicate', errorName: s.replicationError.Error ?? 'Error', error: causeMessage(s.replicationError.Cause) });
    }
    const ok = failed.length === 0;
    // 0 for each component that succeeded too, so the graph shows the runs, not only the failures.
    emitMetrics(deps, s.results.map((r) => ({ name: METRICS.backupFailures, value: r.ok ? 0 : 1, dimension: r.component })));
    const summary: BackupRunSummary = {
      runId: s.plan.runId, ok, components, failed, replication: s.replication ?? null,
      error: ok ? '' : 'BackupRunFailed',
      cause: ok ? '' : `backup run ${s.plan.runId}: ${failed.length} failure(s): ${failed.map((f) => `${f.component} at ${f.step}: ${f.errorName}: ${f.error}`).join(' | ')}`,
    };
    log.info('backup run finished', { runId: summary.runId, ok, failed: failed.map((f) => f.component) });
    return json(summary);
  };
}

export const handler = lazyHandler(makeHandler);
