// The recovery report's facts (`memvault report`): per component, its backup
// history from the catalog (only backups that open count), its recovery point
// now against the rpo target, and the measured restore times and drill results
// against the rto target. cli/report-html.ts draws them; the CLI prints a text
// summary of the same facts.
//
// Where each fact comes from:
//   backups            the vault's catalog: time, type, logical size (bytesTotal),
//                      new bytes (chunks the vault did not have: what dedup saved is
//                      the rest), bytes stored, duration
//   rpo, rto targets   memvault.yaml: components.<name>.rpo / .rto
//   rpo now            the age of the newest backup; without any backup, late once the
//                      first scheduled backup plus the rpo has passed (as rpo-watch)
//   restore times      the vault's audit log: the recovery time each restore measured
//                      (restore records: `memvault restore`, the restore state machine
//                      locally and on AWS), and RestoreDurationSeconds metric points
//   drill results      the audit log's drill records (failed components named), and
//                      DrillResult metric points (1 pass, 0 fail) of verify-drill
// Metric points are read from the EMF lines of the metrics file (MEMVAULT_METRICS_FILE
// on a local install; on AWS they are in CloudWatch, which this does not read: the audit
// log in the vault has the same facts). A restore or drill that is in both counts once.
import { describeRule, ruleName, type MaskRule } from './mask.ts';
import type { MemvaultConfig } from './config.ts';
import { durationMs } from './config.ts';
import type { Catalog } from './catalog.ts';
import { nextRun } from './cron.ts';
import type { AuditRecord } from './audit.ts';

// The metric names of functions/handlers/metrics.ts (METRICS.restoreDuration, METRICS.drillResult).
const RESTORE_DURATION = 'RestoreDurationSeconds';
const DRILL_RESULT = 'DrillResult';

export interface BackupPoint {
  id: string;
  time: string;
  type: string;
  bytesTotal: number;
  newBytes: number;
  bytesStored: number;
  durationMs: number;
}

export interface RestorePoint {
  time: string;
  durationMs: number;
  /** Within the rto target; null without a target. */
  withinRto: boolean | null;
}

export interface DrillPoint {
  time: string;
  ok: boolean;
}

export interface ComponentReport {
  name: string;
  kind: string;
  critical: boolean;
  /** Backups that open, oldest first. */
  backups: BackupPoint[];
  rpo: {
    target: string | null;
    targetMs: number | null;
    newestTime: string | null;
    /** Age of the newest backup at report time; null without any backup. */
    ageMs: number | null;
    /** Over its target (no target: never). */
    exceeded: boolean;
  };
  rto: { target: string | null; targetMs: number | null };
  /** Oldest first. */
  restores: RestorePoint[];
  /** Oldest first. */
  drills: DrillPoint[];
  /** The component's mask rules, as drills and sandbox restores apply them (empty: nothing masked). */
  masking: string[];
}

export interface RecoveryReport {
  generatedAt: string;
  vault: string;
  /** The metrics file read for restores and drills, or null. */
  metricsFile: string | null;
  components: ComponentReport[];
  /** Manifests that did not open, and broken chain links (see `memvault verify`). */
  damaged: number;
  chainProblems: number;
}

export interface MetricSample {
  name: string;
  component: string;
  value: number;
  time: Date;
}

/**
 * The points of EMF lines (functions/handlers/metrics.ts) with dimension
 * Component; lines that are not EMF, or of other metrics, are skipped.
 */
export function parseMetricLines(text: string): MetricSample[] {
  const out: MetricSample[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    let doc: Record<string, unknown>;
    try {
      doc = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue;
    }
    const aws = doc._aws as { Timestamp?: unknown; CloudWatchMetrics?: { Metrics?: { Name?: unknown }[] }[] } | undefined;
    if (!aws || typeof aws.Timestamp !== 'number' || typeof doc.Component !== 'string') continue;
    for (const d of aws.CloudWatchMetrics ?? []) {
      for (const m of d.Metrics ?? []) {
        const value = typeof m.Name === 'string' ? doc[m.Name] : undefined;
        if (typeof value === 'number' && Number.isFinite(value)) {
          out.push({ name: m.Name as string, component: doc.Component, value, time: new Date(aws.Timestamp) });
        }
      }
    }
  }
  return out;
}

export interface BuildReportInput {
  cfg: MemvaultConfig;
  catalog: Catalog;
  vaultUrl: string;
  /** When the vault was created (rpo of a component with no backup yet). */
  vaultCreated: Date;
  metrics: MetricSample[];
  metricsFile: string | null;
  /** The vault's audit records (restores and drills). */
  audit?: AuditRecord[];
  now: Date;
}

/**
 * Restore times and drill results from audit records: a restore that succeeded and
 * measured its recovery time counts for each component it restored; a drill for each
 * component it drilled, failed for those it names as failed (all, in records without).
 */
export function auditSamples(records: readonly AuditRecord[]): MetricSample[] {
  const out: MetricSample[] = [];
  for (const r of records) {
    const time = new Date(r.endedAt);
    if (Number.isNaN(time.getTime())) continue;
    const d = r.details ?? {};
    if (r.op === 'restore' && r.result === 'ok' && typeof d.recoveryTimeMs === 'number') {
      for (const c of r.components) out.push({ name: RESTORE_DURATION, component: c, value: d.recoveryTimeMs / 1000, time });
    } else if (r.op === 'drill') {
      const failed = Array.isArray(d.failedComponents) ? new Set(d.failedComponents as string[]) : null;
      for (const c of r.components) out.push({ name: DRILL_RESULT, component: c, value: r.result === 'ok' || (failed !== null && !failed.has(c)) ? 1 : 0, time });
    }
  }
  return out;
}

/** Points of both sources; a point of `extra` for the same fact as one of `base` (name, component, within 10 s) is dropped. */
export function mergeSamples(base: readonly MetricSample[], extra: readonly MetricSample[]): MetricSample[] {
  const near = (a: MetricSample, b: MetricSample) => a.name === b.name && a.component === b.component && Math.abs(a.time.getTime() - b.time.getTime()) <= 10_000;
  return [...base, ...extra.filter((x) => !base.some((b) => near(b, x)))];
}

export function buildReport(i: BuildReportInput): RecoveryReport {
  const components: ComponentReport[] = [];
  const samples = mergeSamples(auditSamples(i.audit ?? []), i.metrics);
  for (const [name, c] of Object.entries(i.cfg.components)) {
    const entries = i.catalog.entries.filter((e) => e.component === name);
    const backups = entries.map((e): BackupPoint => ({
      id: e.id, time: e.time.toISOString(), type: e.type,
      bytesTotal: e.stats?.bytesTotal ?? 0, newBytes: e.stats?.newBytes ?? 0, bytesStored: e.stats?.bytesStored ?? 0, durationMs: e.stats?.durationMs ?? 0,
    })).sort((a, b) => a.time.localeCompare(b.time));
    const newest = backups.at(-1);
    const rpoMs = c.rpo ? durationMs(c.rpo) : null;
    const ageMs = newest ? i.now.getTime() - Date.parse(newest.time) : null;
    let exceeded = false;
    if (rpoMs !== null) {
      if (ageMs !== null) exceeded = ageMs > rpoMs;
      else {
        const due = c.schedule ? nextRun(c.schedule, i.vaultCreated, c.timezone) : i.vaultCreated;
        exceeded = i.now.getTime() > due.getTime() + rpoMs;
      }
    }
    const rto = typeof c.rto === 'string' ? c.rto : null;
    const rtoMs = rto ? durationMs(rto) : null;
    const mine = samples.filter((m) => m.component === name).sort((a, b) => a.time.getTime() - b.time.getTime());
    components.push({
      name, kind: c.kind, critical: c.critical === true, backups,
      rpo: { target: c.rpo ?? null, targetMs: rpoMs, newestTime: newest?.time ?? null, ageMs, exceeded },
      rto: { target: rto, targetMs: rtoMs },
      restores: mine.filter((m) => m.name === RESTORE_DURATION).map((m) => {
        const ms = Math.round(m.value * 1000);
        return { time: m.time.toISOString(), durationMs: ms, withinRto: rtoMs === null ? null : ms <= rtoMs };
      }),
      drills: mine.filter((m) => m.name === DRILL_RESULT).map((m) => ({ time: m.time.toISOString(), ok: m.value >= 1 })),
      masking: ((c.mask ?? []) as MaskRule[]).map((r, k) => `${ruleName(name, k)}: ${describeRule(r)}`),
    });
  }
  return {
    generatedAt: i.now.toISOString(), vault: i.vaultUrl, metricsFile: i.metricsFile, components,
    damaged: i.catalog.damaged.length, chainProblems: i.catalog.chain.length,
  };
}
