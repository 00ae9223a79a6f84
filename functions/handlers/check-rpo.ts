// check-rpo: the recovery point objective watch. For every component with an
// `rpo`, the newest backup in the primary vault's authenticated catalog (a
// backup exists only once its manifest is written, and only if it opens under
// the vault key) must be younger than the rpo; each component
// that breaches it gets an alert naming it, its newest backup and its age.
import { z } from 'zod';
import { readCatalog } from '../core/catalog.ts';
import { durationMs } from '../core/config.ts';
import { nextRun } from '../core/cron.ts';
import { type HandlerDeps, emitMetrics, invocationLog, json, lazyHandler, parseEvent, traced } from './deps.ts';
import { METRICS, seconds } from './metrics.ts';

export const checkRpoInput = z.object({ ...traced }).passthrough();

export interface RpoStatus {
  component: string;
  rpo: string;
  newestBackup: string | null;
  newestTime: string | null;
  ageMs: number | null;
  breached: boolean;
  /** For a component with no backup yet: when its first scheduled backup was due. */
  firstBackupDue?: string | null;
}

export interface RpoReport {
  checkedAt: string;
  components: RpoStatus[];
  breaches: RpoStatus[];
  breached: boolean;
  error: string;
  cause: string;
}

function hours(ms: number): string {
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

export function makeHandler(deps: HandlerDeps) {
  return async (event: unknown): Promise<RpoReport> => {
    const e = parseEvent(checkRpoInput, event, 'rpo-watch input');
    const log = invocationLog(deps, 'check-rpo', e);
    const now = deps.clock.now();
    const vault = await deps.openVault('primary');
    // Only backups that open count: a name planted in the vault never makes a component look healthy.
    const catalog = (await readCatalog(vault, { now })).entries;
    const components: RpoStatus[] = [];
    // The age of every component's newest backup (with or without an rpo) for the dashboard.
    emitMetrics(deps, Object.keys(deps.cfg.components).flatMap((name) => {
      const newest = catalog.find((r) => r.component === name);
      return newest ? [{ name: METRICS.lastBackupAge, value: seconds(now.getTime() - newest.time.getTime()), dimension: name }] : [];
    }));
    const vaultCreated = new Date(vault.doc.createdAt);
    for (const [name, c] of Object.entries(deps.cfg.components)) {
      if (!c.rpo) continue;
      const newest = catalog.find((r) => r.component === name);
      const ageMs = newest ? now.getTime() - newest.time.getTime() : null;
      // Without any backup yet, the rpo runs from the first scheduled backup after the vault was
      // made (right after a deploy nothing is late yet); unscheduled components from the vault's creation.
      const firstDue = newest ? null : c.schedule ? nextRun(c.schedule, vaultCreated, c.timezone) : vaultCreated;
      const breached = newest ? ageMs! > durationMs(c.rpo) : now.getTime() > firstDue!.getTime() + durationMs(c.rpo);
      components.push({ component: name, rpo: c.rpo, newestBackup: newest?.id ?? null, newestTime: newest?.time.toISOString() ?? null, ageMs, breached, firstBackupDue: firstDue?.toISOString() ?? null });
    }
    const breaches = components.filter((s) => s.breached);
    for (const b of breaches) {
      const cause = b.newestTime ? `newest backup ${b.newestBackup} is ${hours(b.ageMs!)} old (at ${b.newestTime}); rpo is ${b.rpo}` : `no backup at all in ${vault.storage.url}, though the first was due at ${b.firstBackupDue}; rpo is ${b.rpo}`;
      await deps.alerts.send({
        severity: 'error', subject: `rpo breached: ${b.component}`, component: b.component, step: 'rpo-watch', cause,
        message: `${b.component} has no backup within its recovery point objective: ${cause}`, time: now.toISOString(),
        details: { executionId: e.executionId, ...b },
      });
      log.warn('rpo breached', { component: b.component, ageMs: b.ageMs, rpo: b.rpo });
    }
    return json({
      checkedAt: now.toISOString(), components, breaches, breached: breaches.length > 0,
      error: breaches.length ? 'RpoBreached' : '',
      cause: breaches.length ? `rpo breached by ${breaches.map((b) => b.component).join(', ')}` : '',
    });
  };
}

export const handler = lazyHandler(makeHandler);
