// Metrics of the handlers as CloudWatch Embedded Metric Format (EMF): one JSON
// line per dimension set, written to stdout, which Lambda ships to CloudWatch
// Logs, where CloudWatch extracts the metrics (no SDK call, no extra latency).
// A line looks like
//   {"_aws":{"Timestamp":1767225600000,"CloudWatchMetrics":[{"Namespace":"Memvault",
//    "Dimensions":[["Component"]],"Metrics":[{"Name":"NewBytes","Unit":"Bytes"}]}]},
//    "Component":"memory-db","NewBytes":1234}
// Points with different dimension values cannot share a line (the values are
// top-level fields), so points are grouped by their dimensions.
//
// The names here are the contract with the dashboard: infra/deploy-config.ts
// re-exports METRIC_NAMESPACE and METRICS from this module.
//
// Not a handler itself (no `handler` export).
import { appendFileSync } from 'node:fs';

/** CloudWatch namespace of every memvault metric. */
export const METRIC_NAMESPACE = 'Memvault';

/** Metric names, all with dimension Component except BytesStored (dimension Vault: primary | secondary). */
export const METRICS = {
  lastBackupAge: 'LastBackupAgeSeconds',
  bytesStored: 'BytesStored',
  newBytes: 'NewBytes',
  backupDuration: 'BackupDurationSeconds',
  backupFailures: 'BackupFailures',
  drillResult: 'DrillResult',
  restoreDuration: 'RestoreDurationSeconds',
} as const;
export type MetricName = (typeof METRICS)[keyof typeof METRICS];

/** The one dimension of each metric. */
export const METRIC_DIMENSION: Record<MetricName, 'Component' | 'Vault'> = {
  LastBackupAgeSeconds: 'Component',
  BytesStored: 'Vault',
  NewBytes: 'Component',
  BackupDurationSeconds: 'Component',
  BackupFailures: 'Component',
  DrillResult: 'Component',
  RestoreDurationSeconds: 'Component',
};

/** The unit of each metric. */
export const METRIC_UNIT: Record<MetricName, 'Seconds' | 'Bytes' | 'Count' | 'None'> = {
  LastBackupAgeSeconds: 'Seconds',
  BytesStored: 'Bytes',
  NewBytes: 'Bytes',
  BackupDurationSeconds: 'Seconds',
  BackupFailures: 'Count',
  DrillResult: 'None',
  RestoreDurationSeconds: 'Seconds',
};

export interface MetricPoint {
  name: MetricName;
  value: number;
  /** The value of the metric's dimension (a component name, or primary | secondary for BytesStored). */
  dimension: string;
}

/** Where metric points go: stdout as EMF on Lambda; a capture in tests. */
export interface MetricsSink {
  emit(points: MetricPoint[], time: Date): void;
}

/** The EMF lines for the points (one per dimension value), without trailing newlines. */
export function emfLines(points: MetricPoint[], time: Date): string[] {
  const groups = new Map<string, MetricPoint[]>();
  for (const p of points) {
    if (!Number.isFinite(p.value)) continue;
    const key = `${METRIC_DIMENSION[p.name]}\u0000${p.dimension}`;
    const g = groups.get(key) ?? [];
    g.push(p);
    groups.set(key, g);
  }
  const lines: string[] = [];
  for (const g of groups.values()) {
    const dim = METRIC_DIMENSION[g[0].name];
    const values: Record<string, number> = {};
    const metrics: { Name: string; Unit: string }[] = [];
    for (const p of g) {
      if (!(p.name in values)) metrics.push({ Name: p.name, Unit: METRIC_UNIT[p.name] });
      values[p.name] = p.value; // the last value of a name wins within one line
    }
    lines.push(JSON.stringify({
      _aws: { Timestamp: time.getTime(), CloudWatchMetrics: [{ Namespace: METRIC_NAMESPACE, Dimensions: [[dim]], Metrics: metrics }] },
      [dim]: g[0].dimension,
      ...values,
    }));
  }
  return lines;
}

/** EMF on stdout (Lambda). Writes to process.stdout directly, not through the runtime's patched console. */
export const stdoutMetrics: MetricsSink = {
  emit(points, time) {
    for (const l of emfLines(points, time)) process.stdout.write(`${l}\n`);
  },
};

/** EMF lines appended to a file (MEMVAULT_METRICS_FILE, local runs). */
export function fileMetrics(file: string): MetricsSink {
  return {
    emit(points, time) {
      const lines = emfLines(points, time);
      if (lines.length) appendFileSync(file, lines.map((l) => `${l}\n`).join(''));
    },
  };
}

export const noMetrics: MetricsSink = { emit() {} };

/** A sink that keeps what it was given (tests). */
export function captureMetrics(): MetricsSink & { points: MetricPoint[]; lines: string[] } {
  const points: MetricPoint[] = [];
  const lines: string[] = [];
  return {
    points,
    lines,
    emit(p, time) {
      points.push(...p);
      lines.push(...emfLines(p, time));
    },
  };
}

/** The default sink: stdout on Lambda, a file when MEMVAULT_METRICS_FILE is set, else none (keeps the CLI's stdout clean). */
export function metricsFromEnv(env: NodeJS.ProcessEnv = process.env): MetricsSink {
  if (env.AWS_LAMBDA_FUNCTION_NAME) return stdoutMetrics;
  if (env.MEMVAULT_METRICS_FILE) return fileMetrics(env.MEMVAULT_METRICS_FILE);
  return noMetrics;
}

/** Seconds from milliseconds, to the millisecond. */
export function seconds(ms: number): number {
  return Math.round(ms) / 1000;
}
