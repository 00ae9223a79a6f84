// report-restore: the end of a successful restore. Measures the recovery time
// (from the start of the execution to validated data), notifies the alert
// sinks that the restore succeeded, and returns the report that is the
// execution's output.
import { z } from 'zod';
import { type HandlerDeps, emitMetrics, invocationLog, json, lazyHandler, parseEvent, traced } from './deps.ts';
import { METRICS, seconds } from './metrics.ts';
import { auditActor, recordAudit } from '../core/audit.ts';

export const reportRestoreInput = z.object({
  state: z.object({
    request: z.record(z.string(), z.unknown()),
    plan: z.object({ from: z.string(), vault: z.string(), inPlace: z.boolean(), targetRoot: z.string().nullable(), skewMs: z.number() }).passthrough(),
    results: z.array(z.object({ component: z.string() }).passthrough()),
    safety: z.array(z.record(z.string(), z.unknown())).optional(),
  }).passthrough(),
  startedAt: z.string(),
  ...traced,
});

export interface RestoreReport {
  ok: true;
  mode: unknown;
  from: string;
  vault: string;
  inPlace: boolean;
  target: string | null;
  skewMs: number;
  recoveryTimeMs: number;
  components: Record<string, unknown>[];
  safetyBackups: Record<string, unknown>[];
}

export function makeHandler(deps: HandlerDeps) {
  return async (event: unknown): Promise<RestoreReport> => {
    const e = parseEvent(reportRestoreInput, event, 'report-restore input');
    const log = invocationLog(deps, 'report-restore', e);
    const s = e.state;
    const recoveryTimeMs = Math.max(0, deps.clock.now().getTime() - Date.parse(e.startedAt));
    const report: RestoreReport = {
      ok: true, mode: s.request.mode, from: s.plan.from, vault: s.plan.vault, inPlace: s.plan.inPlace, target: s.plan.targetRoot,
      skewMs: s.plan.skewMs, recoveryTimeMs, components: s.results, safetyBackups: s.safety ?? [],
    };
    const names = s.results.map((r) => r.component).join(', ');
    // The measured recovery time (execution start to validated data), for each component it restored.
    emitMetrics(deps, s.results.map((r) => ({ name: METRICS.restoreDuration, value: seconds(recoveryTimeMs), dimension: r.component })));
    await deps.alerts.send({
      severity: 'info', subject: `restore succeeded: ${names}`, step: 'report', time: deps.clock.now().toISOString(),
      message: `restored ${names} from the ${s.plan.from} vault ${s.plan.inPlace ? 'in place' : `into ${s.plan.targetRoot}`}; validated; recovery time ${(recoveryTimeMs / 1000).toFixed(1)} s`,
      details: { executionId: e.executionId, recoveryTimeMs, skewMs: s.plan.skewMs },
    });
    // The audit record goes to the vault the data came from (its key is the one this restore used).
    if (s.plan.from === 'primary' || s.plan.from === 'secondary') {
      const vault = await deps.openVault(s.plan.from).catch((err) => { log.warn('audit record not stored', { error: String(err) }); return null; });
      if (vault) {
        await recordAudit(vault, {
          op: 'restore', result: 'ok', actor: auditActor(process.env, e.executionId), startedAt: e.startedAt, endedAt: deps.clock.now().toISOString(),
          components: s.results.map((r) => r.component), backupIds: s.results.map((r) => String((r as { backupId?: unknown }).backupId ?? '')).filter(Boolean),
          details: { inPlace: s.plan.inPlace, target: s.plan.targetRoot, recoveryTimeMs },
        }, log);
      }
    }
    log.info('restore succeeded', { components: names, recoveryTimeMs });
    return json(report);
  };
}

export const handler = lazyHandler(makeHandler);
