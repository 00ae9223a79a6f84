// Throughput of each stage of memvault's backup and restore pipelines, one
// core, on the benchmark's kinds of data (float32 weights, text), to find
// where the time of a backup goes:
//   read -> chunker (FastCDC gear loop) -> SHA-256 (file checksum) -> HMAC-SHA-256 (chunk id)
//        -> compressibility probe (zstd-1 on 64 KiB) -> zstd-3 -> AES-256-GCM seal
//        -> write + fsync per chunk (file:// storage)
// and back: read -> AES-GCM open -> zstd decompress -> HMAC check -> SHA-256 -> write.
//
//   npx tsx bench/stages.ts [--mb 256]
import { parseArgs } from 'node:util';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import zlib from 'node:zlib';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { Chunker, DEFAULT_CHUNKER } from '../functions/core/chunker.ts';
import { seal, open } from '../functions/core/crypto.ts';
import { rng } from '../local/platform.ts';
import { MiB } from './dataset.ts';

function weights(bytes: number): Buffer {
  const f = new Float32Array(bytes / 4);
  const r = rng(5);
  for (let i = 0; i + 1 < f.length; i += 2) {
    const u = r() || 1e-9;
    const m = Math.sqrt(-2 * Math.log(u)) * 0.02;
    const v = r();
    f[i] = m * Math.cos(2 * Math.PI * v);
    f[i + 1] = m * Math.sin(2 * Math.PI * v);
  }
  return Buffer.from(f.buffer);
}

function text(bytes: number): Buffer {
  const W = 'memory recall concept agent embedding graph episode user preference task tool plan goal context'.split(' ');
  const r = rng(9);
  const parts: string[] = [];
  let n = 0;
  while (n < bytes) {
    const l = `2026-11-01T10:00:${String(n % 60).padStart(2, '0')}Z INFO agent-${Math.floor(r() * 16)} ${Array.from({ length: 10 }, () => W[Math.floor(r() * W.length)]).join(' ')} latency_ms=${Math.floor(r() * 900)}\n`;
    parts.push(l);
    n += l.length;
  }
  return Buffer.from(parts.join('')).subarray(0, bytes);
}

function time(label: string, bytes: number, fn: () => void, reps = 2): number {
  let best = Infinity;
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    fn();
    best = Math.min(best, performance.now() - t0);
  }
  const mbps = bytes / MiB / (best / 1000);
  process.stdout.write(`${label.padEnd(52)} ${mbps.toFixed(0).padStart(6)} MiB/s  (${(1000 / mbps).toFixed(2)} s per GiB)\n`);
  return mbps;
}

async function timeAsync(label: string, bytes: number, fn: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  await fn();
  const ms = performance.now() - t0;
  const mbps = bytes / MiB / (ms / 1000);
  process.stdout.write(`${label.padEnd(52)} ${mbps.toFixed(0).padStart(6)} MiB/s  (${(1000 / mbps).toFixed(2)} s per GiB)\n`);
  return mbps;
}

async function main() {
  const { values } = parseArgs({ options: { mb: { type: 'string', default: '256' } } });
  const size = Number(values.mb) * MiB;
  const gear = new Uint32Array(256).map((_, i) => createHash('sha256').update(String(i)).digest().readUInt32LE(0));
  const key = randomBytes(32);
  process.stdout.write(`stages on ${size / MiB} MiB, one core, Node ${process.version}, ${os.cpus()[0]?.model}; best of 2\n`);
  const w = weights(size);
  const t = text(size);

  const chunksOf = (buf: Buffer) => {
    const c = new Chunker(gear, DEFAULT_CHUNKER);
    const out: Buffer[] = [];
    for (let i = 0; i < buf.length; i += MiB) out.push(...c.push(buf.subarray(i, i + MiB)));
    const last = c.finish();
    if (last) out.push(last);
    return out;
  };
  time('chunker (FastCDC gear loop), weights', size, () => { chunksOf(w); });
  time('chunker (FastCDC gear loop), text', size, () => { chunksOf(t); });
  const wc = chunksOf(w);
  const tc = chunksOf(t);
  process.stdout.write(`  chunks: weights ${wc.length} (avg ${(size / wc.length / MiB).toFixed(2)} MiB), text ${tc.length}\n`);
  time('SHA-256 (file checksum)', size, () => { const h = createHash('sha256'); for (const c of wc) h.update(c); h.digest(); });
  time('HMAC-SHA-256 (chunk id)', size, () => { for (const c of wc) createHmac('sha256', key).update(c).digest('hex'); });
  time('BLAKE2b-512 (alternative id hash)', size, () => { for (const c of wc) createHmac('blake2b512', key).update(c).digest(); });
  time('compressibility probe zstd-1 on 64 KiB/chunk', size, () => {
    for (const c of wc) zlib.zstdCompressSync(c.subarray(0, 64 * 1024), { params: { [zlib.constants.ZSTD_c_compressionLevel]: 1 } });
  });
  let wz = 0;
  time('zstd-3 compress, weights (if probe were skipped)', size, () => {
    wz = 0;
    for (const c of wc) wz += zlib.zstdCompressSync(c, { params: { [zlib.constants.ZSTD_c_compressionLevel]: 3 } }).length;
  }, 1);
  process.stdout.write(`  weights zstd-3 ratio ${(wz / size).toFixed(3)}\n`);
  let tz = 0;
  time('zstd-3 compress, text', size, () => {
    tz = 0;
    for (const c of tc) tz += zlib.zstdCompressSync(c, { params: { [zlib.constants.ZSTD_c_compressionLevel]: 3 } }).length;
  });
  time('zstd-1 compress, text', size, () => {
    for (const c of tc) zlib.zstdCompressSync(c, { params: { [zlib.constants.ZSTD_c_compressionLevel]: 1 } });
  });
  process.stdout.write(`  text zstd-3 ratio ${(tz / size).toFixed(3)}\n`);
  const tzc = tc.map((c) => zlib.zstdCompressSync(c, { params: { [zlib.constants.ZSTD_c_compressionLevel]: 3 } }));
  time('zstd decompress, text', size, () => { for (const c of tzc) zlib.zstdDecompressSync(c); });
  time('flag byte Buffer.concat copy (encodeChunk)', size, () => { for (const c of wc) Buffer.concat([Uint8Array.of(0), c]); });
  const sealed = wc.map((c) => seal(key, c, 'chunks/aa/x'));
  time('AES-256-GCM seal (incl. its Buffer.concat)', size, () => { for (const c of wc) seal(key, c, 'chunks/aa/x'); });
  time('AES-256-GCM open', size, () => { for (const c of sealed) open(key, c, 'chunks/aa/x'); });

  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'memvault-stages-'));
  try {
    await timeAsync('write one file per chunk + fsync (file:// put), c=1', size, async () => {
      for (const [i, c] of wc.entries()) {
        const fh = await fs.open(path.join(dir, `a${i}`), 'w');
        await fh.writeFile(c);
        await fh.sync();
        await fh.close();
      }
    });
    await timeAsync('write one file per chunk, no fsync', size, async () => {
      for (const [i, c] of wc.entries()) await fs.writeFile(path.join(dir, `b${i}`), c);
    });
    await timeAsync('write one file per chunk + fsync, 4 in flight', size, async () => {
      let next = 0;
      const worker = async () => {
        for (let i = next++; i < wc.length; i = next++) {
          const fh = await fs.open(path.join(dir, `c${i}`), 'w');
          await fh.writeFile(wc[i]);
          await fh.sync();
          await fh.close();
        }
      };
      await Promise.all([worker(), worker(), worker(), worker()]);
    });
    await timeAsync('read file in 1 MiB reads (createReadStream, cached)', size, async () => {
      const f = path.join(dir, 'big');
      await fs.writeFile(f, w);
      for await (const _ of (await fs.open(f)).createReadStream({ highWaterMark: MiB })) { /* read */ }
    });
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

main().catch((err) => { process.stderr.write(`${err.stack}\n`); process.exitCode = 1; });
