// The in-process scheduler behind `memvault schedule`: the local counterpart of
// the EventBridge Scheduler schedules the CDK app creates from the same config.
//
//   jobs: one backup-run per group of components sharing a cron and time zone
//         (input {"schedule": CRON, "timezone": TZ}), plus verify-drill,
//         retention and rpo-watch from the config's `jobs` crons (UTC).
//   loop: sleep until the earliest next fire time; start every job due then
//         (a job still running from its previous fire is skipped, and the skip
//         is logged); log each execution's outcome as one JSON line.
import type { MemvaultConfig } from '../functions/core/config.ts';
import { nextRun } from '../functions/core/cron.ts';
import { scheduleGroups } from '../functions/handlers/plan-backup.ts';
import type { StateMachineName } from './runtime.ts';

export interface ScheduledJob {
  /** Stable label, e.g. "backup-run 0 2 * * * UTC (memory-db, config)". */
  id: string;
  stateMachine: StateMachineName;
  cron: string;
  timezone: string;
  input: Record<string, unknown>;
}

export function scheduledJobs(cfg: MemvaultConfig): ScheduledJob[] {
  const jobs: ScheduledJob[] = scheduleGroups(cfg).map((g) => ({
    id: `backup-run ${g.cron} ${g.timezone} (${g.components.join(', ')})`,
    stateMachine: 'backup-run', cron: g.cron, timezone: g.timezone, input: g.input,
  }));
  jobs.push({ id: 'verify-drill', stateMachine: 'verify-drill', cron: cfg.jobs.verifyDrill, timezone: 'UTC', input: {} });
  jobs.push({ id: 'retention', stateMachine: 'retention', cron: cfg.jobs.retention, timezone: 'UTC', input: {} });
  jobs.push({ id: 'rpo-watch', stateMachine: 'rpo-watch', cron: cfg.jobs.rpoWatch, timezone: 'UTC', input: {} });
  return jobs;
}

/** Jobs whose cron fires in (from, to]. */
export function dueJobs(jobs: ScheduledJob[], from: Date, to: Date): ScheduledJob[] {
  return jobs.filter((j) => nextRun(j.cron, from, j.timezone).getTime() <= to.getTime());
}

export interface SchedulerOptions {
  jobs: ScheduledJob[];
  /** Starts one execution and resolves with its status line. */
  start(job: ScheduledJob): Promise<{ status: string; error?: string; cause?: string; durationMs: number }>;
  log(line: Record<string, unknown>): void;
  now?: () => Date;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  signal?: AbortSignal;
}

const defaultSleep = (ms: number, signal?: AbortSignal) => new Promise<void>((resolve) => {
  const t = setTimeout(resolve, ms);
  signal?.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
});

/** Runs until the signal aborts; resolves when every started execution has ended. */
export async function runScheduler(o: SchedulerOptions): Promise<void> {
  const now = o.now ?? (() => new Date());
  const sleep = o.sleep ?? defaultSleep;
  const running = new Map<string, Promise<void>>();
  let last = now();
  o.log({ msg: 'scheduler started', jobs: o.jobs.map((j) => ({ id: j.id, cron: j.cron, timezone: j.timezone, next: nextRun(j.cron, last, j.timezone).toISOString() })) });
  while (!o.signal?.aborted) {
    const next = Math.min(...o.jobs.map((j) => nextRun(j.cron, last, j.timezone).getTime()));
    const wait = next - now().getTime();
    if (wait > 0) await sleep(Math.min(wait, 60_000), o.signal);
    if (o.signal?.aborted) break;
    const t = now();
    if (t.getTime() < next) continue;
    for (const job of dueJobs(o.jobs, last, t)) {
      if (running.has(job.id)) {
        o.log({ msg: 'skipped: previous execution still running', job: job.id, stateMachine: job.stateMachine });
        continue;
      }
      o.log({ msg: 'execution started', job: job.id, stateMachine: job.stateMachine, input: job.input });
      const p = o.start(job).then(
        (r) => o.log({ msg: 'execution finished', job: job.id, stateMachine: job.stateMachine, ...r }),
        (err) => o.log({ msg: 'execution could not start', job: job.id, stateMachine: job.stateMachine, error: (err as Error).message }),
      ).finally(() => running.delete(job.id));
      running.set(job.id, p);
    }
    last = t;
  }
  await Promise.all(running.values());
  o.log({ msg: 'scheduler stopped' });
}
