import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { Chunker, CutFinder, chunkStream, chunkerFor, type ChunkerParams } from '../../functions/core/chunker.ts';
import { deriveKeys } from '../../functions/core/crypto.ts';

const P: ChunkerParams = { min: 16 * 1024, avg: 64 * 1024, max: 256 * 1024 };
const gear = deriveKeys(Buffer.alloc(32, 1), 'test').gear;

function chunks(data: Buffer, g = gear, feed = 7919): Buffer[] {
  const c = new Chunker(g, P);
  const out: Buffer[] = [];
  for (let o = 0; o < data.length; o += feed) out.push(...c.push(data.subarray(o, o + feed)));
  const last = c.finish();
  if (last) out.push(last);
  return out;
}

describe('content-defined chunker', () => {
  const data = randomBytes(4 * 1024 * 1024);

  it('reassembles to the input, with every chunk within min..max (the last may be short)', () => {
    const cs = chunks(data);
    expect(Buffer.concat(cs).equals(data)).toBe(true);
    cs.slice(0, -1).forEach((c) => {
      expect(c.length).toBeGreaterThanOrEqual(P.min);
      expect(c.length).toBeLessThanOrEqual(P.max);
    });
    const avg = data.length / cs.length;
    expect(avg).toBeGreaterThan(P.min);
    expect(avg).toBeLessThan(P.max / 2);
  });

  it('cuts at the same places whatever the read sizes', () => {
    const a = chunks(data, gear, 4096).map((c) => c.length);
    const b = chunks(data, gear, 1_000_003).map((c) => c.length);
    expect(a).toEqual(b);
  });

  it('resynchronises after an insertion: later chunks are unchanged', () => {
    const edited = Buffer.concat([data.subarray(0, 100_000), randomBytes(1000), data.subarray(100_000)]);
    const before = new Set(chunks(data).map((c) => c.toString('base64')));
    const after = chunks(edited);
    const shared = after.filter((c) => before.has(c.toString('base64'))).length;
    expect(shared / after.length).toBeGreaterThan(0.8);
  });

  it('depends on the vault secret: another gear table cuts elsewhere', () => {
    const other = deriveKeys(Buffer.alloc(32, 2), 'test').gear;
    expect(chunks(data, other).map((c) => c.length)).not.toEqual(chunks(data).map((c) => c.length));
  });

  it('cuts at max size on data without boundaries (all zeros)', () => {
    const zeros = Buffer.alloc(1024 * 1024);
    const cs = chunks(zeros);
    expect(cs.slice(0, -1).every((c) => c.length === P.max || c.length >= P.min)).toBe(true);
    expect(Buffer.concat(cs).equals(zeros)).toBe(true);
  });

  it('streams: chunkStream yields the same chunks', async () => {
    async function* src() { for (let o = 0; o < data.length; o += 65536) yield data.subarray(o, o + 65536); }
    const got: number[] = [];
    for await (const c of chunkStream(src(), gear, P)) got.push(c.length);
    expect(got).toEqual(chunks(data).map((c) => c.length));
  });

  // The chunk-pool workers find cuts in place in a window they read into and
  // compact: the cuts must be Chunker's, or the two paths would not dedup.
  function windowCuts(input: Buffer, read: number): number[] {
    const f = new CutFinder(gear, P);
    const win = Buffer.alloc(P.max + read);
    const sizes: number[] = [];
    let start = 0;
    let len = 0;
    let off = 0;
    for (;;) {
      if (win.length - len < read) {
        win.copyWithin(0, start, len);
        f.rebase(start);
        len -= start;
        start = 0;
      }
      const n = input.copy(win, len, off, Math.min(input.length, off + read));
      off += n;
      len += n;
      const eof = n === 0;
      for (let cut; (cut = f.next(win, start, len, eof)) >= 0; start = cut) sizes.push(cut - start);
      if (eof) return sizes;
    }
  }

  it('CutFinder cuts where Chunker cuts, whatever the read size, on random, zero and short data', () => {
    const zeros = Buffer.alloc(700 * 1024);
    for (const input of [data, zeros, data.subarray(0, 5000), Buffer.concat([data.subarray(0, 300_000), zeros])]) {
      const want = chunks(input).map((c) => c.length);
      for (const read of [4096, 65536, 100_003, P.max]) expect(windowCuts(input, read)).toEqual(want);
    }
    expect(windowCuts(Buffer.alloc(0), 4096)).toEqual([]);
  });

  it('uses quarter-size chunks for SQLite database files, on both paths, however the stream is cut', async () => {
    const db = Buffer.concat([Buffer.from('SQLite format 3\0', 'latin1'), data]);
    expect(chunkerFor(db, P)).toEqual({ min: P.min / 4, avg: P.avg / 4, max: P.max / 4 });
    expect(chunkerFor(data, P)).toBe(P);
    expect(chunkerFor(Buffer.from('SQLite'), P)).toBe(P);
    // Main-thread path: the first bytes come in pieces smaller than the header.
    async function* src() {
      for (let o = 0; o < 20; o++) yield db.subarray(o, o + 1);
      for (let o = 20; o < db.length; o += 65536) yield db.subarray(o, Math.min(db.length, o + 65536));
    }
    const streamed: number[] = [];
    for await (const c of chunkStream(src(), gear, P)) streamed.push(c.length);
    const q = chunkerFor(db, P);
    const f = new CutFinder(gear, q);
    const inPlace: number[] = [];
    for (let start = 0, cut; (cut = f.next(db, start, db.length, true)) >= 0; start = cut) inPlace.push(cut - start);
    expect(streamed).toEqual(inPlace);
    expect(streamed.length).toBeGreaterThan(2.5 * chunks(db).length);
    // Streams shorter than the header are one chunk.
    const tiny: Buffer[] = [];
    for await (const c of chunkStream((async function* () { yield Buffer.from('SQL'); yield Buffer.from('ite'); })(), gear, P)) tiny.push(c);
    expect(tiny.map(String)).toEqual(['SQLite']);
  });
});
