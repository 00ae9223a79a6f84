// A small AI memory platform on disk, for the demo drill, tests and benchmarks:
//   memory.db   SQLite with semantic, episodic and procedural memory tables
//   graph/      the concept graph (nodes and edges as JSON lines)
//   weights/    model weights: float32 shards (near-incompressible)
//   config/     configuration files, with a symlink to the active profile
//   logs/       text logs (compressible)
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { DatabaseSync } from 'node:sqlite';
import { tableFigures, type TableFigures } from '../functions/components/sqlite.ts';

export interface PlatformOptions {
  /** Total size of model weights in MiB. @default 256 */
  weightsMb?: number;
  /** Memories per table. @default 5000 */
  memories?: number;
  seed?: number;
}

/** xorshift32: fast, deterministic. */
export function rng(seed: number) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s / 0x1_0000_0000;
  };
}

const WORDS = 'memory recall concept agent embedding graph episode user preference task tool plan goal context summary fact belief event session model'.split(' ');

function sentence(r: () => number, n = 12): string {
  return Array.from({ length: n }, () => WORDS[Math.floor(r() * WORDS.length)]).join(' ');
}

function embedding(r: () => number, dim = 64): Buffer {
  const f = new Float32Array(dim);
  for (let i = 0; i < dim; i++) f[i] = r() * 2 - 1;
  return Buffer.from(f.buffer);
}

export function addMemories(dbPath: string, count: number, seed: number): void {
  const r = rng(seed);
  const db = new DatabaseSync(dbPath);
  db.exec(`
    CREATE TABLE IF NOT EXISTS semantic_memories (id INTEGER PRIMARY KEY, concept TEXT NOT NULL, fact TEXT NOT NULL, confidence REAL, embedding BLOB, created_at TEXT);
    CREATE TABLE IF NOT EXISTS episodic_memories (id INTEGER PRIMARY KEY, session TEXT NOT NULL, event TEXT NOT NULL, occurred_at TEXT, embedding BLOB);
    CREATE TABLE IF NOT EXISTS procedural_memories (id INTEGER PRIMARY KEY, skill TEXT NOT NULL, steps TEXT NOT NULL, success_rate REAL);
    CREATE INDEX IF NOT EXISTS idx_semantic_concept ON semantic_memories(concept);
    CREATE INDEX IF NOT EXISTS idx_episodic_session ON episodic_memories(session);
  `);
  const s = db.prepare('INSERT INTO semantic_memories (concept, fact, confidence, embedding, created_at) VALUES (?, ?, ?, ?, ?)');
  const e = db.prepare('INSERT INTO episodic_memories (session, event, occurred_at, embedding) VALUES (?, ?, ?, ?)');
  const p = db.prepare('INSERT INTO procedural_memories (skill, steps, success_rate) VALUES (?, ?, ?)');
  db.exec('BEGIN');
  for (let i = 0; i < count; i++) {
    const t = new Date(Date.UTC(2026, 0, 1) + Math.floor(r() * 3e10)).toISOString();
    s.run(WORDS[i % WORDS.length], sentence(r), r(), embedding(r), t);
    e.run(`session-${Math.floor(r() * 500)}`, sentence(r, 20), t, embedding(r));
    if (i % 5 === 0) p.run(`skill-${i}`, JSON.stringify(Array.from({ length: 4 }, () => sentence(r, 6))), r());
  }
  db.exec('COMMIT');
  db.close();
}

async function writeWeights(dir: string, totalMb: number, seed: number): Promise<void> {
  await fs.mkdir(dir, { recursive: true });
  const shards = Math.max(1, Math.ceil(totalMb / 64));
  const r = rng(seed);
  for (let s = 0; s < shards; s++) {
    const mb = Math.min(64, totalMb - s * 64);
    const f = new Float32Array((mb * 1024 * 1024) / 4);
    for (let i = 0; i < f.length; i += 2) {
      // Box-Muller: N(0, 0.02), like initialised weights.
      const u = r() || 1e-9;
      const v = r();
      const m = Math.sqrt(-2 * Math.log(u)) * 0.02;
      f[i] = m * Math.cos(2 * Math.PI * v);
      f[i + 1] = m * Math.sin(2 * Math.PI * v);
    }
    await fs.writeFile(path.join(dir, `model-${String(s).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`), Buffer.from(f.buffer));
  }
}

export async function createPlatform(root: string, o: PlatformOptions = {}): Promise<void> {
  const seed = o.seed ?? 42;
  const r = rng(seed);
  await fs.mkdir(root, { recursive: true });
  addMemories(path.join(root, 'memory.db'), o.memories ?? 5000, seed);
  const graph = path.join(root, 'graph');
  await fs.mkdir(graph, { recursive: true });
  const nodes: string[] = [];
  const edges: string[] = [];
  for (let i = 0; i < 20000; i++) nodes.push(JSON.stringify({ id: `c${i}`, label: WORDS[i % WORDS.length], weight: r() }));
  for (let i = 0; i < 60000; i++) edges.push(JSON.stringify({ from: `c${Math.floor(r() * 20000)}`, to: `c${Math.floor(r() * 20000)}`, rel: WORDS[Math.floor(r() * 5)] }));
  await fs.writeFile(path.join(graph, 'nodes.jsonl'), `${nodes.join('\n')}\n`);
  await fs.writeFile(path.join(graph, 'edges.jsonl'), `${edges.join('\n')}\n`);
  await writeWeights(path.join(root, 'weights'), o.weightsMb ?? 256, seed + 1);
  await fs.writeFile(path.join(root, 'weights', 'checkpoint.json'), JSON.stringify({ step: 1000, lr: 3e-4 }, null, 2));
  const cfg = path.join(root, 'config');
  await fs.mkdir(path.join(cfg, 'profiles'), { recursive: true });
  await fs.writeFile(path.join(cfg, 'platform.yaml'), 'memory:\n  tiers: [working, episodic, semantic]\n  consolidation: nightly\n');
  await fs.writeFile(path.join(cfg, 'profiles', 'v1.yaml'), 'temperature: 0.7\n');
  await fs.writeFile(path.join(cfg, 'profiles', 'v2.yaml'), 'temperature: 0.5\n');
  await fs.writeFile(path.join(cfg, 'secrets.env'), 'API_TOKEN=demo-not-a-secret\n', { mode: 0o600 });
  await fs.symlink('profiles/v2.yaml', path.join(cfg, 'active.yaml'));
  const logs = path.join(root, 'logs');
  await fs.mkdir(logs, { recursive: true });
  for (let d = 1; d <= 3; d++) {
    const lines: string[] = [];
    for (let i = 0; i < 30000; i++) lines.push(`2026-11-0${d}T${String(i % 24).padStart(2, '0')}:00:00Z INFO agent recalled ${sentence(r, 6)}`);
    await fs.writeFile(path.join(logs, `agent-2026-11-0${d}.log`), `${lines.join('\n')}\n`);
  }
}

/** The "day two" change: new memories, a fine-tuned slice of the weights, a new log. */
export async function changePlatform(root: string, seed = 7): Promise<void> {
  addMemories(path.join(root, 'memory.db'), 500, seed);
  const shard = (await fs.readdir(path.join(root, 'weights'))).filter((f) => f.endsWith('.safetensors')).sort()[0];
  const fh = await fs.open(path.join(root, 'weights', shard), 'r+');
  const r = rng(seed);
  const patch = new Float32Array(256 * 1024);
  for (let i = 0; i < patch.length; i++) patch[i] = (r() - 0.5) * 0.04;
  await fh.write(Buffer.from(patch.buffer), 0, patch.byteLength, 8 * 1024 * 1024);
  await fh.close();
  await fs.writeFile(path.join(root, 'weights', 'checkpoint.json'), JSON.stringify({ step: 2000, lr: 1e-4 }, null, 2));
  await fs.appendFile(path.join(root, 'logs', 'agent-2026-11-03.log'), 'fine-tune finished\n');
  await fs.writeFile(path.join(root, 'logs', 'agent-2026-11-04.log'), `${Array.from({ length: 5000 }, (_, i) => `2026-11-04 INFO step ${i}`).join('\n')}\n`);
}

export interface Fingerprint {
  files: Record<string, { sha256?: string; mode: number; link?: string; size: number }>;
  tables?: Record<string, TableFigures>;
}

/** Checksums of every file, link and mode under a tree (and SQLite table figures for *.db). */
export async function fingerprint(root: string): Promise<Fingerprint> {
  const files: Fingerprint['files'] = {};
  let tables: Record<string, TableFigures> | undefined;
  const walk = async (rel: string) => {
    for (const name of (await fs.readdir(path.join(root, rel))).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const abs = path.join(root, r);
      const st = await fs.lstat(abs);
      if (st.isDirectory()) { await walk(r); continue; }
      if (st.isSymbolicLink()) { files[r] = { link: await fs.readlink(abs), mode: 0, size: 0 }; continue; }
      if (name.endsWith('.db')) {
        const db = new DatabaseSync(abs, { readOnly: true });
        tables = tableFigures(db);
        db.close();
        files[r] = { mode: st.mode & 0o777, size: -1 };
        continue;
      }
      const h = createHash('sha256');
      for await (const b of (await fs.open(abs)).createReadStream()) h.update(b as Buffer);
      files[r] = { sha256: h.digest('hex'), mode: st.mode & 0o777, size: st.size };
    }
  };
  await walk('');
  return { files, tables };
}

/** Lists every difference between two fingerprints (empty when identical). */
export function diffFingerprints(want: Fingerprint, got: Fingerprint): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(want.files)) {
    const g = got.files[k];
    if (!g) out.push(`${k}: missing`);
    else if (v.sha256 !== g.sha256) out.push(`${k}: content differs`);
    else if (v.link !== g.link) out.push(`${k}: link target differs`);
    else if (v.mode !== g.mode && !v.link) out.push(`${k}: mode ${g.mode.toString(8)} != ${v.mode.toString(8)}`);
  }
  for (const k of Object.keys(got.files)) if (!want.files[k]) out.push(`${k}: unexpected`);
  if (JSON.stringify(want.tables) !== JSON.stringify(got.tables)) out.push('database tables differ');
  return out;
}
