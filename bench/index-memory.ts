// Memory of the in-memory chunk index (core/chunk-index.ts) per chunk id, at 1M
// (and optionally 10M) ids, against a Set of hex strings (what memvault/1 kept).
// Run: npx tsx --expose-gc bench/index-memory.ts [count...]
import { randomBytes } from 'node:crypto';
import { ChunkIndex, ENTRY_BYTES } from '../functions/core/chunk-index.ts';

const gc = (globalThis as { gc?: () => void }).gc ?? (() => undefined);
const used = () => { gc(); gc(); const m = process.memoryUsage(); return m.heapUsed + m.arrayBuffers; };
const rss = () => { gc(); gc(); return process.memoryUsage().rss; };

for (const n of (process.argv.slice(2).length ? process.argv.slice(2).map(Number) : [1_000_000])) {
  const raw = randomBytes(n * ENTRY_BYTES); // random ids (and junk locations: only the size matters)
  for (let i = 0; i < n; i++) raw.writeUInt32LE(i % 1000, i * ENTRY_BYTES + 32);
  const packs = Array.from({ length: 1000 }, (_, i) => i.toString(16).padStart(32, '0'));
  const before = rss();
  let t = Date.now();
  const ix = ChunkIndex.fromRaw(raw, n, packs);
  const buildMs = Date.now() - t;
  // The sorted entries live in a SharedArrayBuffer (not in memoryUsage().arrayBuffers): resident memory.
  const ixBytes = rss() - before;
  const probe = Array.from({ length: 100_000 }, (_, i) => raw.toString('hex', (i * 7 % n) * ENTRY_BYTES, (i * 7 % n) * ENTRY_BYTES + 32));
  t = Date.now();
  let hits = 0;
  for (const id of probe) if (ix.has(id)) hits++;
  const lookupUs = ((Date.now() - t) * 1000) / probe.length;
  const b2 = used();
  const set = new Set<string>();
  for (let i = 0; i < n; i++) set.add(raw.toString('hex', i * ENTRY_BYTES, i * ENTRY_BYTES + 32));
  const setBytes = used() - b2;
  console.log(`${n} ids: index ${(ixBytes / n).toFixed(1)} B/id (built in ${buildMs} ms, ${lookupUs.toFixed(2)} us/lookup, ${hits} hits); Set of hex strings ${(setBytes / n).toFixed(1)} B/id`);
  if (ix.size !== n || set.size !== n) throw new Error('size mismatch');
}
