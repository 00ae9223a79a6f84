// Recovery checks (issue 13, the post-recovery checklist): after the data is
// back, the service answers (an HTTP probe to a real server on loopback), the
// data is there (a SQL query on the restored SQLite database) and the model
// loads (a command given the restored location). A failed check fails the
// restore or drill with the check named, and alerts naming the component.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { parse, stringify } from 'yaml';
import { cli } from '../helpers/cli.ts';
import { makeFixture, type Fixture } from '../helpers/fixture.ts';

let server: http.Server;
let status = 200;
let base = '';

beforeAll(async () => {
  server = http.createServer((req, res) => {
    res.writeHead(status, { 'content-type': 'text/plain' });
    res.end(status === 200 ? `ready: ${req.url}` : 'warming up');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

async function platform(checks: unknown[]): Promise<Fixture> {
  const f = await makeFixture({ 'memory-db': { kind: 'sqlite', path: 'memory.db', checks } }, { secondary: false });
  const db = new DatabaseSync(path.join(f.dir, 'memory.db'));
  db.exec("CREATE TABLE memories (id INTEGER PRIMARY KEY, text TEXT); INSERT INTO memories (text) VALUES ('a'), ('b'), ('c');");
  db.close();
  const b = await cli(['backup', '--config', f.cfgFile, '--type', 'full']);
  expect(b.code, b.stderr).toBe(0);
  return f;
}

const CHECKS = () => [
  { name: 'memories present', sql: { query: 'SELECT count(*) FROM memories', expect: 3 } },
  { name: 'api answers', http: { url: `${base}/health`, expectStatus: 200, bodyContains: 'ready' } },
  { name: 'model loads', command: { argv: ['sh', '-c', 'test -s "$MEMVAULT_RESTORED" && echo "loaded $MEMVAULT_COMPONENT"'], stdoutContains: 'loaded memory-db' } },
];

interface Alert { subject: string; message: string; component?: string }
const alerts = async (f: Fixture): Promise<Alert[]> => (await fs.readFile(f.alertsFile, 'utf8').catch(() => '')).trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));

describe('recovery checks', () => {
  it('run after a restore: SQL on the restored database, an HTTP probe and a command, each named in the report', async () => {
    status = 200;
    const f = await platform(CHECKS());
    const r = await cli(['restore', '--latest', '--config', f.cfgFile, '--target', path.join(f.dir, 'out'), '--json']);
    expect(r.code, r.stderr).toBe(0);
    const checks = JSON.parse(r.stdout).components[0].validation.checks as { name: string; ok: boolean; actual: string }[];
    const mine = checks.filter((c) => c.name.startsWith('check '));
    expect(mine.map((c) => [c.name, c.ok])).toEqual([['check memories present', true], ['check api answers', true], ['check model loads', true]]);
    expect(mine[1].actual).toBe('HTTP 200: ready: /health');
    expect(mine[2].actual).toBe('exit 0: loaded memory-db');
  }, 60_000);

  it('a failed check fails the restore naming it, and alerts naming the component', async () => {
    status = 503;
    const f = await platform([...CHECKS(), { name: 'enough memories', sql: { query: 'SELECT count(*) FROM memories', expectAtLeast: 1000 } }]);
    const r = await cli(['restore', '--latest', '--config', f.cfgFile, '--target', path.join(f.dir, 'out')]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('INVALID memory-db: check api answers: expected "HTTP 200 with a body containing \\"ready\\"", got "HTTP 503: warming up"');
    expect(r.stdout).toContain('INVALID memory-db: check enough memories: expected "at least 1000", got "3"');
    expect(r.stdout).not.toContain('check memories present: expected');
    const a = (await alerts(f)).filter((x) => /validation/.test(x.subject));
    expect(a).toHaveLength(1);
    expect(a[0].component).toBe('memory-db');
    expect(a[0].message).toMatch(/memory-db: check api answers: expected .*HTTP 503/);
  }, 60_000);

  it('the drill runs them too: a failing check fails the verify-drill naming the check', async () => {
    status = 503;
    const f = await platform(CHECKS());
    const d = await cli(['run', 'verify-drill', '--config', f.cfgFile]);
    expect(d.code).toBe(1);
    expect(d.stdout + d.stderr).toMatch(/verification drill failed: memory-db at validate: .*check api answers: expected "HTTP 200 .*", got "HTTP 503: warming up"/);
    status = 200;
    const ok = await cli(['run', 'verify-drill', '--config', f.cfgFile]);
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
  }, 120_000);

  it('a check with two probes, or none, is a config error naming it', async () => {
    const f = await makeFixture({ 'memory-db': { kind: 'sqlite', path: 'memory.db' } }, { secondary: false, init: false });
    const doc = parse(await fs.readFile(f.cfgFile, 'utf8'));
    doc.components['memory-db'].checks = [{ name: 'both', sql: { query: 'select 1' }, http: { url: 'http://127.0.0.1:1/' } }];
    await fs.writeFile(f.cfgFile, stringify(doc));
    const r = await cli(['config', 'validate', '--config', f.cfgFile]);
    expect(r.code).toBe(2);
    expect(r.stdout + r.stderr).toMatch(/components\.memory-db\.checks\.0.*exactly one of http, sql or command/);
  });
});
