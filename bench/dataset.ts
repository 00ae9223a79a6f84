// The benchmark dataset: a deterministic, mixed AI memory platform of a given
// size, and the deterministic "1% change" applied before the incremental backup.
//
//   memory.db        SQLite memory database (semantic/episodic/procedural)  ~10%
//   logs/*.log       agent logs, text (compressible)                        ~18%
//   graph/*.jsonl    concept graph nodes and edges, JSON lines              ~9%
//   sessions/*.json  many small JSON documents (8-56 KiB)                   ~3%
//   weights/*.safetensors  float32 shards N(0, 0.02), near-incompressible   ~60%
//
// Everything comes from seeded generators (local/platform.ts's xorshift and
// its SQLite memory tables), so the same size and seed give the same bytes,
// and applyChange() makes the identical change on every tool's copy:
// weight regions rewritten in place, lines appended to logs, rows added to the
// database — together about 1% of the data, spread over the tree.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { addMemories, rng } from '../local/platform.ts';

export const MiB = 1024 * 1024;
const SHARD = 64 * MiB;
const WORDS = ('memory recall concept agent embedding graph episode user preference task tool plan goal context summary ' +
  'fact belief event session model retrieval consolidation working semantic episodic procedural vector store index').split(' ');

export interface DatasetInfo {
  size: number;
  seed: number;
  bytes: { db: number; text: number; weights: number; total: number };
  files: number;
  /** Average database growth per addMemories() row, measured while generating. */
  dbBytesPerRow: number;
}

function words(r: () => number, n: number): string {
  let s = WORDS[Math.floor(r() * WORDS.length)];
  for (let i = 1; i < n; i++) s += ` ${WORDS[Math.floor(r() * WORDS.length)]}`;
  return s;
}

/** Writes `total` bytes of text made by `line()` to a file, in 4 MiB writes. */
async function writeText(file: string, total: number, line: () => string, flag = 'w'): Promise<number> {
  const fh = await fs.open(file, flag);
  let written = 0;
  try {
    while (written < total) {
      const parts: string[] = [];
      let n = 0;
      while (n < 4 * MiB && written + n < total) {
        const l = `${line()}\n`;
        parts.push(l);
        n += l.length;
      }
      const buf = Buffer.from(parts.join(''));
      await fh.write(buf);
      written += buf.length;
    }
  } finally {
    await fh.close();
  }
  return written;
}

function logLine(r: () => number, day: number, i: number): string {
  const lvl = r() < 0.9 ? 'INFO' : r() < 0.8 ? 'WARN' : 'ERROR';
  const t = `2026-11-${String(day).padStart(2, '0')}T${String((i >> 12) % 24).padStart(2, '0')}:${String((i >> 6) % 60).padStart(2, '0')}:${String(i % 60).padStart(2, '0')}.${String(i % 1000).padStart(3, '0')}Z`;
  return `${t} ${lvl} agent-${Math.floor(r() * 16)} session=${Math.floor(r() * 1e6).toString(16)} ${words(r, 4 + Math.floor(r() * 10))} latency_ms=${Math.floor(r() * 900)}`;
}

/** Float32 N(0, 0.02) like initialised weights (Box-Muller on xorshift). */
function fillWeights(f: Float32Array, r: () => number): void {
  for (let i = 0; i + 1 < f.length; i += 2) {
    const u = r() || 1e-9;
    const v = r();
    const m = Math.sqrt(-2 * Math.log(u)) * 0.02;
    f[i] = m * Math.cos(2 * Math.PI * v);
    f[i + 1] = m * Math.sin(2 * Math.PI * v);
  }
}

/** Generates the dataset into `dir` (which must not exist or be empty). */
export async function generateDataset(dir: string, size: number, seed = 42, log: (s: string) => void = () => {}): Promise<DatasetInfo> {
  await fs.mkdir(dir, { recursive: true });
  const r = rng(seed);
  let files = 0;

  // SQLite memory database, ~10%: add memories in batches until the file is big enough.
  const db = path.join(dir, 'memory.db');
  const dbTarget = Math.round(size * 0.10);
  let rows = 0;
  let batch = 2000;
  for (let k = 0; ; k++) {
    addMemories(db, batch, seed * 1000 + k);
    rows += batch;
    const st = await fs.stat(db);
    if (st.size >= dbTarget) break;
    const perRow = st.size / rows;
    batch = Math.max(500, Math.min(50_000, Math.ceil((dbTarget - st.size) / perRow)));
  }
  const dbBytes = (await fs.stat(db)).size;
  files++;
  log(`  memory.db ${(dbBytes / MiB).toFixed(0)} MiB (${rows} memory rows)`);

  // Text ~30%: logs 60% of it, graph 30%, small session documents 10%.
  const text = Math.round(size * 0.30);
  let textBytes = 0;
  await fs.mkdir(path.join(dir, 'logs'), { recursive: true });
  const logTotal = Math.round(text * 0.6);
  const logFiles = Math.max(3, Math.ceil(logTotal / (48 * MiB)));
  for (let d = 1; d <= logFiles; d++) {
    let i = 0;
    textBytes += await writeText(path.join(dir, 'logs', `agent-2026-11-${String(d).padStart(2, '0')}.log`), Math.floor(logTotal / logFiles), () => logLine(r, d, i++));
    files++;
  }
  await fs.mkdir(path.join(dir, 'graph'), { recursive: true });
  const graphTotal = Math.round(text * 0.3);
  let n = 0;
  textBytes += await writeText(path.join(dir, 'graph', 'nodes.jsonl'), Math.floor(graphTotal / 3), () =>
    JSON.stringify({ id: `c${n++}`, label: words(r, 2), weight: Math.round(r() * 1e4) / 1e4, summary: words(r, 10) }));
  textBytes += await writeText(path.join(dir, 'graph', 'edges.jsonl'), Math.floor((graphTotal * 2) / 3), () =>
    JSON.stringify({ from: `c${Math.floor(r() * n)}`, to: `c${Math.floor(r() * n)}`, rel: WORDS[Math.floor(r() * 8)], w: Math.round(r() * 1e3) / 1e3 }));
  files += 2;
  const sessTotal = text - logTotal - graphTotal;
  let sess = 0;
  for (let s = 0; sess < sessTotal; s++) {
    const sub = path.join(dir, 'sessions', String(Math.floor(s / 256)).padStart(3, '0'));
    if (s % 256 === 0) await fs.mkdir(sub, { recursive: true });
    const want = Math.min(sessTotal - sess, 8 * 1024 + Math.floor(r() * 48 * 1024));
    const turns: unknown[] = [];
    let len = 0;
    while (len < want) {
      const t = { role: r() < 0.5 ? 'user' : 'assistant', text: words(r, 8 + Math.floor(r() * 30)), ts: 1_790_000_000 + Math.floor(r() * 1e7) };
      turns.push(t);
      len += 40 + (t.text as string).length;
    }
    const body = Buffer.from(JSON.stringify({ session: `s${s}`, agent: `agent-${s % 16}`, turns }, null, 1));
    await fs.writeFile(path.join(sub, `session-${String(s).padStart(6, '0')}.json`), body);
    sess += body.length;
    files++;
  }
  textBytes += sess;
  log(`  text ${(textBytes / MiB).toFixed(0)} MiB (logs, graph, ${files - 1 - logFiles - 2} session files)`);

  // Weights ~60%: 64 MiB float32 shards.
  const wTotal = Math.max(SHARD / 16, Math.round((size - dbBytes - textBytes) / 4) * 4);
  const shards = Math.ceil(wTotal / SHARD);
  await fs.mkdir(path.join(dir, 'weights'), { recursive: true });
  const wr = rng(seed + 1);
  const buf = new Float32Array(SHARD / 4);
  for (let s = 0; s < shards; s++) {
    const len = Math.min(SHARD, wTotal - s * SHARD);
    const f = buf.subarray(0, len / 4);
    fillWeights(f, wr);
    await fs.writeFile(path.join(dir, 'weights', shardName(s, shards)), new Uint8Array(f.buffer, 0, len));
    files++;
  }
  await fs.writeFile(path.join(dir, 'weights', 'checkpoint.json'), JSON.stringify({ step: 1000, lr: 3e-4, shards }, null, 2));
  files++;
  log(`  weights ${(wTotal / MiB).toFixed(0)} MiB (${shards} shards)`);
  const info: DatasetInfo = {
    size, seed, files,
    bytes: { db: dbBytes, text: textBytes, weights: wTotal, total: dbBytes + textBytes + wTotal },
    dbBytesPerRow: dbBytes / rows,
  };
  return info;
}

function shardName(s: number, n: number): string {
  return `model-${String(s + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`;
}

export interface ChangeInfo {
  weightRegions: number;
  weightBytes: number;
  logBytes: number;
  dbRows: number;
  dbGrowth: number;
  total: number;
}

/**
 * The 1% change, identical for every tool: about half the budget rewrites
 * 2 MiB regions of weight shards in place (spread over the shards), 30% is
 * appended to two log files, 20% is new rows in the SQLite database, and the
 * checkpoint file is rewritten.
 */
export async function applyChange(dir: string, info: DatasetInfo, seed = 7): Promise<ChangeInfo> {
  const budget = info.size * 0.01;
  const r = rng(seed);
  const out: ChangeInfo = { weightRegions: 0, weightBytes: 0, logBytes: 0, dbRows: 0, dbGrowth: 0, total: 0 };

  const shards = (await fs.readdir(path.join(dir, 'weights'))).filter((f) => f.endsWith('.safetensors')).sort();
  const region = 2 * MiB;
  const regions = Math.max(2, Math.round((budget * 0.5) / region));
  const patch = new Float32Array(region / 4);
  for (let k = 0; k < regions; k++) {
    const shard = shards[Math.floor((k * shards.length) / regions)];
    const file = path.join(dir, 'weights', shard);
    const size = (await fs.stat(file)).size;
    const at = Math.floor((r() * Math.max(0, size - region)) / 4096) * 4096;
    fillWeights(patch, r);
    const fh = await fs.open(file, 'r+');
    try {
      await fh.write(new Uint8Array(patch.buffer), 0, Math.min(region, size), at);
    } finally {
      await fh.close();
    }
    out.weightRegions++;
    out.weightBytes += Math.min(region, size);
  }
  await fs.writeFile(path.join(dir, 'weights', 'checkpoint.json'), JSON.stringify({ step: 2000, lr: 1e-4, shards: shards.length }, null, 2));

  const logs = (await fs.readdir(path.join(dir, 'logs'))).sort();
  for (const [j, name] of [logs[0], logs[logs.length - 1]].entries()) {
    let i = 1_000_000 * (j + 1);
    out.logBytes += await writeText(path.join(dir, 'logs', name), Math.floor((budget * 0.3) / 2), () => logLine(r, 30, i++), 'a');
  }

  const db = path.join(dir, 'memory.db');
  const before = (await fs.stat(db)).size;
  out.dbRows = Math.max(100, Math.round((budget * 0.2) / info.dbBytesPerRow));
  addMemories(db, out.dbRows, seed * 7919);
  out.dbGrowth = (await fs.stat(db)).size - before;
  out.total = out.weightBytes + out.logBytes + out.dbGrowth;
  return out;
}

export interface TreeDigest {
  /** One SHA-256 over every entry's path, type, mode and content hash. */
  digest: string;
  files: number;
  bytes: number;
  /** Per-file content hashes, to name differences. */
  entries: Map<string, string>;
}

/** Hashes a tree: paths, types, modes and contents (mtimes are not compared). */
export async function digestTree(root: string): Promise<TreeDigest> {
  const entries = new Map<string, string>();
  let files = 0;
  let bytes = 0;
  const walk = async (rel: string) => {
    for (const name of (await fs.readdir(path.join(root, rel))).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const abs = path.join(root, r);
      const st = await fs.lstat(abs);
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isDirectory()) {
        entries.set(r, `dir ${mode}`);
        await walk(r);
      } else if (st.isSymbolicLink()) {
        entries.set(r, `link ${await fs.readlink(abs)}`);
      } else {
        const h = createHash('sha256');
        const fh = await fs.open(abs, 'r');
        try {
          for await (const b of fh.createReadStream({ highWaterMark: 4 * MiB, autoClose: false })) h.update(b as Buffer);
        } finally {
          await fh.close();
        }
        entries.set(r, `file ${mode} ${st.size} ${h.digest('hex')}`);
        files++;
        bytes += st.size;
      }
    }
  };
  await walk('');
  const all = createHash('sha256');
  for (const [k, v] of entries) all.update(`${k}\0${v}\n`);
  return { digest: all.digest('hex'), files, bytes, entries };
}

/** Names the differences between two digests (at most `max`). */
export function diffTrees(want: TreeDigest, got: TreeDigest, max = 10): string[] {
  const out: string[] = [];
  for (const [k, v] of want.entries) {
    const g = got.entries.get(k);
    if (g === undefined) out.push(`${k}: missing`);
    else if (g !== v) out.push(`${k}: differs (${v.slice(0, 40)} vs ${g.slice(0, 40)})`);
  }
  for (const k of got.entries.keys()) if (!want.entries.has(k)) out.push(`${k}: unexpected`);
  return out.slice(0, max);
}
