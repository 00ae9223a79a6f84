// verify-vault: checks a vault (after restic's checker). Metadata every run:
// every manifest opens and every chunk it references exists. Data: the chunks
// in this run's subset window (or all) are read, authenticated and their ids
// recomputed. Damage is reported, not thrown: finish-drill alerts with the
// damaged backups named.
import { z } from 'zod';
import { verifyVault } from '../core/verify.ts';
import { recordAudit, auditActor } from '../core/audit.ts';
import { verifyAudit } from '../ops.ts';
import { type HandlerDeps, invocationLog, json, lazyHandler, parseEvent, side, traced } from './deps.ts';

export const verifyVaultInput = z.object({
  from: side,
  readData: z.union([z.literal('all'), z.literal('none'), z.object({ percent: z.number(), cycleIndex: z.number().int() })]),
  ...traced,
});

export interface VerifySummary {
  ok: boolean;
  vault: string;
  manifests: number;
  chunksReferenced: number;
  chunksInVault: number;
  chunksRead: number;
  problems: { chunk: string; problem: string; detail: string; backups: string[] }[];
  damagedManifests: { key: string; error: string }[];
  chainProblems: { component: string; problem: string; detail: string }[];
  damagedBackups: string[];
}

export function makeHandler(deps: HandlerDeps) {
  return async (event: unknown): Promise<VerifySummary> => {
    const e = parseEvent(verifyVaultInput, event, 'verify-vault input');
    const log = invocationLog(deps, 'verify-vault', e);
    const vault = await deps.openVault(e.from);
    const startedAt = deps.clock.now().toISOString();
    const r = await verifyVault(vault, { readData: e.readData });
    await recordAudit(vault, { ...verifyAudit(r, startedAt, e.readData), actor: auditActor(process.env, e.executionId) }, log);
    log.info('vault verified', { vault: r.vault, ok: r.ok, manifests: r.manifests, chunksRead: r.chunksRead, problems: r.problems.length });
    return json({
      ok: r.ok, vault: r.vault, manifests: r.manifests, chunksReferenced: r.chunksReferenced, chunksInVault: r.chunksInVault, chunksRead: r.chunksRead,
      problems: r.problems.slice(0, 50), damagedManifests: r.damagedManifests.slice(0, 50),
      chainProblems: r.chainProblems.slice(0, 50).map((c) => ({ component: c.component, problem: c.problem, detail: c.detail })), damagedBackups: r.damagedBackups,
    });
  };
}

export const handler = lazyHandler(makeHandler);
