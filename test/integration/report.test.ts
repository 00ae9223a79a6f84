// `memvault report` end to end: backups, restores and a drill made with the
// real CLI on a temp vault, then the report rendered in headless Chromium and
// its screenshot read back pixel by pixel: each component's bar chart is drawn
// in its own colour where the page puts it, and the component whose RPO is
// exceeded carries the alert colour down its section while the one within its
// RPO carries the ok colour. The text summary says the same.
import { promises as fs } from 'node:fs';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { makeFixture, writeTree, type Fixture } from '../helpers/fixture.ts';
import { cli } from '../helpers/cli.ts';
import { decodePng, findColor, type Image } from '../helpers/png.ts';
import { ALERT_COLOR, OK_COLOR, componentColor } from '../../cli/report-html.ts';
import type { RecoveryReport } from '../../functions/core/report.ts';

const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));

describe('memvault report', () => {
  let f: Fixture;
  let env: Record<string, string>;
  let report: RecoveryReport;
  let text: string;
  let html: string;
  let img: Image;

  beforeAll(async () => {
    // graph: RPO 1h, met. weights: RPO 1s, so it is exceeded by the time the report runs.
    f = await makeFixture({
      graph: { kind: 'files', path: 'platform/graph', critical: true, rpo: '1h', rto: '5m' },
      weights: { kind: 'files', path: 'platform/weights', rpo: '1s', rto: '1m' },
    }, { secondary: false, extra: { sandbox: 'sandbox' } });
    env = { MEMVAULT_METRICS_FILE: path.join(f.dir, 'metrics.jsonl') };
    const run = async (args: string[]) => {
      const r = await cli([...args, '--config', f.cfgFile], { env, cwd: f.dir });
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
      return r;
    };
    // Three backups each, growing: the weights change in part (dedup), the graph grows.
    const weights = randomBytes(2 * 1024 * 1024);
    for (let i = 0; i < 3; i++) {
      await writeTree(path.join(f.dir, 'platform'), {
        'graph/nodes.jsonl': `{"id":1,"gen":${i}}\n`.repeat(3000 * (i + 1)),
        'weights/w.bin': Buffer.concat([weights, randomBytes(512 * 1024 * i)]),
      });
      await run(['backup', '--type', i === 0 ? 'full' : 'incremental']);
    }
    // Two measured restores, and one drill (restores into the sandbox, validates).
    for (let i = 0; i < 2; i++) await run(['restore', '--latest', '--target', path.join(f.dir, `restored-${i}`)]);
    await run(['run', 'verify-drill']);
    await new Promise((r) => setTimeout(r, 1100));
    const out = path.join(f.dir, 'report.html');
    const r = await run(['report', '--out', out]);
    text = r.stdout;
    html = await fs.readFile(out, 'utf8');
    report = JSON.parse((await run(['report', '--out', path.join(f.dir, 'report2.html'), '--json'])).stdout);
    if (!CHROMIUM) throw new Error('chromium is not installed: apt-get install -y --no-install-recommends chromium (.ci/run does)');
    const png = path.join(f.dir, 'report.png');
    await promisify(execFile)(CHROMIUM, [
      '--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars', '--force-device-scale-factor=1',
      `--screenshot=${png}`, '--window-size=1200,2000', `file://${out}`,
    ], { timeout: 90_000, env: { ...process.env, HOME: f.dir } });
    img = decodePng(await fs.readFile(png));
  }, 300_000);

  it('the facts: backup history with sizes and new bytes, RPO now vs target, restore times vs RTO, drills', () => {
    const [graph, weights] = report.components;
    expect(graph.name).toBe('graph');
    expect(weights.name).toBe('weights');
    for (const c of [graph, weights]) {
      expect(c.backups.map((b) => b.type)).toEqual(['full', 'incremental', 'incremental']);
      expect(c.restores.length).toBe(2);
      expect(c.restores.every((x) => x.durationMs > 0 && x.withinRto === true)).toBe(true);
      expect(c.drills).toEqual([expect.objectContaining({ ok: true })]);
    }
    expect(graph.backups.map((b) => b.bytesTotal)).toEqual([3000, 6000, 9000].map((n, i) => n * `{"id":1,"gen":${i}}\n`.length));
    // The weights share their first 2 MiB between backups: the first backup is all new bytes,
    // later ones bring less than their size (dedup); the graph changes throughout.
    expect(weights.backups.map((b) => b.bytesTotal)).toEqual([2, 2.5, 3].map((m) => m * 1024 * 1024));
    expect(weights.backups[0].newBytes).toBe(weights.backups[0].bytesTotal);
    expect(weights.backups[1].newBytes).toBeLessThan(weights.backups[1].bytesTotal * 0.8);
    expect(weights.backups[2].newBytes).toBeLessThan(weights.backups[2].bytesTotal * 0.8);
    expect(graph.rpo).toMatchObject({ target: '1h', exceeded: false });
    expect(weights.rpo).toMatchObject({ target: '1s', exceeded: true });
    expect(weights.rpo.ageMs).toBeGreaterThan(1000);
    expect(weights.rto).toEqual({ target: '1m', targetMs: 60_000 });
  });

  it('without a metrics file (as on AWS, where the points are in CloudWatch) the vault\'s audit log gives the same restores and drills', async () => {
    const r = await cli(['report', '--config', f.cfgFile, '--out', path.join(f.dir, 'report-audit.html'), '--json'], { env: { MEMVAULT_METRICS_FILE: '' }, cwd: f.dir });
    expect(r.code, r.stderr).toBe(0);
    const fromAudit = JSON.parse(r.stdout) as RecoveryReport;
    expect(fromAudit.metricsFile).toBeNull();
    for (const [i, c] of fromAudit.components.entries()) {
      expect(c.restores.length, c.name).toBe(2);
      // The same measured recovery times (the metric is in seconds, the record in milliseconds).
      expect(c.restores.map((x) => Math.round(x.durationMs / 10))).toEqual(report.components[i].restores.map((x) => Math.round(x.durationMs / 10)));
      expect(c.drills).toEqual([expect.objectContaining({ ok: true })]);
    }
  });

  it('the text summary names each component, its RPO status and the exceeded one', () => {
    expect(text).toMatch(/^graph\s+3\s.*\s1h\s+met\s.*\s5m\s+met\s+1\/1$/m);
    expect(text).toMatch(/^weights\s+3\s.*\s1s\s+EXCEEDED\s.*\s1m\s+met\s+1\/1$/m);
    expect(text).toMatch(/^RPO EXCEEDED weights: newest backup \d+ s old, target 1s$/m);
    expect(text).not.toMatch(/RPO EXCEEDED graph/);
    expect(text).toContain(`report written to ${path.join(f.dir, 'report.html')}`);
  });

  it('the page is self-contained: no script, no external resource', () => {
    expect(html).not.toMatch(/<script|<link|<img|@import|url\(/i);
    expect(html).not.toMatch(/(src|href)=/i);
    expect(html.match(/<svg/g)!.length).toBeGreaterThanOrEqual(4);
  });

  it('Chromium draws each component\'s bars in its colour, in page order, in the chart area', () => {
    expect(img.width).toBe(1200);
    const graph = findColor(img, componentColor(0), { x0: 80 });
    const weights = findColor(img, componentColor(1), { x0: 80 });
    // Three bars each: dozens of pixels wide, tens of pixels high.
    expect(graph.count).toBeGreaterThan(1500);
    expect(weights.count).toBeGreaterThan(1500);
    // graph's section comes first, weights' below it, both below the summary table.
    expect(graph.maxY).toBeLessThan(weights.minY);
    expect(graph.minY).toBeGreaterThan(150);
    expect(weights.maxY).toBeLessThan(2000);
    // Only the bars are in that colour (restore times are drawn darker), and they grow
    // with the backups: the last bar (rightmost column) is taller than the first.
    const col = (hex: string, box: typeof graph, x: number) => findColor(img, hex, { x0: x, x1: x + 1, y0: box.minY, y1: box.maxY + 1 }).count;
    expect(col(componentColor(0), graph, graph.maxX - 1)).toBe(graph.maxY - graph.minY + 1);
    expect(col(componentColor(0), graph, graph.minX + 1)).toBeLessThan((graph.maxY - graph.minY + 1) * 0.5);
    expect(col(componentColor(1), weights, weights.maxX - 1)).toBe(weights.maxY - weights.minY + 1);
    expect(graph.maxY - graph.minY).toBeLessThan(200);
    expect(weights.maxY - weights.minY).toBeLessThan(200);
  });

  it('the section of the component whose RPO is exceeded is marked in the alert colour, the other in the ok colour', () => {
    const graph = findColor(img, componentColor(0), { x0: 80 });
    const weights = findColor(img, componentColor(1), { x0: 80 });
    // The status stripe runs down the left edge of each section (x < 60), beside its charts.
    const stripe = (hex: string, box: typeof graph) => findColor(img, hex, { x0: 0, x1: 60, y0: box.minY, y1: box.maxY + 1 });
    const rows = (box: typeof graph) => box.maxY - box.minY + 1;
    expect(stripe(ALERT_COLOR, weights).count).toBeGreaterThanOrEqual(rows(weights) * 10);
    expect(stripe(OK_COLOR, weights).count).toBe(0);
    expect(stripe(OK_COLOR, graph).count).toBeGreaterThanOrEqual(rows(graph) * 10);
    expect(stripe(ALERT_COLOR, graph).count).toBe(0);
  });
});
