// replicate: copies whatever the secondary (DR) vault lacks from the primary.
// Objects never change, so this is idempotent and a retry resumes the copy.
// Opening both vaults first proves each region's key opens its vault.
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
      return { from: '', to: '', chunksCopied: 0, manifestsCopied: 0, bytesCopied: 0, alreadyPresent: 0, durationMs: 0, skipped: true };
    }
    const [p, s] = await Promise.all([deps.openVault('primary'), deps.openVault('secondary')]);
    const r = await replicate(p.storage, s.storage);
    log.info('replicated', { ...r });
    return json({ ...r, skipped: false });
  };
}

export const handler = lazyHandler(makeHandler);
