// report-restore: the end of a successful restore. Measures the recovery time
// (from the start of the execution to validated data), notifies the alert
// sinks that the restore succeeded, and returns the report that is the
// execution's output. With `failed: true` (the restore machine's failure path,
// after its alert) it only appends the failed restore to the audit log of the
// vault the restore used (primary when it failed before choosing one).
import { z } from 'zod';
import { type HandlerDeps, emitMetrics, invocationLog, json, lazyHandler, parseEvent, traced } from './deps.ts';
import { METRICS, seconds } from './metrics.ts';
import { auditActor, recordAudit } from '../core/audit.ts';
import { causeMessage } from './send-alert.ts';

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

/** The failure path's state: whatever the restore got to before it failed. */
export const failedRestoreInput = z.object({
  failed: z.literal(true),
  state: z.object({
    input: z.record(z.string(), z.unknown()).optional(),
    request: z.record(z.string(), z.unknown()).optional(),
    plan: z.object({ from: z.string(), items: z.array(z.object({ component: z.string(), backupId: z.string().optional() }).passthrough()).optional() }).passthrough().optional(),
    failedStep: z.string().optional(),
    error: z.object({ Error: z.string().optional(), Cause: z.string().optional() }).passthrough().optional(),
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

/** Audits a failed restore; returns the audit key, or null when none was written (DR region, vault not reachable). */
async function auditFailure(deps: HandlerDeps, event: unknown): Promise<{ audited: string | null }> {
  const e = parseEvent(failedRestoreInput, event, 'report-restore input (failed restore)');
  const log = invocationLog(deps, 'report-restore', e);
  const s = e.state;
  const request = s.request ?? s.input ?? {};
  const asked = typeof request.from === 'string' ? request.from : undefined;
  const from = s.plan?.from ?? asked;
  const side = from === 'secondary' ? 'secondary' : 'primary';
  const components = s.plan?.items?.map((i) => i.component) ?? (Array.isArray(request.components) ? request.components.filter((c): c is string => typeof c === 'string') : []);
  const error = `${s.error?.Error ? `${s.error.Error}: ` : ''}${causeMessage(s.error?.Cause)}` || 'failed';
  const vault = await deps.openVault(side).catch((err) => { log.warn('audit record not stored', { error: String(err) }); return null; });
  if (!vault) return { audited: null };
  const key = await recordAudit(vault, {
    op: 'restore', result: 'failed', actor: auditActor(process.env, e.executionId), startedAt: e.startedAt, endedAt: deps.clock.now().toISOString(),
    components, backupIds: (s.plan?.items ?? []).map((i) => i.backupId ?? '').filter(Boolean), error,
    details: { step: s.failedStep ?? 'restore', from: from ?? null },
  }, log);
  log.info('failed restore audited', { components: components.join(', '), key });
  return { audited: key };
}

export function makeHandler(deps: HandlerDeps) {
  return async (event: unknown): Promise<RestoreReport | { audited: string | null }> => {
    if ((event as { failed?: unknown } | null)?.failed === true) return json(await auditFailure(deps, event));
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
