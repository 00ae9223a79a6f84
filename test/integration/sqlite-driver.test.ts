import { describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { DatabaseSync } from 'node:sqlite';
import { makeFixture } from '../helpers/fixture.ts';
import { runBackups } from '../../functions/ops.ts';
import { openVault } from '../../functions/services.ts';
import { planRestore, restorePlan } from '../../functions/core/restore.ts';
import { driverFor } from '../../functions/components/registry.ts';
import { silentLogger } from '../../functions/logger.ts';
import { FileAlertSink } from '../../functions/adapters/alerts/local.ts';

// A writer in another process: moves money between accounts in transactions,
// so the total is constant in every consistent state, and appends ledger rows.
const WRITER = `
const { DatabaseSync } = require('node:sqlite');
const db = new DatabaseSync(process.argv[1], { timeout: 10000 });
db.exec('PRAGMA journal_mode=WAL');
const end = Date.now() + Number(process.argv[2]);
let n = 0;
while (Date.now() < end) {
  const a = 1 + Math.floor(Math.random() * 100), b = 1 + Math.floor(Math.random() * 100);
  db.exec('BEGIN IMMEDIATE');
  db.prepare('UPDATE accounts SET balance = balance - 7 WHERE id = ?').run(a);
  db.prepare('UPDATE accounts SET balance = balance + 7 WHERE id = ?').run(b);
  db.prepare('INSERT INTO ledger (src, dst, amount, note) VALUES (?, ?, 7, ?)').run(a, b, 'x'.repeat(200));
  db.exec('COMMIT');
  n++;
}
process.stdout.write(String(n));
`;

describe('sqlite driver', () => {
  it('takes a consistent copy while a writer is active, and the restore passes integrity_check', async () => {
    const f = await makeFixture({ 'memory-db': { kind: 'sqlite', path: 'memory.db', critical: true } });
    const dbPath = path.join(f.dir, 'memory.db');
    const db = new DatabaseSync(dbPath);
    db.exec('PRAGMA journal_mode=WAL; CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER); CREATE TABLE ledger (id INTEGER PRIMARY KEY, src INT, dst INT, amount INT, note TEXT)');
    db.exec('BEGIN');
    for (let i = 1; i <= 100; i++) db.prepare('INSERT INTO accounts VALUES (?, 1000)').run(i);
    for (let i = 0; i < 20000; i++) db.prepare('INSERT INTO ledger (src, dst, amount, note) VALUES (0, 0, 0, ?)').run('seed'.repeat(50));
    db.exec('COMMIT');
    db.close();

    const writer = spawn(process.execPath, ['-e', WRITER, dbPath, '2500'], { stdio: ['ignore', 'pipe', 'inherit'] });
    // Listened for at once: the writer may well have exited before the backups end.
    const writerDone = new Promise((r) => writer.on('close', r));
    let writes = '';
    writer.stdout.on('data', (d) => { writes += d; });
    await new Promise((r) => setTimeout(r, 300));
    const r1 = await runBackups(f.cfg, { type: 'full', alerts: new FileAlertSink(f.alertsFile), log: silentLogger });
    const r2 = await runBackups(f.cfg, { type: 'incremental', alerts: new FileAlertSink(f.alertsFile), log: silentLogger });
    await writerDone;
    expect(Number(writes)).toBeGreaterThan(10);
    expect(r1.ok && r2.ok).toBe(true);

    for (const out of [r1.outcomes[0], r2.outcomes[0]]) {
      const vault = await openVault(f.cfg);
      const plan = await planRestore(vault, { mode: 'backup', backupId: out.backupId }, undefined, ['memory-db']);
      const target = path.join(f.dir, `restore-${out.backupId}`);
      const res = await restorePlan({ cfg: f.cfg, vault, driverFor, log: silentLogger }, plan, target, false);
      expect(res.ok).toBe(true);
      expect(res.components[0].validation.checks.find((c) => c.name === 'PRAGMA integrity_check')?.actual).toBe('ok');
      const restored = new DatabaseSync(path.join(target, 'memory-db', 'memory.db'), { readOnly: true });
      const total = restored.prepare('SELECT sum(balance) AS t FROM accounts').get() as { t: number };
      const moved = restored.prepare('SELECT count(*) AS n FROM ledger WHERE amount = 7').get() as { n: number };
      const debits = restored.prepare('SELECT sum(1000 - balance) AS d FROM accounts').get() as { d: number };
      restored.close();
      expect(total.t).toBe(100 * 1000); // no half-applied transfer
      expect(debits.d).toBe(0);
      expect(moved.n).toBeGreaterThanOrEqual(0);
    }
    // The second backup saw more transfers than the first (the writer kept going).
    const vault = await openVault(f.cfg);
    const m1 = await vault.readManifest(r1.outcomes[0].manifestKey);
    const m2 = await vault.readManifest(r2.outcomes[0].manifestKey);
    const rows = (m: typeof m1) => (m.driver.tables as Record<string, { rows: number }>).ledger.rows;
    expect(rows(m2)).toBeGreaterThan(rows(m1));
  });

  it('names a file that is not a database', async () => {
    const f = await makeFixture({ 'memory-db': { kind: 'sqlite', path: 'memory.db' } });
    await fs.writeFile(path.join(f.dir, 'memory.db'), 'this is not sqlite'.repeat(100));
    const r = await runBackups(f.cfg, { type: 'full', alerts: new FileAlertSink(f.alertsFile), log: silentLogger });
    expect(r.ok).toBe(false);
    expect(r.failures[0].component).toBe('memory-db');
    expect(r.failures[0].error).toMatch(/memory\.db/);
  });
});
