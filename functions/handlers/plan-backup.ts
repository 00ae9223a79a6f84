// plan-backup: the first step of backup-run. Turns the execution input into
// the list of components to back up, one Map item each:
//   {"schedule": "0 2 * * *"[, "timezone": "UTC"]}  components with that cron
//                                                   (each with its scheduleType)
//   {"type": "full"|"incremental"|"critical"[, "components": [...]]}
// plus "replicate": false to skip the copy to the secondary vault. Each item
// says whether the component's driver streams ('stream') or drives a service
// snapshot ('snapshot'), which picks the branch in the state machine.
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { selectComponents } from '../core/backup.ts';
import { BACKUP_TYPES, type BackupType } from '../core/manifest.ts';
import type { MemvaultConfig } from '../core/config.ts';
import { UsageError } from '../core/errors.ts';
import { type HandlerDeps, invocationLog, json, lazyHandler, parseEvent, traced } from './deps.ts';

const EXAMPLE = '{"type":"incremental","components":["memory-db"]} or {"schedule":"0 2 * * *"}';

export const planBackupInput = z.object({
  request: z.object({
    schedule: z.string().optional(),
    timezone: z.string().optional(),
    type: z.enum(BACKUP_TYPES as [BackupType, ...BackupType[]]).optional(),
    components: z.array(z.string()).optional(),
    replicate: z.boolean().default(true),
  }).strict(),
  ...traced,
});

export interface BackupItem {
  component: string;
  kind: string;
  mode: 'stream' | 'snapshot';
  type: BackupType;
}

export interface BackupPlan {
  runId: string;
  replicate: boolean;
  items: BackupItem[];
}

/** Components that share a cron (and time zone), as the scheduler and the CDK app group them. */
export interface ScheduleGroup {
  cron: string;
  timezone: string;
  components: string[];
  /** The backup-run input for this group. */
  input: { schedule: string; timezone: string };
}

export function scheduleGroups(cfg: MemvaultConfig): ScheduleGroup[] {
  const groups = new Map<string, ScheduleGroup>();
  for (const [name, c] of Object.entries(cfg.components)) {
    if (!c.schedule) continue;
    const key = `${c.schedule}|${c.timezone}`;
    let g = groups.get(key);
    if (!g) {
      g = { cron: c.schedule, timezone: c.timezone, components: [], input: { schedule: c.schedule, timezone: c.timezone } };
      groups.set(key, g);
    }
    g.components.push(name);
  }
  return [...groups.values()];
}

export function makeHandler(deps: HandlerDeps) {
  return async (event: unknown): Promise<BackupPlan> => {
    const e = parseEvent(planBackupInput, event, 'backup-run input', EXAMPLE);
    const log = invocationLog(deps, 'plan-backup', e);
    const { cfg } = deps;
    const r = e.request;
    let picked: { component: string; type: BackupType }[];
    if (r.schedule !== undefined) {
      if (r.type !== undefined || r.components !== undefined) throw new UsageError(`backup-run input: give either "schedule" or "type"/"components", not both; e.g. ${EXAMPLE}`);
      const names = Object.entries(cfg.components)
        .filter(([, c]) => c.schedule?.trim() === r.schedule!.trim() && (r.timezone === undefined || c.timezone === r.timezone))
        .map(([n]) => n);
      if (names.length === 0) {
        const known = [...new Set(Object.values(cfg.components).map((c) => c.schedule).filter(Boolean))];
        throw new UsageError(`backup-run input: schedule: no component has schedule "${r.schedule}"${r.timezone ? ` in ${r.timezone}` : ''}; configured schedules: ${known.map((s) => `"${s}"`).join(', ') || '(none)'}`);
      }
      picked = names.map((n) => ({ component: n, type: cfg.components[n].scheduleType }));
    } else {
      const type = r.type ?? 'incremental';
      picked = selectComponents(cfg, type, r.components).map((n) => ({ component: n, type }));
    }
    const now = deps.clock.now();
    const plan: BackupPlan = {
      // The start time orders runs; the execution's digest keeps two executions
      // started in the same millisecond (or under a frozen clock) apart, since a
      // retried step recognizes its own run's backups by this id.
      runId: `run-${now.toISOString().replace(/[-:.]/g, '')}${e.executionId ? `-${createHash('sha256').update(e.executionId).digest('hex').slice(0, 8)}` : ''}`,
      replicate: r.replicate && cfg.vault.secondary !== undefined,
      items: picked.map(({ component, type }) => {
        const kind = cfg.components[component].kind;
        return { component, kind, mode: deps.driverFor(kind).mode, type };
      }),
    };
    log.info('backup run planned', { runId: plan.runId, components: plan.items.map((i) => i.component) });
    return json(plan);
  };
}

export const handler = lazyHandler(makeHandler);
