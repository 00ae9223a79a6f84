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
import { UsageError } from '../core/errors.ts';
import { type HandlerDeps, invocationLog, json, lazyHandler, parseEvent, traced } from './deps.ts';
import { restoreItem, restoredResult } from './restore-common.ts';

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
    return json({ live, previousKeptAt });
  };
}

export const handler = lazyHandler(makeHandler);
