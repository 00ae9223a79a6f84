// finish-drill: the report of a verification drill. For continuous components
// it reports the measured RPO (now minus the newest commit the drill restored)
// next to the target. Alerts when the vault
// check found damage (naming the damaged backups; restore failures were
// alerted per component as they happened), removes the sandbox of a passing
// drill (a failing one is kept for inspection), and decides the outcome.
import { promises as fs } from 'node:fs';
import { z } from 'zod';
import { type HandlerDeps, emitMetrics, invocationLog, json, lazyHandler, parseEvent, traced } from './deps.ts';
import { METRICS } from './metrics.ts';
import { causeMessage } from './send-alert.ts';
import { ALERTED_CAUSE_PREFIX } from '../core/errors.ts';
import { auditActor, recordAudit } from '../core/audit.ts';
import { continuousOf } from '../core/continuous.ts';
import { durationMs } from '../core/config.ts';

export const finishDrillInput = z.object({
  state: z.object({
    plan: z.object({ from: z.string(), sandbox: z.string(), readData: z.unknown() }).passthrough(),
    verify: z.object({ ok: z.boolean(), vault: z.string(), chunksRead: z.number(), manifests: z.number(), damagedBackups: z.array(z.string()), problems: z.array(z.object({ detail: z.string() }).passthrough()), damagedManifests: z.array(z.object({ key: z.string(), error: z.string() })) }).passthrough(),
    results: z.array(z.object({ component: z.string(), ok: z.boolean() }).passthrough()),
  }).passthrough(),
  startedAt: z.string().optional(),
  ...traced,
});

export interface DrillSummary {
  ok: boolean;
  from: string;
  vault: string;
  readData: unknown;
  manifests: number;
  chunksRead: number;
  damagedBackups: string[];
  restores: Record<string, unknown>[];
  failed: { component: string; step: string; errorName: string; error: string; alerted: boolean }[];
  /** Continuous components: the measured RPO (drill time minus the newest commit the drill restored) next to the target. */
  rpo: MeasuredRpo[];
  error: string;
  cause: string;
}

export interface MeasuredRpo {
  component: string;
  /** The component's rpo, or null when it has none. */
  target: string | null;
  /** The newest commit the drill's restore reached (null: the restore failed). */
  newestRestorableCommit: string | null;
  measuredRpoMs: number | null;
  /** Measured within the target (null without a target or a measurement). */
  ok: boolean | null;
}

/** The measured RPO of every continuous component the drill restored. */
export function measuredRpos(cfg: HandlerDeps['cfg'], results: { component: string; ok: boolean }[], now: Date): MeasuredRpo[] {
  const out: MeasuredRpo[] = [];
  for (const r of results) {
    const c = cfg.components[r.component];
    if (!c || !continuousOf(c)) continue;
    const point = (r as { validation?: { recoveryPoint?: unknown } }).validation?.recoveryPoint;
    const at = r.ok && typeof point === 'string' ? point : null;
    const ms = at ? Math.max(0, now.getTime() - Date.parse(at)) : null;
    out.push({ component: r.component, target: c.rpo ?? null, newestRestorableCommit: at, measuredRpoMs: ms, ok: ms === null || !c.rpo ? null : ms <= durationMs(c.rpo) });
  }
  return out;
}

export function makeHandler(deps: HandlerDeps) {
  return async (event: unknown): Promise<DrillSummary> => {
    const e = parseEvent(finishDrillInput, event, 'finish-drill input');
    const log = invocationLog(deps, 'finish-drill', e);
    const { plan, verify, results } = e.state;
    const failed: DrillSummary['failed'] = results.filter((r) => !r.ok).map((r) => {
      const err = (r as { error?: { Error?: string; Cause?: string } }).error;
      return {
        component: r.component, step: String((r as { step?: unknown }).step ?? 'restore'), errorName: err?.Error ?? 'Error', error: causeMessage(err?.Cause),
        alerted: (r as { alerted?: unknown }).alerted === true,
      };
    });
    if (!verify.ok) {
      const chain = ((verify as { chainProblems?: { detail: string }[] }).chainProblems ?? []).map((c) => c.detail);
      const lines = [...chain, ...verify.damagedManifests.map((d) => `manifest ${d.key}: ${d.error}`), ...verify.problems.map((p) => p.detail)];
      await deps.alerts.send({
        severity: 'error', subject: 'vault verification found damage', step: 'verify', time: deps.clock.now().toISOString(),
        message: `${verify.vault}: ${lines.length} problem(s); damaged backups: ${verify.damagedBackups.join(', ')}`,
        cause: lines.slice(0, 5).join('; '), details: { executionId: e.executionId, damagedBackups: verify.damagedBackups },
      });
    }
    const ok = verify.ok && failed.length === 0;
    // 1 pass, 0 fail per drilled component: its restore failed, or the vault check found its backup
    // damaged (damage that names none of the drilled backups fails them all).
    const drilled = (plan.items ?? []) as { component: string; backupId: string; manifestKey: string }[];
    // damagedBackups name backups as <component>/<backup id> (or a damaged manifest's key).
    const isDamaged = (i: { component: string; backupId: string; manifestKey: string } | undefined) =>
      i !== undefined && verify.damagedBackups.some((d) => d === `${i.component}/${i.backupId}` || d === i.manifestKey || d === i.backupId);
    const attributed = drilled.some(isDamaged);
    emitMetrics(deps, results.map((r) => {
      const damaged = !verify.ok && (!attributed || isDamaged(drilled.find((i) => i.component === r.component)));
      return { name: METRICS.drillResult, value: r.ok && !damaged ? 1 : 0, dimension: r.component };
    }));
    if (ok) await fs.rm(plan.sandbox, { recursive: true, force: true });
    const problems = [
      ...(verify.ok ? [] : [`vault ${verify.vault}: damaged backups ${verify.damagedBackups.join(', ')}`]),
      ...failed.map((f) => `${f.component} at ${f.step}: ${f.errorName}: ${f.error}`),
    ];
    // What masking changed per component and rule (sanitized drill restores), for the audit record.
    const masked = results.flatMap((r) => {
      const m = (r as { masking?: { rules?: { rule: string; touched: number; unit: string }[] } | null }).masking;
      return m?.rules ? [[r.component, m.rules.map((x) => ({ rule: x.rule, touched: x.touched, unit: x.unit }))] as const] : [];
    });
    if (plan.from === 'primary' || plan.from === 'secondary') {
      const vault = await deps.openVault(plan.from).catch((err) => { log.warn('audit record not stored', { error: String(err) }); return null; });
      if (vault) {
        const started = e.startedAt;
        await recordAudit(vault, {
          op: 'drill', result: ok ? 'ok' : 'failed', actor: auditActor(process.env, e.executionId),
          startedAt: typeof started === 'string' ? started : deps.clock.now().toISOString(), endedAt: deps.clock.now().toISOString(),
          components: results.map((r) => r.component), backupIds: drilled.map((i) => i.backupId),
          ...(ok ? {} : { error: problems.join(' | ') }),
          details: { sandbox: plan.sandbox, readData: plan.readData, failedComponents: failed.map((f) => f.component), ...(masked.length ? { masking: Object.fromEntries(masked) } : {}) },
        }, log);
      }
    }
    const rpo = measuredRpos(deps.cfg, results, deps.clock.now());
    for (const m of rpo) log.info('measured rpo', { ...m });
    log.info('drill finished', { ok, failed: failed.map((f) => f.component), damaged: verify.damagedBackups.length });
    return json({
      ok, from: plan.from, vault: verify.vault, readData: plan.readData, manifests: verify.manifests, chunksRead: verify.chunksRead,
      damagedBackups: verify.damagedBackups, restores: results.filter((r) => r.ok), failed, rpo,
      // Every failure here was alerted (send-alert per component; vault damage above):
      // the cause says so, and the EventBridge failure rule does not alert again.
      error: ok ? '' : 'DrillFailed',
      cause: ok ? '' : `${failed.every((f) => f.alerted) ? ALERTED_CAUSE_PREFIX : ''}verification drill failed: ${problems.join(' | ')}`,
    });
  };
}

export const handler = lazyHandler(makeHandler);
