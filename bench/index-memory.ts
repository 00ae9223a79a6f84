// Memory and lookup time of the chunk index (core/chunk-index.ts) at 1M and
// 10M chunk ids, in memory (one sorted buffer, ~48 B/id) and within a memory
// budget (MEMVAULT_INDEX_MEMORY: runs in a scratch file, ~2 B/id in memory;
// core/index-spill.ts).
//
// For each count: a vault directory with that many random index entries in
// index objects of
// INDEX_ENTRIES_PER_OBJECT entries (as prune writes them), made once; then, per
// mode, a fresh process loads the index as a backup would (loadIndex) and
// looks up 100k stored ids and 100k absent ones. Reported: load time, the
// process's peak RSS (/usr/bin/time, bench/measure.ts: Node itself, its type
// stripping and the probe ids take ~150 MiB of it), the RSS the load added
// (after a GC; transient buffers are returned to the OS lazily, so this
// over-states), the index's own memory, and the time per lookup.
//
//   npx tsx bench/index-memory.ts                    1M and 10M, budget 64M (~10 min, ~500 MB of disk at 10M)
//   npx tsx bench/index-memory.ts --count 1M --count 2M --memory 16M
import { parseArgs } from 'node:util';
import { promises as fs, existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ChunkLoc, INDEX_ENTRIES_PER_OBJECT, encodeIndexObject, indexKey, indexMemoryFromEnv, loadIndex, newObjectId } from '../functions/core/chunk-index.ts';
import type { Storage } from '../functions/core/ports.ts';
import { measure } from './measure.ts';

const HERE = fileURLToPath(import.meta.url);
const REPO = path.resolve(path.dirname(HERE), '..');
const MiB = 1024 * 1024;
const PROBES = 100_000;
const parseCount = (s: string) => {
  const m = /^(\d+(?:\.\d+)?)([kKmM]?)$/.exec(s);
  if (!m) throw new Error(`--count: expected e.g. 1M or 500k, got "${s}"`);
  return Math.round(Number(m[1]) * ({ '': 1, k: 1e3, m: 1e6 } as Record<string, number>)[m[2].toLowerCase()]);
};

/** A vault directory with n index entries (random ids, 1000 packs), its data key, and ids to probe. */
async function makeVault(dir: string, n: number): Promise<void> {
  if (existsSync(path.join(dir, 'done'))) return;
  await fs.rm(dir, { recursive: true, force: true });
  // Only here (under tsx): the measured process runs on Node's type stripping, which FileStorage's syntax needs tsx for.
  const { FileStorage } = await import('../functions/adapters/storage/file.ts');
  const storage = new FileStorage(path.join(dir, 'vault'));
  const dataKey = randomBytes(32);
  const packs = Array.from({ length: 1000 }, () => randomBytes(16).toString('hex'));
  const probes: string[] = [];
  for (let s = 0; s < n; s += INDEX_ENTRIES_PER_OBJECT) {
    const m = Math.min(INDEX_ENTRIES_PER_OBJECT, n - s);
    const entries: [string, ChunkLoc][] = new Array(m);
    const ids = randomBytes(m * 32);
    for (let i = 0; i < m; i++) entries[i] = [ids.toString('hex', i * 32, i * 32 + 32), { pack: packs[i % 1000], offset: i * 4096, length: 4096, kind: 3 }];
    const every = Math.max(1, Math.floor(n / PROBES));
    for (let i = 0; i < m && probes.length < PROBES; i += every) probes.push(entries[i][0]);
    const key = indexKey(newObjectId());
    await storage.put(key, encodeIndexObject(dataKey, key, entries));
  }
  await fs.writeFile(path.join(dir, 'key'), dataKey.toString('hex'));
  await fs.writeFile(path.join(dir, 'probes'), probes.join('\n'));
  await fs.writeFile(path.join(dir, 'done'), String(n));
}

interface ChildResult { n: number; size: number; spilled: boolean; indexBytes: number; loadMs: number; rssAdded: number; retained: number; hitUs: number; missUs: number; hits: number; falseHits: number }

/** Full GCs with pauses between: buffers' backing stores are freed after the GC that finds them dead. */
async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    (globalThis as { gc?: () => void }).gc?.();
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** In the measured process: load, then look up. */
async function child(dir: string, memory: number): Promise<void> {
  // Read directly (loadIndex needs list and get): this process runs on Node's own type
  // stripping, without tsx and its esbuild process, so its RSS is the index's and Node's.
  const root = path.join(dir, 'vault');
  const storage = {
    url: `file://${root}`,
    async *list(prefix: string) {
      for (const name of await fs.readdir(path.join(root, prefix))) yield { key: `${prefix}${name}`, size: 0 };
    },
    get: (key: string) => fs.readFile(path.join(root, key)),
  } as unknown as Storage;
  const dataKey = Buffer.from(await fs.readFile(path.join(dir, 'key'), 'utf8'), 'hex');
  const probes = (await fs.readFile(path.join(dir, 'probes'), 'utf8')).split('\n');
  const rnd = randomBytes(probes.length * 32);
  const absent = Array.from({ length: probes.length }, (_, i) => rnd.toString('hex', i * 32, i * 32 + 32));
  await settle();
  const rssBefore = process.memoryUsage().rss;
  const heap = () => { const m = process.memoryUsage(); return m.heapUsed + m.arrayBuffers; };
  const heapBefore = heap();
  let t = performance.now();
  const ix = await loadIndex(storage, dataKey, { memory });
  const loadMs = performance.now() - t;
  await settle();
  const rssAfter = process.memoryUsage().rss;
  // (arrayBuffers counts the in-memory index's SharedArrayBuffer too.)
  const retained = heap() - heapBefore;
  t = performance.now();
  let hits = 0;
  for (const id of probes) if (ix.has(id)) hits++;
  const hitUs = ((performance.now() - t) * 1000) / probes.length;
  t = performance.now();
  let falseHits = 0;
  for (const id of absent) if (ix.has(id)) falseHits++;
  const missUs = ((performance.now() - t) * 1000) / absent.length;
  const r: ChildResult = { n: Number(await fs.readFile(path.join(dir, 'done'), 'utf8')), size: ix.size, spilled: ix.spilled, indexBytes: ix.memory, loadMs, rssAdded: rssAfter - rssBefore, retained, hitUs, missUs, hits, falseHits };
  console.log(JSON.stringify(r));
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      count: { type: 'string', multiple: true },
      memory: { type: 'string' },
      work: { type: 'string', default: path.join(REPO, 'bench', '.work', 'index') },
      keep: { type: 'boolean', default: false },
      child: { type: 'string' },
      'child-memory': { type: 'string' },
    },
  });
  if (values.child) return child(values.child, Number(values['child-memory']));
  const counts = (values.count?.length ? values.count : ['1M', '10M']).map(parseCount);
  const budget = indexMemoryFromEnv(values.memory);
  const rows: string[] = [];
  for (const n of counts) {
    const dir = path.join(values.work!, String(n));
    let t = Date.now();
    await makeVault(dir, n);
    console.log(`${n} ids: vault ready (${((Date.now() - t) / 1000).toFixed(0)} s)`);
    for (const [mode, memory] of [['in memory', Infinity], [`budget ${budget / MiB} MiB`, budget]] as const) {
      t = Date.now();
      const m = await measure(process.execPath, ['--expose-gc', HERE, '--child', dir, '--child-memory', String(memory)], { cwd: REPO, label: 'index child' });
      const r = JSON.parse(m.stdout.trim().split('\n').pop()!) as ChildResult;
      if (r.size !== n || r.hits !== r.n && r.hits !== Math.min(PROBES, n)) throw new Error(`${mode}: ${r.size} ids loaded of ${n}, ${r.hits} probes found`);
      if (r.falseHits !== 0) throw new Error(`${mode}: ${r.falseHits} absent ids said to be stored`);
      const row = [`${(n / 1e6).toFixed(n % 1e6 ? 1 : 0)}M`, mode + (r.spilled ? ' (spilled)' : ''), `${(r.indexBytes / n).toFixed(1)} B/id (${(r.indexBytes / MiB).toFixed(1)} MiB)`,
        `${(m.peakRss / MiB).toFixed(0)} MiB`, `${(r.retained / MiB).toFixed(1)} MiB`, `${(r.rssAdded / MiB).toFixed(0)} MiB`, `${(r.loadMs / 1000).toFixed(1)} s`, `${r.hitUs.toFixed(2)} µs`, `${r.missUs.toFixed(2)} µs`];
      rows.push(`| ${row.join(' | ')} |`);
      console.log(rows[rows.length - 1]);
    }
    if (!values.keep) await fs.rm(dir, { recursive: true, force: true });
  }
  console.log(['', '| ids | mode | index memory | process peak RSS | retained by the load (heap + buffers) | RSS added by the load | load | lookup, stored id | lookup, absent id |', '|:--|:--|--:|--:|--:|--:|--:|--:|--:|', ...rows].join('\n'));
}

await main();
