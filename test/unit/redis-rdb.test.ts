// The RDB writer of rdb-sync restores (functions/components/redis-rdb.ts): its
// two CRC64 loops (WebAssembly, JavaScript) agree; the CRC64 it ends the stream with, spliced from the payloads' checks without
// reading values twice, equals the CRC64 of the bytes it wrote; lengths in RDB
// encoding; payloads with a wrong footer or an opcode for a type refused.
// (The CRC against real DUMP footers, and the server loading the stream:
// test/integration/redis-rdb-sync.test.ts.)
import { describe, expect, it } from 'vitest';
import { Crc64, crc64, crcShift, RdbWriter, rdbLength, rdbVersionFor, splitPayload, stringPayload } from '../../functions/components/redis-rdb.ts';
import { SeededRandom } from '../helpers/seeded-random.ts';

/** A payload as DUMP writes it: type | value | version | CRC64. */
function payload(type: number, value: Buffer, version = 10): Buffer {
  const body = Buffer.concat([Buffer.from([type]), value, Buffer.from([version, 0])]);
  return Buffer.concat([body, new Crc64().update(body).bytes()]);
}

describe('redis RDB writer', () => {
  it('the WebAssembly loop (spans from 256 bytes, 4 MiB at a time) gives the CRC of the JavaScript one (shorter spans)', () => {
    const b = Buffer.alloc((9 << 20) + 11);
    for (let i = 0; i < b.length; i++) b[i] = (i * 2654435761) >>> 24;
    for (const [start, n] of [[0, 255], [0, 256], [5, 257], [3, 1000], [1, 8], [7, (9 << 20) + 3]]) {
      const whole = new Crc64().update(b, start, start + n);
      const pieces = new Crc64();
      for (let i = start; i < start + n; i += 200) pieces.update(b, i, Math.min(i + 200, start + n));
      expect([whole.lo, whole.hi], `${start}+${n}`).toEqual([pieces.lo, pieces.hi]);
    }
    expect(crc64(Buffer.from('123456789'.repeat(40)))).toBe(new Crc64().update(Buffer.from('123456789'.repeat(40)), 0, 200).update(Buffer.from('123456789'.repeat(40)), 200, 360).value());
  });

  it('Z^n is n zero bytes', () => {
    for (const n of [0, 1, 2, 7, 8, 9, 255, 4096, 100_003]) {
      const c = new Crc64().update(Buffer.from('some state'));
      const [lo, hi] = crcShift(c.lo, c.hi, n);
      c.update(Buffer.alloc(n));
      expect([lo, hi], `n=${n}`).toEqual([c.lo, c.hi]);
    }
  });

  it('ends the stream with the CRC64 of every byte before it', () => {
    const r = new SeededRandom(7);
    const rnd = () => r.next();
    const parts: Buffer[] = [];
    const w = new RdbWriter((b) => parts.push(Buffer.from(b)));
    w.header(10, { 'redis-ver': '7.0.15', ctime: '1' });
    for (const db of [0, 7, 300]) {
      w.selectDb(db, 500, 100);
      for (let i = 0; i < 500; i++) {
        const size = i === 3 ? 200_000 : Math.floor(rnd() * 3000);
        const v = Buffer.alloc(size);
        for (let j = 0; j < size; j++) v[j] = Math.floor(rnd() * 256);
        const key = Buffer.from(i === 5 ? 'k'.repeat(20_000) : `key:${db}:${i}`);
        w.key(key, i % 5 === 0 ? 1_796_000_000_000 + i : -1, splitPayload(payload(i % 20, v), 'k'));
      }
    }
    w.key(Buffer.from('memvault:drill-scratch'), -1, stringPayload(Buffer.from('tag'), 10));
    w.end();
    const all = Buffer.concat(parts);
    expect(all.length).toBe(w.size);
    expect(all.subarray(0, 9).toString()).toBe('REDIS0010');
    expect(all[all.length - 9]).toBe(0xff);
    expect(all.readBigUInt64LE(all.length - 8)).toBe(crc64(all.subarray(0, all.length - 8)));
    // the drill mark: a string key with its value in RDB string encoding
    expect(all.includes(Buffer.concat([Buffer.from([0, 22]), Buffer.from('memvault:drill-scratch'), Buffer.from([3]), Buffer.from('tag')]))).toBe(true);
  });

  it('encodes lengths as RDB does, and refuses payloads with a wrong footer or no value type', () => {
    expect(rdbLength(63)).toEqual(Buffer.from([63]));
    expect(rdbLength(64)).toEqual(Buffer.from([0x40, 64]));
    expect(rdbLength(16383)).toEqual(Buffer.from([0x7f, 0xff]));
    expect(rdbLength(16384)).toEqual(Buffer.from([0x80, 0, 0, 0x40, 0]));
    expect(rdbLength(2 ** 32)).toEqual(Buffer.from([0x81, 0, 0, 0, 1, 0, 0, 0, 0]));
    const good = payload(0, Buffer.from([3, 0x61, 0x62, 0x63]));
    expect(splitPayload(good, 'key a').value).toEqual(Buffer.from([3, 0x61, 0x62, 0x63]));
    const bad = Buffer.from(good);
    bad[2] ^= 1;
    expect(() => splitPayload(bad, 'key a')).toThrow('key a: DUMP payload checksum (CRC64) does not match its bytes');
    expect(() => splitPayload(payload(0xfe, Buffer.from([1])), 'key b')).toThrow('key b: DUMP payload has no value type');
    expect(() => splitPayload(Buffer.alloc(5), 'key c')).toThrow('too short');
  });

  it('knows the RDB version each server version loads', () => {
    expect(['6.2.14', '7.0.15', '7.2.4', '7.4.1', '8.0.0', 'x'].map(rdbVersionFor)).toEqual([9, 10, 11, 12, 12, 6]);
  });
});
