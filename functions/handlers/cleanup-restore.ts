// cleanup-restore: the last step of each component of a verification drill,
// on success and (from the Catch path) on failure alike: removes what the
// drill restored into the component's scratch target (drops the scratch
// database, flushes the scratch redis databases, deletes the objects,
// parameters and secrets; components/drill.ts). Removing what is not there is
// fine, so it may run after a restore that failed before writing anything.
// Sandbox directories (local drills) are removed by finish-drill; snapshot
// kinds restored nothing. A failed cleanup throws an error naming the scratch
// target left behind; the state machine alerts with it.
import { z } from 'zod';
import { MemvaultError, PermanentError, RetryableError } from '../core/errors.ts';
import { hasDrillCheck, hasDrillTargets } from '../components/types.ts';
import { type HandlerDeps, invocationLog, json, lazyHandler, parseEvent, traced } from './deps.ts';
import { describeScratch, isNetworkItem, loadItem, restoreItem } from './restore-common.ts';

export const cleanupRestoreInput = z.object({ item: restoreItem, ...traced });

export interface Cleaned {
  component: string;
  /** What was removed, or why nothing was. */
  cleaned: string;
}

export function makeHandler(deps: HandlerDeps) {
  return async (event: unknown): Promise<Cleaned> => {
    const e = parseEvent(cleanupRestoreInput, event, 'cleanup-restore input');
    const log = invocationLog(deps, 'cleanup-restore', { executionId: e.executionId, component: e.item.component });
    const { manifest, settings, driver } = await loadItem(deps, e.item);
    if (!e.item.drill) return json({ component: e.item.component, cleaned: 'not a drill: restored data is kept' });
    if (hasDrillCheck(driver) || !isNetworkItem(driver, e.item.options) || !hasDrillTargets(driver)) {
      return json({ component: e.item.component, cleaned: 'no scratch target (sandbox directories go with the drill)' });
    }
    const where = describeScratch(e.item.component, settings, e.item.options);
    let cleaned: string;
    try {
      cleaned = await driver.cleanupTarget({ component: e.item.component, settings: settings as never, manifest, target: { dir: '', options: e.item.options ?? undefined }, log });
    } catch (err) {
      const msg = `drill cleanup of ${e.item.component} failed; remove the scratch data by hand: ${where}: ${(err as Error).message}`;
      // The same error (its name is what Retry/Catch match), with the scratch target in the message.
      if (err instanceof MemvaultError) {
        err.message = msg;
        throw err;
      }
      throw isRetryableLike(err) ? new RetryableError(msg, { cause: err }) : new PermanentError(msg, { cause: err });
    }
    log.info('drill scratch target cleaned up', { target: where, cleaned });
    return json({ component: e.item.component, cleaned });
  };
}

function isRetryableLike(err: unknown): boolean {
  const code = (err as { code?: string }).code ?? '';
  return ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EAI_AGAIN'].includes(code);
}

export const handler = lazyHandler(makeHandler);
