// validate-restore: checks restored data with the driver's validation (row
// counts and content hashes, integrity_check, file checksums), not just that
// the restore ran. Any failed check is an IntegrityError naming the component
// and each check with expected and actual values.
//
// With "poll": true (the restore state machine), a driver that restores into a
// service (rds-snapshot, aurora-snapshot: a new instance takes many minutes,
// more than a Lambda may run) is asked for ONE non-blocking look
// (validateOnce); while the database is not ready the result is ready=false
// and the state machine waits pollSeconds and calls again with the previous
// result, until ready or the component's timeoutMinutes since the first look
// (then an IntegrityError). Other drivers, and calls without "poll", validate
// in one go as before.
//
// On AWS this runs in another function than restore-component: it validates by
// connecting to the network target of the item's options (row counts and
// checksums per table, key counts and digests, object sizes and SHA-256), and
// refuses an item that would validate a directory (requireNetworkTarget).
import { z } from 'zod';
import { IntegrityError } from '../core/errors.ts';
import type { Driver, DriverValidateContext, ValidationReport } from '../components/types.ts';
import { hasDrillCheck } from '../components/types.ts';
import { type HandlerDeps, invocationLog, json, lazyHandler, parseEvent, traced } from './deps.ts';
import { loadItem, requireNetworkTarget, restoreItem, restoredResult } from './restore-common.ts';
import { runRecoveryChecks } from '../components/checks.ts';
import { report } from '../components/types.ts';
import { runAfterHooks } from '../components/hooks.ts';
import { maskRules } from '../components/mask-run.ts';

/** Seconds the restore state machine waits between looks at a restoring database. */
export const VALIDATE_POLL_SECONDS = 60;

export const validateRestoreInput = z.object({
  item: restoreItem,
  restored: restoredResult,
  poll: z.boolean().default(false),
  /** The previous result of this step in the Wait+poll loop. */
  previous: z.object({ ready: z.boolean(), waitingSince: z.string().nullable().optional() }).passthrough().nullable().optional(),
  ...traced,
});

export interface ValidationStep extends ValidationReport {
  /** False while the restored database is still being created (the state machine polls again). */
  ready: boolean;
  status: string;
  pollSeconds: number;
  /** When the first look found it not ready. */
  waitingSince: string | null;
}

type OnceDriver = Driver<any> & { validateOnce(ctx: DriverValidateContext<any>): Promise<{ ready: boolean; status: string; report: ValidationReport }> };

function hasValidateOnce(d: Driver<any>): d is OnceDriver {
  return typeof (d as Partial<OnceDriver>).validateOnce === 'function';
}

export function makeHandler(deps: HandlerDeps) {
  return async (event: unknown): Promise<ValidationStep> => {
    const e = parseEvent(validateRestoreInput, event, 'validate-restore input');
    const log = invocationLog(deps, 'validate-restore', { executionId: e.executionId, component: e.item.component });
    const { vault, manifest, settings, driver, resolve } = await loadItem(deps, e.item);
    if (!(e.item.drill && hasDrillCheck(driver))) requireNetworkTarget(deps, driver, e.item, 'validate-restore');
    const ctx: DriverValidateContext<any> = {
      component: e.item.component, settings: settings as never, manifest, vault,
      target: { dir: e.item.targetDir, ...(e.item.options ? { options: e.item.options } : {}) }, location: e.restored.location, resolve, log,
      ...(e.restored.masking ? { masked: e.restored.masking } : {}),
    };
    // A sanitized item of a component with rules must arrive masked (never validated as if it were).
    if (e.item.sanitize && maskRules(settings).length > 0 && !e.restored.masking && !(e.item.drill && hasDrillCheck(driver))) {
      throw new IntegrityError(`restored ${e.item.component} (backup ${manifest.id}) at ${e.restored.location}: a sanitized restore without a masking result; its mask rules were not applied`);
    }
    let v: ValidationReport;
    let status = 'validated';
    const now = deps.clock.now();
    const waitingSince = e.previous?.waitingSince ?? null;
    if (e.item.drill && hasDrillCheck(driver)) {
      v = await driver.drillCheck({ component: e.item.component, manifest });
    } else if (e.poll && hasValidateOnce(driver)) {
      const once = await driver.validateOnce(ctx);
      status = once.status;
      if (!once.ready) {
        const since = waitingSince ?? now.toISOString();
        const minutes = Number(e.item.options?.timeoutMinutes ?? (settings as { timeoutMinutes?: number }).timeoutMinutes ?? 360);
        if (now.getTime() - Date.parse(since) >= minutes * 60_000) {
          throw new IntegrityError(`restored ${e.item.component} (backup ${manifest.id}) at ${e.restored.location} is still ${once.status} after ${minutes} minutes (waiting since ${since}); check it in the console, or raise timeoutMinutes`);
        }
        log.info('restored database not ready yet', { status: once.status, waitingSince: since });
        return json({ ...once.report, ok: false, ready: false, status: once.status, pollSeconds: VALIDATE_POLL_SECONDS, waitingSince: since });
      }
      v = once.report;
    } else {
      v = await driver.validate(ctx);
    }
    if (e.restored.masking) {
      const m = e.restored.masking;
      v = report([...v.checks, { name: `masking: ${m.rules.length} rule(s) applied after ${m.validatedBeforeMasking} checks against the backup passed`, ok: true, actual: m.note }]);
    }
    // The component's recovery checks (config checks:) after the driver's own, in restores and in drills;
    // not for a snapshot drill, which restores nothing to check.
    const checks = deps.cfg.components[e.item.component]?.checks ?? [];
    if (checks.length > 0 && !(e.item.drill && hasDrillCheck(driver))) {
      const ran = await runRecoveryChecks({ component: e.item.component, kind: manifest.kind, location: e.restored.location, options: e.item.options ?? undefined }, checks);
      v = report([...v.checks, ...ran]);
    }
    // After-hooks of a restore that is not in place (an in-place one runs them after promote-restore
    // put the data live), never of a drill.
    if (!e.item.drill && !e.item.inPlace) {
      const failed = await runAfterHooks(settings, 'afterRestore', { component: e.item.component, kind: manifest.kind, location: e.restored.location, result: v.ok ? 'ok' : 'failed' });
      if (failed.length) v = report([...v.checks, ...failed.map((f) => ({ name: 'afterRestore hook', ok: false, expected: 'success', actual: f }))]);
    } else if (!e.item.drill && !v.ok) {
      // In place and invalid: nothing will be promoted, the live data stays; the after-hooks
      // start the service the before-hooks stopped, told the restore failed.
      const failed = await runAfterHooks(settings, 'afterRestore', { component: e.item.component, kind: manifest.kind, location: e.restored.location, result: 'failed' });
      if (failed.length) log.warn('afterRestore hooks failed after a failed restore', { problems: failed });
    }
    if (!v.ok) {
      const bad = v.checks.filter((c) => !c.ok).map((c) => `${c.name}: expected ${JSON.stringify(c.expected)}, got ${JSON.stringify(c.actual)}`);
      throw new IntegrityError(`restored ${e.item.component} (backup ${manifest.id}) failed validation at ${e.restored.location}: ${bad.join('; ')}`);
    }
    log.info('restore validated', { checks: v.checks.length });
    // The recovery point of a continuous component's restore rides with the validation (the drill reports it).
    return json({ ...v, ready: true, status, pollSeconds: VALIDATE_POLL_SECONDS, waitingSince, ...(e.restored.recoveryPoint ? { recoveryPoint: e.restored.recoveryPoint } : {}) });
  };
}

export const handler = lazyHandler(makeHandler);
