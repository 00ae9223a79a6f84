// Shared by the state machine tests: a small platform (a files tree and a
// SQLite database) configured on the embedded default (file:// vaults, key
// file, JSON-lines alerts), and short local runs of the real state machines.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { makeFixture, writeTree, type Fixture } from '../helpers/fixture.ts';
import { runLocal, type LocalRunOptions } from '../../local/runtime.ts';
import { readAlerts } from '../../functions/adapters/alerts/local.ts';

export async function platformFixture(extra: Record<string, unknown> = {}, o: { secondary?: boolean } = {}): Promise<Fixture & { docs: string; db: string }> {
  const f = await makeFixture({
    docs: { kind: 'files', path: 'data/docs', schedule: '0 2 * * *', rpo: '26h', retention: { keepLast: 1 } },
    'memory-db': { kind: 'sqlite', path: 'data/memory.db', schedule: '0 2 * * *', rpo: '26h', critical: true },
    ...extra,
  }, o);
  const docs = path.join(f.dir, 'data/docs');
  await writeTree(docs, { 'a.txt': 'alpha\n', 'sub/b.bin': Buffer.alloc(70_000, 7) });
  const db = path.join(f.dir, 'data/memory.db');
  const d = new DatabaseSync(db);
  d.exec('CREATE TABLE memories (id INTEGER PRIMARY KEY, fact TEXT)');
  for (let i = 0; i < 50; i++) d.prepare('INSERT INTO memories (fact) VALUES (?)').run(`fact ${i}`);
  d.close();
  return { ...f, docs, db };
}

export function run(f: Fixture, name: string, input: unknown, o: Partial<LocalRunOptions> = {}) {
  return runLocal(name, input, { cfg: f.cfg, waitMs: 1, retryMs: 1, ...o });
}

export async function alerts(f: Fixture) {
  return readAlerts(f.alertsFile);
}

export async function readTree(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (rel: string) => {
    for (const name of (await fs.readdir(path.join(root, rel))).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const st = await fs.lstat(path.join(root, r));
      if (st.isDirectory()) await walk(r);
      else out[r] = (await fs.readFile(path.join(root, r))).toString('base64');
    }
  };
  await walk('');
  return out;
}

export function rows(db: string): string[] {
  const d = new DatabaseSync(db, { readOnly: true });
  const r = d.prepare('SELECT fact FROM memories ORDER BY id').all().map((x) => String((x as { fact: string }).fact));
  d.close();
  return r;
}
