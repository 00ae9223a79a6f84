// The metrics emitter: exact Embedded Metric Format lines (what CloudWatch
// parses), one per dimension value; the names and dimensions are the ones the
// dashboard draws (infra/deploy-config.ts re-exports them from the emitter).
import { describe, expect, it } from 'vitest';
import { captureMetrics, emfLines, fileMetrics, metricsFromEnv, METRIC_DIMENSION, METRIC_NAMESPACE, METRICS, METRIC_UNIT, noMetrics, stdoutMetrics } from '../../functions/handlers/metrics.ts';
import * as deployConfig from '../../infra/deploy-config.ts';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const T = new Date('2026-01-01T00:00:00.000Z');

describe('Embedded Metric Format', () => {
  it('writes one line per dimension value with the _aws directive, the dimension and the values', () => {
    const lines = emfLines([
      { name: 'NewBytes', value: 1234, dimension: 'memory-db' },
      { name: 'BackupDurationSeconds', value: 2.5, dimension: 'memory-db' },
      { name: 'NewBytes', value: 0, dimension: 'docs' },
      { name: 'BytesStored', value: 99, dimension: 'primary' },
    ], T);
    expect(lines).toEqual([
      '{"_aws":{"Timestamp":1767225600000,"CloudWatchMetrics":[{"Namespace":"Memvault","Dimensions":[["Component"]],"Metrics":[{"Name":"NewBytes","Unit":"Bytes"},{"Name":"BackupDurationSeconds","Unit":"Seconds"}]}]},"Component":"memory-db","NewBytes":1234,"BackupDurationSeconds":2.5}',
      '{"_aws":{"Timestamp":1767225600000,"CloudWatchMetrics":[{"Namespace":"Memvault","Dimensions":[["Component"]],"Metrics":[{"Name":"NewBytes","Unit":"Bytes"}]}]},"Component":"docs","NewBytes":0}',
      '{"_aws":{"Timestamp":1767225600000,"CloudWatchMetrics":[{"Namespace":"Memvault","Dimensions":[["Vault"]],"Metrics":[{"Name":"BytesStored","Unit":"Bytes"}]}]},"Vault":"primary","BytesStored":99}',
    ]);
    for (const l of lines) {
      const o = JSON.parse(l);
      // Every metric and dimension named in the directive is a top-level member (EMF's rule).
      for (const d of o._aws.CloudWatchMetrics[0].Dimensions[0]) expect(typeof o[d]).toBe('string');
      for (const m of o._aws.CloudWatchMetrics[0].Metrics) expect(typeof o[m.Name]).toBe('number');
    }
  });

  it('drops non-finite values and writes nothing for no points', () => {
    expect(emfLines([{ name: 'NewBytes', value: Number.NaN, dimension: 'x' }], T)).toEqual([]);
    expect(emfLines([], T)).toEqual([]);
  });

  it('goes to stdout on Lambda, to MEMVAULT_METRICS_FILE locally, else nowhere', async () => {
    expect(metricsFromEnv({ AWS_LAMBDA_FUNCTION_NAME: 'memvault-export-stream' })).toBe(stdoutMetrics);
    expect(metricsFromEnv({})).toBe(noMetrics);
    const file = path.join(await fs.mkdtemp(path.join(os.tmpdir(), 'emf-')), 'metrics.jsonl');
    metricsFromEnv({ MEMVAULT_METRICS_FILE: file }).emit([{ name: 'DrillResult', value: 1, dimension: 'docs' }], T);
    fileMetrics(file).emit([{ name: 'DrillResult', value: 0, dimension: 'graph' }], T);
    expect((await fs.readFile(file, 'utf8')).trim().split('\n').map((l) => JSON.parse(l).DrillResult)).toEqual([1, 0]);
    const chunks: string[] = [];
    const write = process.stdout.write;
    process.stdout.write = ((c: string) => { chunks.push(c); return true; }) as typeof process.stdout.write;
    try {
      stdoutMetrics.emit([{ name: 'BackupFailures', value: 1, dimension: 'docs' }], T);
    } finally {
      process.stdout.write = write;
    }
    expect(chunks).toEqual([`${emfLines([{ name: 'BackupFailures', value: 1, dimension: 'docs' }], T)[0]}\n`]);
  });

  it('knows a unit and a dimension for every metric the dashboard draws, the same objects infra uses', () => {
    expect(deployConfig.METRICS).toBe(METRICS);
    expect(deployConfig.METRIC_NAMESPACE).toBe(METRIC_NAMESPACE);
    expect(Object.keys(METRIC_DIMENSION).sort()).toEqual(Object.values(METRICS).sort());
    expect(Object.keys(METRIC_UNIT).sort()).toEqual(Object.values(METRICS).sort());
    for (const n of Object.values(METRICS)) expect(METRIC_DIMENSION[n]).toBe(n === 'BytesStored' ? 'Vault' : 'Component');
    const c = captureMetrics();
    c.emit([{ name: 'RestoreDurationSeconds', value: 3, dimension: 'docs' }], T);
    expect(c.points).toHaveLength(1);
    expect(c.lines[0]).toContain('"Component":"docs","RestoreDurationSeconds":3');
  });
});
