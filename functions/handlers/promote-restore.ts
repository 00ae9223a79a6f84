// promote-restore: the last step of an in-place restore, run only after the
// staged data validated and a safety backup of the live data was taken. The
// live data is renamed aside (kept, never deleted: <live>.memvault-replaced-<time>)
// and the validated copy renamed into its place; both renames stay on one
// file system, so each is atomic. A database file's -wal, -shm and -journal
// files go aside with it: left next to the restored file, SQLite would replay
// the old WAL into it.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { compactTime } from '../core/manifest.ts';
import { IntegrityError, UsageError } from '../core/errors.ts';
import { type HandlerDeps, invocationLog, json, lazyHandler, parseEvent, traced } from './deps.ts';
import { loadItem, restoreItem, restoredResult } from './restore-common.ts';
import { runAfterHooks } from '../components/hooks.ts';
import { runRecoveryChecks } from '../components/checks.ts';

export const promoteRestoreInput = z.object({ item: restoreItem, restored: restoredResult, ...traced });

export interface Promoted {
  live: string;
  previousKeptAt: string | null;
}

export function makeHandler(deps: HandlerDeps) {
  return async (event: unknown): Promise<Promoted> => {
    const e = parseEvent(promoteRestoreInput, event, 'promote-restore input');
    const log = invocationLog(deps, 'promote-restore', { executionId: e.executionId, component: e.item.component });
    if (!e.item.inPlace || !e.item.live) throw new UsageError(`promote-restore: ${e.item.component} is not an in-place restore`);
    const live = e.item.live;
    const aside = `${live}.memvault-replaced-${compactTime(deps.clock.now())}`;
    let previousKeptAt: string | null = null;
    try {
      await fs.rename(live, aside);
      previousKeptAt = aside;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if ((await fs.lstat(e.restored.location).catch(() => null))?.isFile()) {
      for (const suffix of ['-wal', '-shm', '-journal']) {
        await fs.rename(live + suffix, aside + suffix).catch((err) => { if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err; });
      }
    }
    await fs.mkdir(path.dirname(live), { recursive: true, mode: 0o700 });
    await fs.rename(e.restored.location, live);
    await fs.rm(path.dirname(e.item.targetDir), { recursive: true, force: true });
    log.info('restored data promoted to the live location', { live, previousKeptAt });
    // Live now: the after-hooks (restart the service) and the recovery checks (it answers, the data is
    // there). A failure puts the replaced data back (rollback), runs the after-hooks again on it, and
    // fails the restore naming what failed; the restored copy is kept beside it for inspection.
    const { manifest, settings } = await loadItem(deps, e.item);
    const hookCtx = { component: e.item.component, kind: manifest.kind, location: live };
    const problems = await runAfterHooks(settings, 'afterRestore', { ...hookCtx, result: 'ok' });
    const checks = await runRecoveryChecks({ component: e.item.component, kind: manifest.kind, location: live, options: e.item.options ?? undefined }, settings.checks ?? []);
    for (const c of checks) if (!c.ok) problems.push(`${c.name}: expected ${JSON.stringify(c.expected)}, got ${JSON.stringify(c.actual)}`);
    if (problems.length > 0) {
      if (!previousKeptAt) throw new IntegrityError(`${e.item.component}: in place at ${live}: ${problems.join('; ')}; there was no previous data to roll back to`);
      const failedAt = `${live}.memvault-failed-${compactTime(deps.clock.now())}`;
      await moveWithSideFiles(live, failedAt);
      await moveWithSideFiles(previousKeptAt, live);
      const again = await runAfterHooks(settings, 'afterRestore', { ...hookCtx, result: 'failed' });
      log.warn('in-place restore rolled back', { live, failedAt, problems, hooksAfterRollback: again });
      throw new IntegrityError(`${e.item.component}: in-place restore rolled back to the replaced data at ${live} (the restored copy is kept at ${failedAt}): ${problems.join('; ')}${again.length ? `; after the rollback: ${again.join('; ')}` : ''}`);
    }
    return json({ live, previousKeptAt });
  };
}

/** Renames a file or directory and, for a database file, its -wal/-shm/-journal beside it. */
async function moveWithSideFiles(from: string, to: string): Promise<void> {
  await fs.rename(from, to);
  for (const suffix of ['-wal', '-shm', '-journal']) {
    await fs.rename(from + suffix, to + suffix).catch((err) => { if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err; });
  }
}

export const handler = lazyHandler(makeHandler);
