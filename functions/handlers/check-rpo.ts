// check-rpo: the recovery point objective watch. For a component with
// `continuous:` (its WAL shipped into the vault between backups) the recovery
// point is the newer of its newest backup and its newest shipped commit that
// opens under the vault key (core/continuous.ts): the alert then names the
// shipping lag. For every component with an
// `rpo`, the newest backup in the primary vault's authenticated catalog (a
// backup exists only once its manifest is written, and only if it opens under
// the vault key) must be younger than the rpo; each component
// that breaches it gets an alert naming it, its newest backup and its age.
//
// With a secondary (DR) vault, the same holds for the DR copy: a component
// whose newest backup in the secondary is older than its rpo (while the
// primary's is not: that is the rpo breach above) gets a "DR lag" alert. A failed replication does not fail the backup run that hit it (the
// next run copies what is missing), so this is where a replication that keeps
// failing shows. A secondary that cannot be read is one alert too, and does
// not stop the primary's check.
import { z } from 'zod';
import { readCatalog } from '../core/catalog.ts';
import { durationMs, type MemvaultConfig } from '../core/config.ts';
import { nextRun } from '../core/cron.ts';
import { ALERTED_CAUSE_PREFIX, errorMessage } from '../core/errors.ts';
import type { Vault } from '../core/vault.ts';
import { continuousOf, newestShipped } from '../core/continuous.ts';
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
  /** Continuous components: the newest shipped commit and how far behind now it is. */
  continuous?: { newestShipped: string | null; lagMs: number | null };
}

export interface RpoReport {
  checkedAt: string;
  components: RpoStatus[];
  breaches: RpoStatus[];
  /** The secondary vault's copy, per component with an rpo (empty without a secondary). */
  dr: RpoStatus[];
  /** Components whose DR copy is older than their rpo while the primary's is not (replication behind). */
  drLag: RpoStatus[];
  /** Why the secondary vault could not be checked, or null. */
  drError: string | null;
  breached: boolean;
  error: string;
  cause: string;
}

function hours(ms: number): string {
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

/** The rpo status of every component with an rpo, in one vault. */
async function statuses(cfg: MemvaultConfig, vault: Vault, now: Date): Promise<{ list: RpoStatus[]; newest: Map<string, Date> }> {
  // Only backups that open count: a name planted in the vault never makes a component look healthy.
  const catalog = (await readCatalog(vault, { now })).entries;
  const newest = new Map<string, Date>();
  for (const name of Object.keys(cfg.components)) {
    const n = catalog.find((r) => r.component === name);
    if (n) newest.set(name, n.time);
  }
  const vaultCreated = new Date(vault.doc.createdAt);
  const list: RpoStatus[] = [];
  for (const [name, c] of Object.entries(cfg.components)) {
    if (!c.rpo) continue;
    const n = catalog.find((r) => r.component === name);
    const ageMs = n ? now.getTime() - n.time.getTime() : null;
    // Without any backup yet, the rpo runs from the first scheduled backup after the vault was
    // made (right after a deploy nothing is late yet); unscheduled components from the vault's creation.
    const firstDue = n ? null : c.schedule ? nextRun(c.schedule, vaultCreated, c.timezone) : vaultCreated;
    let breached = n ? ageMs! > durationMs(c.rpo) : now.getTime() > firstDue!.getTime() + durationMs(c.rpo);
    let continuous: RpoStatus['continuous'];
    if (continuousOf(c)) {
      // The recovery point is the newer of the newest backup and the newest shipped commit.
      const shipped = (await newestShipped(vault, name)).newest;
      const lagMs = shipped ? now.getTime() - shipped.time.getTime() : null;
      continuous = { newestShipped: shipped?.time.toISOString() ?? null, lagMs };
      if (lagMs !== null && n) breached = Math.min(lagMs, ageMs!) > durationMs(c.rpo);
    }
    list.push({ component: name, rpo: c.rpo, newestBackup: n?.id ?? null, newestTime: n?.time.toISOString() ?? null, ageMs, breached, firstBackupDue: firstDue?.toISOString() ?? null, ...(continuous ? { continuous } : {}) });
  }
  return { list, newest };
}

function lateness(b: RpoStatus, url: string): string {
  if (b.continuous?.lagMs != null) {
    return `shipped WAL is ${(b.continuous.lagMs / 1000).toFixed(0)} s behind (lag; newest shipped commit at ${b.continuous.newestShipped}), newest backup ${b.newestBackup} is ${hours(b.ageMs!)} old; rpo is ${b.rpo}`;
  }
  return b.newestTime
    ? `newest backup ${b.newestBackup} is ${hours(b.ageMs!)} old (at ${b.newestTime}); rpo is ${b.rpo}`
    : `no backup at all in ${url}, though the first was due at ${b.firstBackupDue}; rpo is ${b.rpo}`;
}

export function makeHandler(deps: HandlerDeps) {
  return async (event: unknown): Promise<RpoReport> => {
    const e = parseEvent(checkRpoInput, event, 'rpo-watch input');
    const log = invocationLog(deps, 'check-rpo', e);
    const now = deps.clock.now();
    const vault = await deps.openVault('primary');
    const primary = await statuses(deps.cfg, vault, now);
    // The age of every component's newest backup (with or without an rpo) for the dashboard.
    emitMetrics(deps, [...primary.newest].map(([name, t]) => ({ name: METRICS.lastBackupAge, value: seconds(now.getTime() - t.getTime()), dimension: name })));
    const components = primary.list;
    const breaches = components.filter((s) => s.breached);
    for (const b of breaches) {
      const cause = lateness(b, vault.storage.url);
      await deps.alerts.send({
        severity: 'error', subject: `rpo breached: ${b.component}`, component: b.component, step: 'rpo-watch', cause,
        message: `${b.component} has no backup within its recovery point objective: ${cause}`, time: now.toISOString(),
        details: { executionId: e.executionId, ...b },
      });
      log.warn('rpo breached', { component: b.component, ageMs: b.ageMs, rpo: b.rpo });
    }

    let dr: RpoStatus[] = [];
    let drError: string | null = null;
    if (deps.cfg.vault.secondary && components.length > 0) {
      let secondaryUrl = deps.cfg.vault.secondary.url;
      try {
        const secondary = await deps.openVault('secondary');
        secondaryUrl = secondary.storage.url;
        dr = (await statuses(deps.cfg, secondary, now)).list;
      } catch (err) {
        drError = `${(err as Error).name ?? 'Error'}: ${errorMessage(err)}`;
        await deps.alerts.send({
          severity: 'error', subject: 'DR lag: secondary vault unreadable', step: 'rpo-watch', cause: drError, time: now.toISOString(),
          message: `the secondary vault ${secondaryUrl} could not be checked, so its copies' age is unknown: ${drError}`,
          details: { executionId: e.executionId },
        });
        log.warn('secondary vault not checked', { error: drError });
      }
      // A component late in the primary is alerted as such; its DR copy is then late by implication.
      const latePrimary = new Set(breaches.map((b) => b.component));
      dr = dr.map((s) => ({ ...s, breached: s.breached && !latePrimary.has(s.component) }));
      for (const b of dr.filter((s) => s.breached)) {
        const cause = `${lateness(b, secondaryUrl)} (replication to the secondary vault is behind)`;
        await deps.alerts.send({
          severity: 'error', subject: `DR lag: ${b.component}`, component: b.component, step: 'rpo-watch', cause,
          message: `the DR copy of ${b.component} is older than its recovery point objective: ${cause}`, time: now.toISOString(),
          details: { executionId: e.executionId, vault: 'secondary', ...b },
        });
        log.warn('DR copy behind its rpo', { component: b.component, ageMs: b.ageMs, rpo: b.rpo });
      }
    }
    const drLag = dr.filter((s) => s.breached);
    const problems = [
      ...(breaches.length ? [`rpo breached by ${breaches.map((b) => b.component).join(', ')}`] : []),
      ...(drLag.length ? [`DR copy older than the rpo for ${drLag.map((b) => b.component).join(', ')}`] : []),
      ...(drError ? [`secondary vault unreadable: ${drError}`] : []),
    ];
    const breached = problems.length > 0;
    return json({
      checkedAt: now.toISOString(), components, breaches, dr, drLag, drError, breached,
      error: breached ? 'RpoBreached' : '',
      // Each problem was alerted above, so the failed execution is not alerted again.
      cause: breached ? `${ALERTED_CAUSE_PREFIX}${problems.join('; ')}` : '',
    });
  };
}

export const handler = lazyHandler(makeHandler);
