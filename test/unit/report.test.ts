// The recovery report's facts and summary from a given catalog and metric
// lines: RPO of a component without backups, restores over the RTO, failed
// drills, EMF lines of other metrics or garbage skipped.
import { describe, expect, it } from 'vitest';
import { auditSamples, buildReport, parseMetricLines } from '../../functions/core/report.ts';
import type { AuditRecord } from '../../functions/core/audit.ts';
import { parseConfig } from '../../functions/core/config.ts';
import { kindSchemas } from '../../functions/components/registry.ts';
import { emfLines } from '../../functions/handlers/metrics.ts';
import type { Catalog, CatalogEntry } from '../../functions/core/catalog.ts';
import { ALERT_COLOR, renderHtml, renderText } from '../../cli/report-html.ts';

const cfg = parseConfig({
  vault: { primary: 'file://v' },
  encryption: { key: 'k' },
  components: {
    db: { kind: 'files', path: 'db', rpo: '2h', rto: '90s' },
    logs: { kind: 'files', path: 'logs', rpo: '1d', schedule: '0 3 * * *' },
    misc: { kind: 'files', path: 'misc' },
  },
}, kindSchemas, '/tmp');

const NOW = new Date('2026-03-10T12:00:00Z');

function entry(component: string, time: string, total: number, fresh: number): CatalogEntry {
  return {
    key: `manifests/${component}/${time}`, component, id: `id-${time}`, type: 'incremental', time: new Date(time),
    digest: 'x', kind: 'files', startedAt: time, finishedAt: time, warnings: 0,
    stats: { bytesRead: total, bytesTotal: total, bytesUnchanged: 0, newBytes: fresh, bytesStored: fresh, chunksTotal: 1, chunksNew: 1, entries: 1, durationMs: 10 },
  };
}

const catalog = {
  vault: 'file://v', future: [], damaged: [], chain: [], heads: new Map(), tombstones: new Map(), headKeys: new Map(),
  entries: [entry('db', '2026-03-10T11:00:00.000Z', 900, 100), entry('db', '2026-03-09T11:00:00.000Z', 800, 800)],
} as Catalog;

const metrics = [
  ...emfLines([{ name: 'RestoreDurationSeconds', value: 42.5, dimension: 'db' }], new Date('2026-03-01T00:00:00Z')),
  ...emfLines([{ name: 'RestoreDurationSeconds', value: 120, dimension: 'db' }, { name: 'NewBytes', value: 5, dimension: 'db' }], new Date('2026-03-05T00:00:00Z')),
  ...emfLines([{ name: 'DrillResult', value: 1, dimension: 'db' }], new Date('2026-03-02T00:00:00Z')),
  ...emfLines([{ name: 'DrillResult', value: 0, dimension: 'db' }], new Date('2026-03-06T00:00:00Z')),
  ...emfLines([{ name: 'BytesStored', value: 5, dimension: 'primary' }], new Date('2026-03-06T00:00:00Z')),
  'not json', '{"no":"emf"}',
].join('\n');

describe('recovery report', () => {
  const r = buildReport({
    cfg, catalog, vaultUrl: 'file://v', vaultCreated: new Date('2026-03-01T00:00:00Z'),
    metrics: parseMetricLines(metrics), metricsFile: '/m.jsonl', now: NOW,
  });
  const [db, logs, misc] = r.components;

  it('reads restore times and drill results per component from EMF lines, skipping the rest', () => {
    expect(parseMetricLines(metrics).map((m) => m.name).sort()).toEqual(['DrillResult', 'DrillResult', 'NewBytes', 'RestoreDurationSeconds', 'RestoreDurationSeconds']);
    expect(db.restores).toEqual([
      { time: '2026-03-01T00:00:00.000Z', durationMs: 42_500, withinRto: true },
      { time: '2026-03-05T00:00:00.000Z', durationMs: 120_000, withinRto: false },
    ]);
    expect(db.drills.map((d) => d.ok)).toEqual([true, false]);
  });

  it('backups oldest first; RPO from the newest backup, or from the first due backup when there is none', () => {
    expect(db.backups.map((b) => [b.bytesTotal, b.newBytes])).toEqual([[800, 800], [900, 100]]);
    expect(db.rpo).toMatchObject({ target: '2h', ageMs: 3_600_000, exceeded: false });
    // No backup, first due 2026-03-01 03:00 + 1d: long past.
    expect(logs.rpo).toMatchObject({ target: '1d', ageMs: null, exceeded: true });
    expect(misc.rpo).toMatchObject({ target: null, exceeded: false });
    expect(db.rto).toEqual({ target: '90s', targetMs: 90_000 });
  });

  it('the summary and the page name what is late, slow and failing', () => {
    const text = renderText(r);
    expect(text).toContain('RPO EXCEEDED logs: no backup yet, target 1d');
    expect(text).toContain('RTO MISSED db: restore at 2026-03-05 00:00 took 2m0s, target 90s');
    expect(text).toContain('DRILL FAILED db: last drill at 2026-03-06 00:00');
    expect(text).not.toContain('RPO EXCEEDED db');
    const html = renderHtml(r);
    expect(html).toContain('RPO exceeded: logs');
    expect(html).toContain('restore slower than RTO: db');
    expect(html).toContain('last drill failed: db');
    // The restore over the RTO is drawn in the alert colour.
    expect(html).toMatch(new RegExp(`<circle [^>]*fill="${ALERT_COLOR}"><title>2026-03-05 00:00: 2m0s`));
    expect(html).toContain('id="c-logs" style="border-left-color:' + ALERT_COLOR);
  });
});

describe('recovery report from the audit log', () => {
  const rec = (r: Partial<AuditRecord>): AuditRecord => ({ op: 'restore', result: 'ok', actor: 'lambda:x', startedAt: r.endedAt!, endedAt: r.endedAt!, components: [], backupIds: [], ...r });
  const audit = [
    rec({ op: 'restore', endedAt: '2026-03-07T00:00:00.000Z', components: ['db', 'logs'], details: { recoveryTimeMs: 30_000 } }),
    rec({ op: 'restore', result: 'failed', endedAt: '2026-03-07T01:00:00.000Z', components: ['db'], error: 'x', details: {} }),
    rec({ op: 'drill', result: 'failed', endedAt: '2026-03-08T00:00:00.000Z', components: ['db', 'logs'], details: { failedComponents: ['logs'] } }),
    rec({ op: 'drill', result: 'failed', endedAt: '2026-03-08T01:00:00.000Z', components: ['misc'], details: {} }),
    rec({ op: 'backup', endedAt: '2026-03-08T02:00:00.000Z', components: ['db'] }),
    // The metrics file's restore of 2026-03-05 recorded in the audit log too: counted once.
    rec({ op: 'restore', endedAt: '2026-03-05T00:00:04.000Z', components: ['db'], details: { recoveryTimeMs: 120_000 } }),
  ];
  const r = buildReport({
    cfg, catalog, vaultUrl: 'file://v', vaultCreated: new Date('2026-03-01T00:00:00Z'),
    metrics: parseMetricLines(metrics), metricsFile: '/m.jsonl', audit, now: NOW,
  });
  const [db, logs, misc] = r.components;

  it('a restore that succeeded counts its recovery time for every component it restored; failed ones and other operations not', () => {
    expect(auditSamples(audit).filter((m) => m.name === 'RestoreDurationSeconds').map((m) => [m.component, m.value])).toEqual([['db', 30], ['logs', 30], ['db', 120]]);
    expect(logs.restores).toEqual([{ time: '2026-03-07T00:00:00.000Z', durationMs: 30_000, withinRto: null }]);
  });

  it('a drill fails only the components it names as failed (all of them in a record that names none)', () => {
    expect(db.drills.map((d) => [d.time.slice(0, 10), d.ok])).toEqual([['2026-03-02', true], ['2026-03-06', false], ['2026-03-08', true]]);
    expect(logs.drills.map((d) => d.ok)).toEqual([false]);
    expect(misc.drills.map((d) => d.ok)).toEqual([false]);
  });

  it('a restore in both the metrics file and the audit log counts once', () => {
    expect(db.restores.map((x) => [x.time.slice(0, 10), x.durationMs])).toEqual([['2026-03-01', 42_500], ['2026-03-05', 120_000], ['2026-03-07', 30_000]]);
  });
});
