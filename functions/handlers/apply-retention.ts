// apply-retention: forget + prune one vault (primary or secondary) by each
// component's retention policy. Prune takes the vault's exclusive lock, so a
// running backup makes it throw LockedError, which the state machine retries
// later; the newest backup of a component is never forgotten.
import { z } from 'zod';
import { applyRetention, type RetentionReport } from '../core/retention.ts';
import { type HandlerDeps, invocationLog, json, lazyHandler, parseEvent, side, traced } from './deps.ts';

export const applyRetentionInput = z.object({
  side,
  request: z.object({ dryRun: z.boolean().default(false) }).strict().default({ dryRun: false }),
  ...traced,
});

export function makeHandler(deps: HandlerDeps) {
  return async (event: unknown): Promise<RetentionReport & { side: string; skipped: boolean }> => {
    const e = parseEvent(applyRetentionInput, event, 'retention input', '{"dryRun":true}');
    const log = invocationLog(deps, 'apply-retention', e);
    if (e.side === 'secondary' && !deps.cfg.vault.secondary) {
      return { side: e.side, skipped: true, vault: '', dryRun: e.request.dryRun, forgotten: [], kept: 0, chunksPruned: 0, bytesPruned: 0, chunksKept: 0 };
    }
    const policies = Object.fromEntries(Object.entries(deps.cfg.components).map(([n, c]) => [n, c.retention]));
    const vault = await deps.openVault(e.side);
    const r = await applyRetention(vault, policies, { now: deps.clock.now(), dryRun: e.request.dryRun });
    log.info('retention applied', { side: e.side, vault: r.vault, forgotten: r.forgotten.length, chunksPruned: r.chunksPruned });
    return json({ ...r, side: e.side, skipped: false });
  };
}

export const handler = lazyHandler(makeHandler);
