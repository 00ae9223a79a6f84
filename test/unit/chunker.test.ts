import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { Chunker, chunkStream, type ChunkerParams } from '../../functions/core/chunker.ts';
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
});
