// Writing an RDB stream from the DUMP payloads a redis backup stores, so a
// restore can hand the target server one RDB (loaded at the server's own
// pace) instead of one RESTORE command per key.
//
// A DUMP payload is: RDB type byte | value in RDB encoding | u16 RDB version
// (LE) | u64 CRC64 (LE) of everything before it. An RDB is:
//   "REDIS" | 4-digit version | AUX fields
//   per database: SELECTDB (0xFE) db | RESIZEDB (0xFB) keys expires
//     per key: [EXPIRETIME_MS (0xFC) u64 LE unix ms] | type byte | key (RDB string) | value
//   EOF (0xFF) | u64 CRC64 (LE) of every byte before it, the 0xFF included.
// So a key is its payload's type byte and value, with the key (and expiry)
// put between them: every payload's CRC is checked before its bytes go out
// (the loader does not check values, and a corrupt value can stop the server).
//
// CRC64 is Redis' crc64 (Jones polynomial 0xad93d23594c935a9, reflected,
// init 0, no final xor; crc64("123456789") = 0xe9c6d914c4b8d9ca), the one of
// DUMP footers and RDB files, computed slicing-by-8: in WebAssembly with
// 64-bit integers for spans from 256 bytes (about 1.5 GB/s), in JavaScript on
// two 32-bit halves otherwise (about 0.4 GB/s) or where WebAssembly is missing.
import { IntegrityError } from '../core/errors.ts';

const POLY_LO = 0xac4bc9b5; // the polynomial bit-reversed (reflected CRC): 0x95ac9329ac4bc9b5
const POLY_HI = 0x95ac9329;

/** T[k][b] (k = 0..7): the CRC of byte b followed by k zero bytes, as lo/hi halves. */
const TLO: Uint32Array[] = [];
const THI: Uint32Array[] = [];
{
  const lo0 = new Uint32Array(256);
  const hi0 = new Uint32Array(256);
  for (let b = 0; b < 256; b++) {
    let lo = b;
    let hi = 0;
    for (let i = 0; i < 8; i++) {
      const bit = lo & 1;
      lo = ((lo >>> 1) | ((hi & 1) << 31)) >>> 0;
      hi >>>= 1;
      if (bit) { lo = (lo ^ POLY_LO) >>> 0; hi = (hi ^ POLY_HI) >>> 0; }
    }
    lo0[b] = lo;
    hi0[b] = hi;
  }
  TLO.push(lo0);
  THI.push(hi0);
  for (let k = 1; k < 8; k++) {
    const plo = TLO[k - 1];
    const phi = THI[k - 1];
    const lo = new Uint32Array(256);
    const hi = new Uint32Array(256);
    for (let b = 0; b < 256; b++) {
      // one more zero byte: crc = T0[crc & 0xff] ^ (crc >> 8)
      const l = plo[b];
      const h = phi[b];
      const i = l & 0xff;
      lo[b] = (lo0[i] ^ ((l >>> 8) | (h << 24))) >>> 0;
      hi[b] = (hi0[i] ^ (h >>> 8)) >>> 0;
    }
    TLO.push(lo);
    THI.push(hi);
  }
}
const [L0, L1, L2, L3, L4, L5, L6, L7] = TLO;
const [H0, H1, H2, H3, H4, H5, H6, H7] = THI;

// The same slicing-by-8 loop as Crc64.updateJs, in WebAssembly (64-bit
// integer ops: about twice as fast), assembled here from its bytes:
//   crc(lo i32, hi i32, n i32): state = hi:lo; for the n bytes at DATA, 8 at a
//   time: x = state ^ load64; state = T7[x & 0xff] ^ T6[x >> 8 & 0xff] ^ ...
//   ^ T0[x >> 56]; the rest one at a time; the state is stored at OUT.
// Tables at 0 (T_k[b] at k * 2048 + b * 8), OUT at 16384, DATA from 16392:
// WASM_WINDOW bytes at a time, in a fixed memory (never grown).
const WASM_MIN = 256;
const WASM_WINDOW = 4 << 20;
const OUT = 16384;
const DATA = 16392;
let wasm: { crc: (lo: number, hi: number, n: number) => void; data: Uint8Array; out: Uint32Array } | null | undefined;

function wasmCrc(): typeof wasm {
  if (wasm !== undefined) return wasm;
  try {
    const leb = (n: number): number[] => { const out: number[] = []; do { let b = n & 0x7f; n >>>= 7; if (n) b |= 0x80; out.push(b); } while (n); return out; };
    const vec = (items: number[][]) => [...leb(items.length), ...items.flat()];
    const section = (id: number, body: number[]) => [id, ...leb(body.length), ...body];
    const name = (n: string) => vec([...n].map((c) => [c.charCodeAt(0)]));
    const I64 = 0x7e;
    const I32 = 0x7f;
    // params 0 lo, 1 hi, 2 n; locals 3 state (i64), 4 x (i64), 5 p (i32)
    const get = (i: number) => [0x20, i];
    const set = (i: number) => [0x21, i];
    const i32c = (n: number) => [0x41, ...sleb32(n)];
    const lookup = (k: number, shift: number) => [...get(4), 0x42, shift, 0x88, 0xa7, ...i32c(0xff), 0x71, ...i32c(3), 0x74, 0x29, 3, ...leb(k * 2048)];
    const code = [
      ...vec([[2, I64], [1, I32]]),
      ...get(1), 0xad, 0x42, 32, 0x86, ...get(0), 0xad, 0x84, ...set(3), // state = hi << 32 | lo
      ...i32c(DATA), ...set(5),
      0x02, 0x40, 0x03, 0x40,
      ...get(2), ...i32c(8), 0x49, 0x0d, 1,
      ...get(3), ...get(5), 0x29, 0, 0, 0x85, ...set(4),
      ...lookup(7, 0), ...lookup(6, 8), 0x85, ...lookup(5, 16), 0x85, ...lookup(4, 24), 0x85,
      ...lookup(3, 32), 0x85, ...lookup(2, 40), 0x85, ...lookup(1, 48), 0x85, ...lookup(0, 56), 0x85, ...set(3),
      ...get(5), ...i32c(8), 0x6a, ...set(5), ...get(2), ...i32c(8), 0x6b, ...set(2),
      0x0c, 0, 0x0b, 0x0b,
      0x02, 0x40, 0x03, 0x40,
      ...get(2), 0x45, 0x0d, 1,
      ...get(3), ...get(5), 0x31, 0, 0, 0x85, ...set(4),
      ...lookup(0, 0), ...get(3), 0x42, 8, 0x88, 0x85, ...set(3),
      ...get(5), ...i32c(1), 0x6a, ...set(5), ...get(2), ...i32c(1), 0x6b, ...set(2),
      0x0c, 0, 0x0b, 0x0b,
      ...i32c(OUT), ...get(3), 0x37, 3, 0, // store state at OUT
      0x0b,
    ];
    const pages = Math.ceil((DATA + WASM_WINDOW) / 65536);
    const bytes = new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0,
      ...section(1, vec([[0x60, ...vec([[I32], [I32], [I32]]), 0]])),
      ...section(3, vec([[0]])),
      ...section(5, vec([[1, ...leb(pages), ...leb(pages)]])),
      ...section(7, vec([[...name('crc'), 0, 0], [...name('mem'), 2, 0]])),
      ...section(10, vec([[...leb(code.length), ...code]])),
    ]);
    // (WebAssembly is a global of Node; this project's TypeScript lib does not declare it.)
    const wa = (globalThis as unknown as { WebAssembly: { Module: new (b: Uint8Array) => object; Instance: new (m: object) => { exports: Record<string, unknown> } } }).WebAssembly;
    const inst = new wa.Instance(new wa.Module(bytes));
    const mem = inst.exports.mem as { buffer: ArrayBuffer };
    const t = new Uint32Array(mem.buffer, 0, 4096);
    for (let k = 0; k < 8; k++) {
      for (let b = 0; b < 256; b++) {
        t[(k * 256 + b) * 2] = TLO[k][b];
        t[(k * 256 + b) * 2 + 1] = THI[k][b];
      }
    }
    wasm = { crc: inst.exports.crc as (lo: number, hi: number, n: number) => void, data: new Uint8Array(mem.buffer, DATA, WASM_WINDOW), out: new Uint32Array(mem.buffer, OUT, 2) };
  } catch {
    wasm = null; // no WebAssembly: the JavaScript loop
  }
  return wasm;
}

function sleb32(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) { out.push(b); return out; }
    out.push(b | 0x80);
  }
}

/** A running CRC64 (Redis' crc64), as two 32-bit halves. */
export class Crc64 {
  lo = 0;
  hi = 0;

  update(b: Uint8Array, start = 0, end = b.length): this {
    if (end - start >= WASM_MIN) {
      const w = wasmCrc();
      if (w) {
        for (let i = start; i < end; i += WASM_WINDOW) {
          const e = Math.min(end, i + WASM_WINDOW);
          w.data.set(b.subarray(i, e));
          w.crc(this.lo, this.hi, e - i);
          this.lo = w.out[0];
          this.hi = w.out[1];
        }
        return this;
      }
    }
    return this.updateJs(b, start, end);
  }

  private updateJs(b: Uint8Array, start: number, end: number): this {
    let lo = this.lo;
    let hi = this.hi;
    let i = start;
    const fast = end - 8;
    while (i <= fast) {
      const a = (lo ^ (b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24))) >>> 0;
      const c = (hi ^ (b[i + 4] | (b[i + 5] << 8) | (b[i + 6] << 16) | (b[i + 7] << 24))) >>> 0;
      lo = L7[a & 0xff] ^ L6[(a >>> 8) & 0xff] ^ L5[(a >>> 16) & 0xff] ^ L4[a >>> 24]
        ^ L3[c & 0xff] ^ L2[(c >>> 8) & 0xff] ^ L1[(c >>> 16) & 0xff] ^ L0[c >>> 24];
      hi = H7[a & 0xff] ^ H6[(a >>> 8) & 0xff] ^ H5[(a >>> 16) & 0xff] ^ H4[a >>> 24]
        ^ H3[c & 0xff] ^ H2[(c >>> 8) & 0xff] ^ H1[(c >>> 16) & 0xff] ^ H0[c >>> 24];
      i += 8;
    }
    for (; i < end; i++) {
      const x = (lo ^ b[i]) & 0xff;
      lo = (L0[x] ^ ((lo >>> 8) | (hi << 24))) >>> 0;
      hi = (H0[x] ^ (hi >>> 8)) >>> 0;
    }
    this.lo = lo >>> 0;
    this.hi = hi >>> 0;
    return this;
  }

  /** The CRC as 8 bytes, little-endian (the byte order of DUMP footers and RDB files). */
  bytes(): Buffer {
    const out = Buffer.allocUnsafe(8);
    out.writeUInt32LE(this.lo >>> 0, 0);
    out.writeUInt32LE(this.hi >>> 0, 4);
    return out;
  }

  value(): bigint {
    return (BigInt(this.hi >>> 0) << 32n) | BigInt(this.lo >>> 0);
  }
}

export function crc64(b: Uint8Array): bigint {
  return new Crc64().update(b).value();
}

// Appending n zero bytes to a CRC state is a linear map Z^n over GF(2)^64
// (init 0, no final xor: crc(S, V) = Z^|V|(S) ^ crc(0, V)). Z^(2^k) is kept as
// 8 byte tables (lo/hi halves), built by squaring, so Z^n costs 16 lookups
// per set bit of n. It lets the writer take a value's CRC from its payload's
// check instead of reading the value bytes a second time.
interface ZeroOp { lo: Uint32Array[]; hi: Uint32Array[] }
const ZERO_OPS: ZeroOp[] = [];

function applyOp(op: ZeroOp, lo: number, hi: number): [number, number] {
  const l = op.lo;
  const h = op.hi;
  return [
    (l[0][lo & 0xff] ^ l[1][(lo >>> 8) & 0xff] ^ l[2][(lo >>> 16) & 0xff] ^ l[3][lo >>> 24]
      ^ l[4][hi & 0xff] ^ l[5][(hi >>> 8) & 0xff] ^ l[6][(hi >>> 16) & 0xff] ^ l[7][hi >>> 24]) >>> 0,
    (h[0][lo & 0xff] ^ h[1][(lo >>> 8) & 0xff] ^ h[2][(lo >>> 16) & 0xff] ^ h[3][lo >>> 24]
      ^ h[4][hi & 0xff] ^ h[5][(hi >>> 8) & 0xff] ^ h[6][(hi >>> 16) & 0xff] ^ h[7][hi >>> 24]) >>> 0,
  ];
}

/** The byte tables of the linear map whose images of the 64 unit vectors are `col`. */
function opFromColumns(col: [number, number][]): ZeroOp {
  const op: ZeroOp = { lo: [], hi: [] };
  for (let j = 0; j < 8; j++) {
    const lo = new Uint32Array(256);
    const hi = new Uint32Array(256);
    for (let b = 1; b < 256; b++) {
      const bit = 31 - Math.clz32(b & -b);
      const [cl, ch] = col[8 * j + bit];
      lo[b] = (lo[b & (b - 1)] ^ cl) >>> 0;
      hi[b] = (hi[b & (b - 1)] ^ ch) >>> 0;
    }
    op.lo.push(lo);
    op.hi.push(hi);
  }
  return op;
}

function zeroOp(k: number): ZeroOp {
  while (ZERO_OPS.length <= k) {
    const col: [number, number][] = [];
    for (let i = 0; i < 64; i++) {
      const lo = i < 32 ? (1 << i) >>> 0 : 0;
      const hi = i < 32 ? 0 : (1 << (i - 32)) >>> 0;
      if (ZERO_OPS.length === 0) {
        const c = new Crc64();
        c.lo = lo;
        c.hi = hi;
        c.update(ONE_ZERO);
        col.push([c.lo, c.hi]);
      } else {
        const prev = ZERO_OPS[ZERO_OPS.length - 1];
        const [a, b] = applyOp(prev, lo, hi);
        col.push(applyOp(prev, a, b));
      }
    }
    ZERO_OPS.push(opFromColumns(col));
  }
  return ZERO_OPS[k];
}
const ONE_ZERO = new Uint8Array(1);

/** The CRC state (lo, hi) after n more zero bytes. */
export function crcShift(lo: number, hi: number, n: number): [number, number] {
  let l = lo >>> 0;
  let h = hi >>> 0;
  for (let k = 0; n > 0; k++, n = Math.floor(n / 2)) {
    if (n % 2 === 1) [l, h] = applyOp(zeroOp(k), l, h);
  }
  return [l, h];
}

/** Opcodes start here; a type byte at or above it would be read as one. */
const FIRST_OPCODE = 0xf0;

export interface Payload {
  type: number;
  /** The value in RDB encoding (a view into the payload). */
  value: Buffer;
  version: number;
  /** The CRC64 state after the type byte and the value (lo, hi halves), from the check of the payload: the writer splices the value's CRC from it. */
  crcLo: number;
  crcHi: number;
}

/**
 * Splits a DUMP payload into type byte, value and RDB version, after checking
 * its CRC64 footer; `what` names the key in the error.
 */
export function splitPayload(dump: Buffer, what: string): Payload {
  if (dump.length < 11) throw new IntegrityError(`${what}: DUMP payload of ${dump.length} bytes is too short`);
  const end = dump.length - 8;
  const c = new Crc64().update(dump, 0, end - 2);
  const crcLo = c.lo;
  const crcHi = c.hi;
  c.update(dump, end - 2, end);
  if (dump.readUInt32LE(end) !== c.lo || dump.readUInt32LE(end + 4) !== c.hi) throw new IntegrityError(`${what}: DUMP payload checksum (CRC64) does not match its bytes`);
  const type = dump[0];
  if (type >= FIRST_OPCODE) throw new IntegrityError(`${what}: DUMP payload has no value type (byte ${type})`);
  return { type, value: dump.subarray(1, end - 2), version: dump.readUInt16LE(end - 2), crcLo, crcHi };
}

/** The DUMP payload of a string value (what the server's DUMP gives for a raw string), split. */
export function stringPayload(value: Buffer, version: number): Payload {
  const body = Buffer.concat([Buffer.from([0]), rdbLength(value.length), value, Buffer.from([version & 0xff, version >> 8])]);
  return splitPayload(Buffer.concat([body, new Crc64().update(body).bytes()]), 'string payload');
}

/**
 * The RDB version a server of this version loads at most (INFO server
 * redis_version; Valkey reports a 7.2 redis_version). Unknown versions count
 * as the oldest that can be a target (a payload above it goes through RESTORE).
 */
export function rdbVersionFor(redisVersion: string): number {
  const m = /^(\d+)\.(\d+)/.exec(redisVersion);
  if (!m) return 6;
  const v = Number(m[1]) * 100 + Number(m[2]);
  if (v >= 704) return 12;
  if (v >= 702) return 11;
  if (v >= 700) return 10;
  if (v >= 500) return 9;
  if (v >= 400) return 8;
  if (v >= 302) return 7;
  return 6;
}

/** A length in RDB length encoding. */
export function rdbLength(n: number): Buffer {
  if (n < 1 << 6) return Buffer.from([n]);
  if (n < 1 << 14) return Buffer.from([0x40 | (n >> 8), n & 0xff]);
  if (n <= 0xffffffff) { const b = Buffer.allocUnsafe(5); b[0] = 0x80; b.writeUInt32BE(n, 1); return b; }
  const b = Buffer.allocUnsafe(9);
  b[0] = 0x81;
  b.writeBigUInt64BE(BigInt(n), 1);
  return b;
}

function rdbString(s: Buffer | string): Buffer {
  const b = Buffer.isBuffer(s) ? s : Buffer.from(s);
  return Buffer.concat([rdbLength(b.length), b]);
}

const BUF = 1 << 20;

/**
 * Encodes an RDB stream into 1 MiB buffers handed to `out` (large values are
 * handed as they are), with the running CRC64. The caller writes the header,
 * then per database selectDb() and keys, then end().
 */
export class RdbWriter {
  private readonly crc = new Crc64();
  private buf = Buffer.allocUnsafe(BUF);
  private pos = 0;
  /** Bytes written so far. */
  size = 0;

  constructor(private readonly out: (b: Buffer) => void) {}

  header(version: number, aux: Record<string, string>): void {
    this.raw(Buffer.from(`REDIS${String(version).padStart(4, '0')}`));
    for (const [k, v] of Object.entries(aux)) this.raw(Buffer.concat([Buffer.from([0xfa]), rdbString(k), rdbString(v)]));
  }

  selectDb(db: number, keys: number, expires: number): void {
    this.raw(Buffer.concat([Buffer.from([0xfe]), rdbLength(db), Buffer.from([0xfb]), rdbLength(keys), rdbLength(expires)]));
  }

  /**
   * One key: expireAt (unix ms) or -1, the type byte and value of its
   * payload. The value's bytes are not read again for the stream's CRC: with
   * S the state after the key, T = crc(0, type) and P = crc(0, type|value)
   * (kept by the payload's check), crc(S, value) = Z^|value|(S ^ T) ^ P.
   */
  key(key: Buffer, expireAt: number, p: Payload): void {
    if (this.pos + 32 > BUF) this.flush();
    const b = this.buf;
    const start = this.pos;
    let o = start;
    if (expireAt >= 0) {
      b[o++] = 0xfc;
      b.writeUInt32LE(expireAt % 0x100000000, o);
      b.writeUInt32LE(Math.floor(expireAt / 0x100000000), o + 4);
      o += 8;
    }
    b[o++] = p.type;
    const n = key.length;
    if (n < 1 << 6) b[o++] = n;
    else if (n < 1 << 14) { b[o++] = 0x40 | (n >> 8); b[o++] = n & 0xff; }
    else { b[o++] = 0x80; b.writeUInt32BE(n, o); o += 4; }
    this.crc.update(b, start, o).update(key);
    this.pos = o;
    this.size += o - start;
    const [lo, hi] = crcShift(this.crc.lo ^ L0[p.type], this.crc.hi ^ H0[p.type], p.value.length);
    this.crc.lo = (lo ^ p.crcLo) >>> 0;
    this.crc.hi = (hi ^ p.crcHi) >>> 0;
    this.copy(key);
    this.copy(p.value);
  }

  /** EOF and the CRC64 of the whole stream; hands the rest to `out`. */
  end(): void {
    this.raw(Buffer.from([0xff]));
    this.flush();
    const c = this.crc.bytes();
    this.size += c.length;
    this.out(c);
  }

  /** Bytes that go into the CRC as they are written. */
  private raw(b: Buffer): void {
    this.crc.update(b);
    this.copy(b);
  }

  /** Bytes whose CRC is already counted: into the buffer, or handed on as they are when large. */
  private copy(b: Buffer): void {
    this.size += b.length;
    if (b.length >= 64 * 1024) {
      this.flush();
      this.out(b);
      return;
    }
    if (this.pos + b.length > BUF) this.flush();
    b.copy(this.buf, this.pos);
    this.pos += b.length;
  }

  /** Hands the filled part of the buffer to `out` (which keeps it) and starts a new one. */
  flush(): void {
    if (this.pos === 0) return;
    this.out(this.buf.subarray(0, this.pos));
    this.buf = Buffer.allocUnsafe(BUF);
    this.pos = 0;
  }
}
