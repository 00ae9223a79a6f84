// restore-component: restores one planned backup of one component into its
// target: a network target named by the item's options (a database, a bucket
// prefix, a new instance; a drill's scratch target), or, locally, its target
// directory (sandbox, or the staging directory of an in-place restore).
// Each file is checked chunk by chunk and by SHA-256 before it is renamed into
// place; validation of the whole is the next step (validate-restore), which on
// AWS runs in another function: there a restore into a directory is refused
// (requireNetworkTarget), it would stay in this function's /tmp. A sandbox
// target is checked again (checkRestoreTarget: never live data) right before
// anything is written.
import path from 'node:path';
import { z } from 'zod';
import { checkRestoreTarget } from '../core/restore.ts';
import { type HandlerDeps, invocationLog, json, lazyHandler, parseEvent, traced } from './deps.ts';
import { isNetworkItem, loadItem, requireNetworkTarget, restoreItem, type Restored } from './restore-common.ts';
import { hasDrillCheck } from '../components/types.ts';
import { checkRoomForRestore, restoresIntoDirectory } from '../core/space.ts';
import { runAfterHooks, runBeforeHooks } from '../components/hooks.ts';
import { sanitizeRestored } from '../components/mask-run.ts';
import { UsageError } from '../core/errors.ts';

export const restoreComponentInput = z.object({ item: restoreItem, ...traced });

export function makeHandler(deps: HandlerDeps) {
  return async (event: unknown): Promise<Restored> => {
    const e = parseEvent(restoreComponentInput, event, 'restore-component input');
    const log = invocationLog(deps, 'restore-component', { executionId: e.executionId, component: e.item.component });
    const t0 = deps.clock.now().getTime();
    const { vault, manifest, settings, driver, resolve } = await loadItem(deps, e.item);
    if (e.item.drill && hasDrillCheck(driver)) {
      // A drill does not create a database from a service snapshot; validate-restore checks the snapshots.
      const snaps = manifest.driver as { snapshot?: { arn?: string } };
      log.info('drill of a service snapshot: checked, not restored', { backupId: manifest.id });
      return json({ component: e.item.component, backupId: manifest.id, backupTime: manifest.startedAt, location: snaps.snapshot?.arn ?? manifest.id, bytes: 0, entries: 0, durationMs: deps.clock.now().getTime() - t0, masking: null });
    }
    // A production restore never masks; a sanitized one never writes to live data.
    if (e.item.sanitize && e.item.inPlace) throw new UsageError(`restore item ${e.item.component}: a sanitized (sandbox) restore cannot be in place`);
    requireNetworkTarget(deps, driver, e.item, 'restore-component');
    const network = isNetworkItem(driver, e.item.options);
    if (!e.item.inPlace && !network) {
      await checkRestoreTarget(deps.cfg, { root: path.dirname(e.item.targetDir), components: [path.basename(e.item.targetDir)], field: `restore item ${e.item.component}: targetDir` });
    }
    // Room first (in place: the staging directory beside the live data, on the same file system).
    if (!network && restoresIntoDirectory(manifest.kind, e.item.options ?? undefined)) await checkRoomForRestore(e.item.component, manifest, e.item.targetDir);
    // Hooks act on the production service: a drill (into a sandbox) runs none.
    const hookCtx = { component: e.item.component, kind: manifest.kind, location: network ? 'network target' : e.item.targetDir };
    if (!e.item.drill) await runBeforeHooks(settings, 'beforeRestore', hookCtx);
    log.info('restore started', { backupId: manifest.id, target: network ? 'network target (item options)' : e.item.targetDir, from: e.item.from, drill: e.item.drill === true });
    const target = { dir: e.item.targetDir, ...(e.item.options ? { options: e.item.options } : {}) };
    let r: Awaited<ReturnType<typeof driver.restore>>;
    let masking: Awaited<ReturnType<typeof sanitizeRestored>> | null;
    try {
      r = await driver.restore({ component: e.item.component, settings: settings as never, manifest, vault, target, resolve, log });
      // Sanitized: masked here, before the step ends, so no other step reads the production values.
      masking = e.item.sanitize
        ? await sanitizeRestored({ driver, component: e.item.component, settings, manifest, target, location: r.location, vault, resolve, log, ...(network ? {} : { directory: e.item.targetDir }) })
        : null;
    } catch (err) {
      // The before-hooks stopped the service: the after-hooks start it again, told the restore
      // failed (nothing live was replaced), and the restore's own error goes on.
      if (!e.item.drill) {
        const failed = await runAfterHooks(settings, 'afterRestore', { ...hookCtx, result: 'failed' });
        if (failed.length) log.warn('afterRestore hooks failed after a failed restore', { problems: failed });
      }
      throw err;
    }
    const durationMs = deps.clock.now().getTime() - t0;
    log.info('restore finished', { backupId: manifest.id, location: r.location, bytes: r.bytes, durationMs });
    return json({ component: e.item.component, backupId: manifest.id, backupTime: manifest.startedAt, location: r.location, bytes: r.bytes, entries: r.entries, durationMs, ...(e.item.note ? { note: e.item.note } : {}), masking, ...(r.recoveryPoint ? { recoveryPoint: r.recoveryPoint } : {}) });
  };
}

export const handler = lazyHandler(makeHandler);
