// replicate: copies the backups the secondary (DR) vault lacks from the primary
// (core/replicate.ts: only backups that open, each manifest after its chunks,
// under shared locks on both vaults). Objects never change, so this is
// idempotent and a retry resumes the copy. Opening both vaults first proves
// each region's key opens its vault.
import { z } from 'zod';
import { replicate, type ReplicateReport } from '../core/replicate.ts';
import { type HandlerDeps, invocationLog, json, lazyHandler, parseEvent, traced } from './deps.ts';

export const replicateInput = z.object({ runId: z.string().optional(), ...traced });

export function makeHandler(deps: HandlerDeps) {
  return async (event: unknown): Promise<ReplicateReport & { skipped: boolean }> => {
    const e = parseEvent(replicateInput, event, 'replicate input');
    const log = invocationLog(deps, 'replicate', e);
    if (!deps.cfg.vault.secondary) {
      log.info('no secondary vault configured: nothing to replicate');
      return { from: '', to: '', chunksCopied: 0, manifestsCopied: 0, bytesCopied: 0, alreadyPresent: 0, skipped: true, notCopied: [], durationMs: 0 };
    }
    const [p, s] = await Promise.all([deps.openVault('primary'), deps.openVault('secondary')]);
    const r = await replicate(p, s, { now: deps.clock.now() });
    if (r.notCopied.length) log.warn('objects of the primary that are not backups were not copied', { objects: r.notCopied });
    log.info('replicated', { ...r, notCopied: r.notCopied.length });
    return json({ ...r, skipped: false });
  };
}

export const handler = lazyHandler(makeHandler);
