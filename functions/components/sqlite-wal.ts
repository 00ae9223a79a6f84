// Continuous protection of a SQLite database in WAL mode (after Litestream):
// new WAL frames are shipped into the vault every `continuous.intervalSeconds`,
// and a restore replays them onto a base snapshot up to a point in time.
//
// Shipping (SqliteShipper.tick):
//   - the shipper always holds a read transaction on one of two read-only
//     connections, handed over (the new one begins before the old one ends),
//     so SQLite cannot restart the WAL over frames not yet shipped: a restart
//     needs every reader to be off the WAL, which only happens once the shipper
//     has read every commit there is;
//   - each tick reads the WAL from the next unshipped frame, checks each
//     frame's salt and the cumulative checksum, and ships the frames up to the
//     last commit frame as one sealed object (core/continuous.ts names it with
//     the frame range and the time it was read);
//   - a new salt in the WAL header with the checkpoint sequence one higher is
//     a restart of a WAL that was read to its end: frames continue in the next
//     WAL index of the same generation. Anything else (a jump in the sequence,
//     a shipper that resumes and finds its position gone) starts a new
//     generation from a fresh base snapshot;
//   - once the WAL holds `checkpointFrames` frames the shipper checkpoints
//     itself: under SQLite's write lock it ships the rest, lets go of its
//     reads, runs a PASSIVE checkpoint, and releases the lock; the next writer
//     then restarts the WAL (the shipper's reader keeps it from growing without end).
// Base snapshots are normal memvault backups: with `continuous` set, the
// sqlite driver takes SQLite's write lock for a moment, records the WAL
// position (salt, last commit frame) its read transaction sees, lets writers
// go on, and copies the database inside that read transaction.
//
// Restore to a time: the newest base snapshot at or before it, then every
// shipped object of its generation after the snapshot's position whose time is
// at or before it, each authenticated and checked (names, frame ranges,
// checksum chain); pages are written where they belong and the file is cut to
// the database size of each commit, as SQLite's checkpoint does. A missing or
// damaged object stops the restore with its name.
import { existsSync, promises as fs, statSync } from 'node:fs';
import { DatabaseSync } from 'node:sqlite';
import type { Vault } from '../core/vault.ts';
import type { Logger } from './types.ts';
import type { ManifestHeader } from '../core/manifest.ts';
import { type ContinuousSettings, type FrameObjectName, type ShippedListing, frameObjectKey, headObjectKey, listShipped, newGeneration, readWalObject, writeWalObject } from '../core/continuous.ts';
import { readCatalog } from '../core/catalog.ts';
import { durationMs } from '../core/config.ts';
import { IntegrityError, NotFoundError, PermanentError, errorMessage } from '../core/errors.ts';
import { pausePoint } from '../core/pause.ts';

// ---------------------------------------------------------------- the WAL file format

export const WAL_HEADER_BYTES = 32;
export const FRAME_HEADER_BYTES = 24;
type Checksum = [number, number];

export interface WalHeader {
  bigEndian: boolean;
  pageSize: number;
  ckptSeq: number;
  /** Salt-1 and salt-2 as 16 hex digits (the bytes as in the file). */
  salt: string;
  checksum: Checksum;
  raw: Buffer;
}

/** SQLite's WAL checksum over b[start, end) (a multiple of 8 bytes), continuing from s. */
export function walChecksum(bigEndian: boolean, b: Buffer, start: number, end: number, s: Checksum): Checksum {
  let [s0, s1] = s;
  for (let i = start; i < end; i += 8) {
    const x0 = bigEndian ? b.readUInt32BE(i) : b.readUInt32LE(i);
    const x1 = bigEndian ? b.readUInt32BE(i + 4) : b.readUInt32LE(i + 4);
    s0 = (s0 + x0 + s1) >>> 0;
    s1 = (s1 + x1 + s0) >>> 0;
  }
  return [s0, s1];
}

export function parseWalHeader(b: Buffer): WalHeader | null {
  if (b.length < WAL_HEADER_BYTES) return null;
  const magic = b.readUInt32BE(0);
  if (magic !== 0x377f0682 && magic !== 0x377f0683) return null;
  if (b.readUInt32BE(4) !== 3007000) return null;
  const bigEndian = magic === 0x377f0683;
  const ps = b.readUInt32BE(8);
  const pageSize = ps === 1 ? 65536 : ps;
  if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) return null;
  const c = walChecksum(bigEndian, b, 0, 24, [0, 0]);
  if (c[0] !== b.readUInt32BE(24) || c[1] !== b.readUInt32BE(28)) return null;
  return { bigEndian, pageSize, ckptSeq: b.readUInt32BE(12), salt: b.subarray(16, 24).toString('hex'), checksum: c, raw: Buffer.from(b.subarray(0, WAL_HEADER_BYTES)) };
}

export interface FrameScan {
  /** Frame number of the last commit frame found (from - 1 when none). */
  lastCommit: number;
  /** The cumulative checksum after that commit frame. */
  commitChecksum: Checksum;
  /** Database size in pages after that commit. */
  commitPages: number;
  /** Valid frames found (up to the first that fails its salt or checksum). */
  valid: number;
}

/** Scans frames in `b` (which starts at frame `from`): salts and the checksum chain from `prev`. */
export function scanFrames(h: WalHeader, b: Buffer, from: number, prev: Checksum): FrameScan {
  const size = FRAME_HEADER_BYTES + h.pageSize;
  let ck = prev;
  const out: FrameScan = { lastCommit: from - 1, commitChecksum: prev, commitPages: 0, valid: 0 };
  for (let off = 0, n = from; off + size <= b.length; off += size, n++) {
    if (!h.raw.subarray(16, 24).equals(b.subarray(off + 8, off + 16))) break;
    ck = walChecksum(h.bigEndian, b, off, off + 8, ck);
    ck = walChecksum(h.bigEndian, b, off + FRAME_HEADER_BYTES, off + size, ck);
    if (ck[0] !== b.readUInt32BE(off + 16) || ck[1] !== b.readUInt32BE(off + 20)) break;
    out.valid++;
    const commit = b.readUInt32BE(off + 4);
    if (commit > 0) {
      out.lastCommit = n;
      out.commitChecksum = ck;
      out.commitPages = commit;
    }
  }
  return out;
}

async function readFrom(file: string, offset: number, max = Infinity): Promise<Buffer> {
  let fh;
  try {
    fh = await fs.open(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return Buffer.alloc(0);
    throw err;
  }
  try {
    const size = (await fh.stat()).size;
    const n = Math.max(0, Math.min(size - offset, max));
    const b = Buffer.alloc(n);
    let got = 0;
    while (got < n) {
      const { bytesRead } = await fh.read(b, got, n - got, offset + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return b.subarray(0, got);
  } finally {
    await fh.close();
  }
}

/** Where a base snapshot stands in the WAL: every commit up to `frame` of the WAL with `salt`. */
export interface WalPosition {
  salt: string | null;
  frame: number;
  /** When the position was taken (the snapshot's point in time). */
  at: string;
  /** The generation that a shipper started with this snapshot. */
  generation?: string;
}

/**
 * The WAL position a read transaction begun now would see: the last valid commit frame
 * of the WAL file, or, when the WAL holds no frames, the salt its next frames will carry
 * (from the -shm header). Call it under SQLite's write lock (nothing commits meanwhile).
 */
export async function currentWalPosition(dbFile: string): Promise<{ salt: string | null; frame: number }> {
  const b = await readFrom(`${dbFile}-wal`, 0);
  const h = parseWalHeader(b);
  if (h) {
    const s = scanFrames(h, b.subarray(WAL_HEADER_BYTES), 1, h.checksum);
    if (s.lastCommit > 0) return { salt: h.salt, frame: s.lastCommit };
  }
  const shm = await readFrom(`${dbFile}-shm`, 0, 48);
  if (shm.length >= 48 && shm.readUInt32LE(16) === 0 && !shm.subarray(32, 40).equals(Buffer.alloc(8))) return { salt: shm.subarray(32, 40).toString('hex'), frame: 0 };
  return { salt: h?.salt ?? null, frame: 0 };
}

// ---------------------------------------------------------------- shipped objects

export interface FramesHeader {
  format: 'memvault-sqlite-frames/1';
  component: string;
  generation: string;
  index: number;
  salt: string;
  /** The WAL header (base64), for the page size and checksum byte order. */
  walHeader: string;
  first: number;
  last: number;
  /** Checksum before the first frame and after the last. */
  prevChecksum: Checksum;
  endChecksum: Checksum;
  /** Database size in pages after the last commit. */
  pages: number;
  time: string;
  /** For the first object of a WAL index after the first: the last frame shipped of the one before. */
  prevIndexLast?: number;
  /** The shipper keeps the generation's head object (wal/<component>/<generation>/head) up to date. */
  headed?: true;
}

/** wal/<component>/<generation>/head: the newest object shipped in the generation. */
export interface FramesHead {
  format: 'memvault-sqlite-head/1';
  component: string;
  generation: string;
  /** Key, WAL index, last frame and time of the newest shipped object. */
  key: string;
  index: number;
  last: number;
  time: string;
}

// ---------------------------------------------------------------- the shipper

export interface ShipperOptions {
  vault: Vault;
  component: string;
  /** Absolute path of the live database. */
  dbPath: string;
  settings: ContinuousSettings;
  log: Logger;
  /** Takes a base snapshot: a backup of the component recording its WAL position and this generation. */
  snapshot(generation: string): Promise<{ backupId: string }>;
  /**
   * With no new commit for this long, an object of no frames is shipped: it records that
   * the shipper read the WAL to its end then (an idle database is not a late one).
   * @default 60 s
   */
  heartbeatMs?: number;
  now?: () => Date;
}

/** The heartbeat for a component's rpo: a quarter of it, between the interval and a minute. */
export function heartbeatFor(rpo: string | undefined, intervalSeconds: number): number {
  const quarter = rpo ? durationMs(rpo) / 4 : 60_000;
  return Math.max(intervalSeconds * 1000, Math.min(60_000, quarter));
}

export interface TickResult {
  shipped: number;
  key?: string;
  generation: string;
  index: number;
  /** Frames in the WAL after this tick (what a checkpoint would backfill). */
  walFrames: number;
  checkpointed: boolean;
  snapshot?: string;
}

interface ShipState {
  generation: string;
  /** -1 until the generation's first WAL header was seen. */
  index: number;
  hdr: WalHeader | null;
  next: number;
  ck: Checksum;
  prevIndexLast?: number;
  snapshotAt: number;
  /** When the last object was shipped (ms). */
  shippedAt: number;
  /** The newest object shipped, and the one the head object names now. */
  newest?: { key: string; index: number; last: number; time: string };
  headKey?: string;
}

/** A database without continuous protection set up correctly (not WAL mode...): permanent. */
export class ContinuousSetupError extends PermanentError {
  override name = 'ContinuousSetupError';
}

export class SqliteShipper {
  private readers: DatabaseSync[] = [];
  private active = 0;
  private writer: DatabaseSync | null = null;
  private checkpointer: DatabaseSync | null = null;
  private state: ShipState | null = null;
  private readonly now: () => Date;
  readonly walFile: string;

  constructor(private readonly o: ShipperOptions) {
    this.now = o.now ?? (() => new Date());
    this.walFile = `${o.dbPath}-wal`;
  }

  get generation(): string | null { return this.state?.generation ?? null; }

  private open(): void {
    if (this.readers.length) return;
    const probe = new DatabaseSync(this.o.dbPath, { timeout: 10_000 });
    try {
      const mode = (probe.prepare('PRAGMA journal_mode').get() as { journal_mode: string }).journal_mode;
      if (mode.toLowerCase() !== 'wal') throw new ContinuousSetupError(`components.${this.o.component}.continuous: ${this.o.dbPath} is in journal_mode ${mode}; continuous shipping needs WAL mode (PRAGMA journal_mode=WAL)`);
    } finally {
      probe.close();
    }
    this.readers = [0, 1].map(() => new DatabaseSync(this.o.dbPath, { readOnly: true, timeout: 10_000 }));
    this.writer = new DatabaseSync(this.o.dbPath, { timeout: 5_000 });
    this.checkpointer = new DatabaseSync(this.o.dbPath, { timeout: 5_000 });
    this.begin(this.readers[0]);
    this.active = 0;
  }

  private begin(r: DatabaseSync): void {
    r.exec('BEGIN');
    r.prepare('SELECT count(*) FROM sqlite_schema').get();
  }

  /** A new read transaction begins before the old one ends: some reader always holds the WAL. */
  private handOver(): void {
    const next = 1 - this.active;
    this.begin(this.readers[next]);
    if (this.readers[this.active].isTransaction) this.readers[this.active].exec('COMMIT');
    this.active = next;
  }

  async close(): Promise<void> {
    // The read-write connections first, while the readers still hold the database (closing the
    // last connection would checkpoint and remove the WAL).
    for (const d of [this.writer, this.checkpointer]) try { d?.close(); } catch { /* closed */ }
    for (const r of this.readers) try { if (r.isTransaction) r.exec('COMMIT'); r.close(); } catch { /* closed */ }
    this.readers = [];
    this.writer = this.checkpointer = null;
  }

  private async readHeader(): Promise<WalHeader | null> {
    return parseWalHeader(await readFrom(this.walFile, 0, WAL_HEADER_BYTES));
  }

  /** Picks up a generation this component's shipper left in the vault, if the WAL still continues it. */
  private async resume(): Promise<ShipState | null> {
    const l = await listShipped(this.o.vault, this.o.component);
    if (l.frames.length === 0) return null;
    const lastGen = l.frames[l.frames.length - 1].generation;
    const newest = l.frames.filter((f) => f.generation === lastGen).at(-1)!;
    const snap = await newestSnapshotOf(this.o.vault, this.o.component, lastGen);
    if (!snap) {
      this.o.log.info('continuous shipping: generation not continued', { component: this.o.component, generation: lastGen, why: 'no base snapshot of it in the catalog' });
      return null;
    }
    let h: FramesHeader;
    try {
      h = (await readWalObject<FramesHeader>(this.o.vault, newest.key)).header;
    } catch {
      return null;
    }
    const cur = await this.readHeader();
    const gone = (why: string) => {
      this.o.log.info('continuous shipping: generation not continued', { component: this.o.component, generation: lastGen, why, walBytes: existsSync(this.walFile) ? statSync(this.walFile).size : null });
      return null;
    };
    if (!cur || cur.salt !== h.salt) return gone(`the WAL now has salt ${cur?.salt ?? '(no WAL)'}, the last shipped object ${h.salt}`);
    const b = await readFrom(this.walFile, WAL_HEADER_BYTES, h.last * (FRAME_HEADER_BYTES + cur.pageSize));
    const s = scanFrames(cur, b, 1, cur.checksum);
    if (s.lastCommit !== h.last || s.commitChecksum[0] !== h.endChecksum[0] || s.commitChecksum[1] !== h.endChecksum[1]) return gone(`the WAL's commit ${s.lastCommit} does not match the last shipped frame ${h.last}`);
    this.o.log.info('continuous shipping resumed', { component: this.o.component, generation: lastGen, index: h.index, frame: h.last });
    const shipped = { key: newest.key, index: h.index, last: h.last, time: h.time };
    return { generation: lastGen, index: h.index, hdr: cur, next: h.last + 1, ck: h.endChecksum, snapshotAt: snap.getTime(), shippedAt: newest.time.getTime(), newest: shipped };
  }

  private async startGeneration(reason: string): Promise<string> {
    const generation = newGeneration(this.now());
    const hdr = await this.readHeader();
    const st: ShipState = hdr
      ? { generation, index: 0, hdr, next: 1, ck: hdr.checksum, snapshotAt: 0, shippedAt: 0 }
      : { generation, index: -1, hdr: null, next: 1, ck: [0, 0], snapshotAt: 0, shippedAt: 0 };
    this.o.log.info('continuous shipping: new generation', { component: this.o.component, generation, reason });
    const snap = await this.o.snapshot(generation);
    st.snapshotAt = this.now().getTime();
    this.state = st;
    return snap.backupId;
  }

  /** One pass: ship new commits, hand the read transaction over, checkpoint when the WAL is long. */
  async tick(): Promise<TickResult> {
    this.open();
    let snapshot: string | undefined;
    if (!this.state) {
      this.state = await this.resume();
      if (!this.state) snapshot = await this.startGeneration('no generation to continue');
    }
    let st = this.state!;
    // A head write that failed last time (the object itself was stored).
    await this.writeHead(st);
    const hdr = await this.readHeader();
    if (hdr && st.hdr && hdr.salt !== st.hdr.salt) {
      if (hdr.ckptSeq === ((st.hdr.ckptSeq + 1) >>> 0)) {
        // A restart of a WAL read to its end: the next WAL index of this generation.
        st.prevIndexLast = st.next - 1;
        st.index++;
        st.hdr = hdr;
        st.next = 1;
        st.ck = hdr.checksum;
      } else {
        snapshot = await this.startGeneration(`the WAL was restarted more than once (checkpoint sequence ${st.hdr.ckptSeq} -> ${hdr.ckptSeq}) between two reads`);
        st = this.state!;
      }
    } else if (hdr && !st.hdr) {
      st.index = 0;
      st.hdr = hdr;
      st.next = 1;
      st.ck = hdr.checksum;
    }
    let shipped = 0;
    let key: string | undefined;
    let walFrames = 0;
    if (st.hdr && hdr?.salt === st.hdr.salt) {
      const r = await this.shipNew(st);
      shipped = r.shipped;
      key = r.key;
      walFrames = r.walFrames;
    }
    this.handOver();
    let checkpointed = false;
    if (walFrames >= this.o.settings.checkpointFrames) {
      const r = await this.checkpoint();
      checkpointed = r.checkpointed;
      if (r.shipped) { shipped += r.shipped; key = r.key; }
    }
    if (!snapshot && this.now().getTime() - st.snapshotAt >= durationMs(this.o.settings.snapshotEvery)) {
      snapshot = (await this.o.snapshot(st.generation)).backupId;
      st.snapshotAt = this.now().getTime();
    }
    return { shipped, key, generation: st.generation, index: st.index, walFrames, checkpointed, snapshot };
  }

  /** Ships the frames after the last shipped one up to the last commit. */
  private async shipNew(st: ShipState): Promise<{ shipped: number; key?: string; walFrames: number }> {
    const h = st.hdr!;
    const size = FRAME_HEADER_BYTES + h.pageSize;
    const b = await readFrom(this.walFile, WAL_HEADER_BYTES + (st.next - 1) * size);
    const s = scanFrames(h, b, st.next, st.ck);
    const walFrames = st.next - 1 + s.valid;
    const time = this.now();
    const idle = s.lastCommit < st.next;
    if (idle && time.getTime() - st.shippedAt < (this.o.heartbeatMs ?? 60_000)) return { shipped: 0, walFrames };
    const first = st.next;
    if (!idle) pausePoint('wal-frames-read');
    // Idle: an object of no frames (first = next, last = next - 1) saying the WAL was read to its end now.
    const last = idle ? first - 1 : s.lastCommit;
    const key = frameObjectKey({ component: this.o.component, generation: st.generation, index: st.index, salt: h.salt, first, last, time });
    const header: FramesHeader = {
      format: 'memvault-sqlite-frames/1', component: this.o.component, generation: st.generation, index: st.index, salt: h.salt,
      walHeader: h.raw.toString('base64'), first, last, prevChecksum: st.ck, endChecksum: s.commitChecksum, pages: s.commitPages,
      time: time.toISOString(), ...(first === 1 && st.prevIndexLast !== undefined ? { prevIndexLast: st.prevIndexLast } : {}), headed: true,
    };
    await writeWalObject(this.o.vault, key, header as unknown as Record<string, unknown>, b.subarray(0, (last - first + 1) * size));
    st.next = last + 1;
    st.ck = s.commitChecksum;
    st.shippedAt = time.getTime();
    st.newest = { key, index: st.index, last, time: header.time };
    await this.writeHead(st);
    return { shipped: last - first + 1, key, walFrames };
  }

  /** Points the generation's head object at the newest object shipped (after that object is stored). */
  private async writeHead(st: ShipState): Promise<void> {
    if (!st.newest || st.headKey === st.newest.key) return;
    const head: FramesHead = { format: 'memvault-sqlite-head/1', component: this.o.component, generation: st.generation, ...st.newest };
    await writeWalObject(this.o.vault, headObjectKey(this.o.component, st.generation), head as unknown as Record<string, unknown>, Buffer.alloc(0));
    st.headKey = st.newest.key;
  }

  /**
   * Under SQLite's write lock: ship what is left, let go of the read transactions, backfill
   * the whole WAL (PASSIVE), release the lock. The next writer restarts the WAL.
   */
  private async checkpoint(): Promise<{ checkpointed: boolean; shipped: number; key?: string }> {
    const w = this.writer!;
    try {
      w.exec('BEGIN IMMEDIATE');
    } catch (err) {
      this.o.log.warn('continuous shipping: checkpoint skipped (database busy)', { component: this.o.component, error: errorMessage(err) });
      return { checkpointed: false, shipped: 0 };
    }
    let r: { shipped: number; key?: string } = { shipped: 0 };
    let done = false;
    try {
      const st = this.state!;
      const hdr = await this.readHeader();
      if (!st.hdr || hdr?.salt !== st.hdr.salt) return { checkpointed: false, shipped: 0 };
      r = await this.shipNew(st);
      for (const x of this.readers) if (x.isTransaction) x.exec('COMMIT');
      const res = this.checkpointer!.prepare('PRAGMA wal_checkpoint(PASSIVE)').get() as { busy: number; log: number; checkpointed: number };
      done = res.busy === 0 && res.log === res.checkpointed;
    } finally {
      w.exec('ROLLBACK');
      if (!this.readers[this.active].isTransaction) this.begin(this.readers[this.active]);
    }
    return { checkpointed: done, ...r };
  }
}

/** The time of the newest base snapshot (backup with a WAL position) of a generation, or null. */
async function newestSnapshotOf(vault: Vault, component: string, generation: string): Promise<Date | null> {
  for (const e of (await readCatalog(vault, { component })).entries) {
    const pos = (await vault.readManifestHeader(e.key)).driver.wal as WalPosition | undefined;
    if (pos?.generation === generation) return new Date(pos.at);
  }
  return null;
}

/** Runs a shipper until the signal aborts: a tick every intervalSeconds; a failed tick is logged and retried. */
export async function runSqliteShipper(o: ShipperOptions & { signal: AbortSignal; onTick?: (r: TickResult) => void; onError?: (err: unknown) => void }): Promise<void> {
  const s = new SqliteShipper(o);
  try {
    while (!o.signal.aborted) {
      const t0 = Date.now();
      try {
        const r = await s.tick();
        o.onTick?.(r);
        if (r.shipped) o.log.info('shipped WAL frames', { component: o.component, frames: r.shipped, key: r.key, ms: Date.now() - t0 });
      } catch (err) {
        o.log.error('continuous shipping failed; retrying', { component: o.component, error: errorMessage(err) });
        o.onError?.(err);
        if (err instanceof ContinuousSetupError) throw err;
      }
      const wait = Math.max(0, o.settings.intervalSeconds * 1000 - (Date.now() - t0));
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, wait);
        o.signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
      });
    }
  } finally {
    await s.close();
  }
}

// ---------------------------------------------------------------- restore

export interface SqliteBase {
  /** The manifest key of the base snapshot. */
  key: string;
  id: string;
  position: WalPosition;
}

/** The chain of shipped objects that continues a base position, up to `until` (null: all). */
function chainFor(frames: FrameObjectName[], pos: WalPosition, until: Date | null): { generation: string; index: number; chain: FrameObjectName[]; lastOfIndex: Map<number, number> } | null {
  const gens = [...new Set(frames.map((f) => f.generation))].sort().reverse();
  for (const g of gens) {
    if (pos.generation && pos.generation !== g && pos.salt === null) continue;
    const inGen = frames.filter((f) => f.generation === g);
    let index: number | undefined;
    if (pos.salt !== null) index = inGen.find((f) => f.salt === pos.salt)?.index;
    if (index === undefined && pos.generation === g) index = pos.salt === null ? Math.min(...inGen.map((f) => f.index)) : undefined;
    if (index === undefined) continue;
    const lastOfIndex = new Map<number, number>();
    for (const f of inGen) lastOfIndex.set(f.index, Math.max(lastOfIndex.get(f.index) ?? 0, f.last));
    // Times only grow along a generation: the chain stops at the first object after `until`.
    const all = inGen.filter((f) => (f.index === index && f.last > pos.frame) || f.index > index!);
    const cut = until ? all.findIndex((f) => f.time.getTime() > until.getTime()) : -1;
    return { generation: g, index, chain: cut < 0 ? all : all.slice(0, cut), lastOfIndex };
  }
  return null;
}

/**
 * The base snapshot for a restore of a continuous sqlite component to `at`
 * (null: the newest): the newest backup recording a WAL position at or before
 * it whose generation has shipped objects (or that needs none).
 */
export async function chooseSqliteBase(vault: Vault, component: string, at: Date | null): Promise<SqliteBase> {
  const cat = await readCatalog(vault, { component });
  const { frames } = await listShipped(vault, component);
  let fallback: SqliteBase | null = null;
  for (const e of cat.entries) {
    const pos = (await vault.readManifestHeader(e.key)).driver.wal as WalPosition | undefined;
    if (!pos || (at && Date.parse(pos.at) > at.getTime())) continue;
    const base = { key: e.key, id: e.id, position: pos };
    if (chainFor(frames, pos, at)) return base;
    fallback ??= base;
  }
  if (fallback) return fallback;
  throw new NotFoundError(`component ${component} has no base snapshot (a backup that records its WAL position)${at ? ` at or before ${at.toISOString()}` : ''} in ${vault.storage.url}; start \`memvault watch\` (it takes one) or run \`memvault backup --component ${component}\``);
}

/**
 * Objects lost from the end of a generation, which the frames' own chain cannot
 * show: the generation's head names its newest shipped object; when that object
 * is not in the vault, the restore stops naming it unless `until` is no later
 * than the newest object still there (what comes after cannot be needed). A
 * generation whose objects say it is headed but that has no head lost it.
 * Generations shipped before heads existed (no `headed` flag) are taken as listed.
 */
async function checkHead(vault: Vault, component: string, listing: ShippedListing, generation: string | undefined, manifest: ManifestHeader, until: Date | null): Promise<void> {
  if (!generation) return;
  const inGen = listing.frames.filter((f) => f.generation === generation);
  const newestThere = inGen.at(-1);
  const headKey = listing.heads.get(generation);
  if (!headKey) {
    if (!newestThere) return;
    const { header } = await readWalObject<FramesHeader>(vault, newestThere.key);
    if (header.headed) throw new IntegrityError(`${component}: the head of shipped WAL generation ${generation} (${headObjectKey(component, generation)}) is missing from ${vault.storage.url}, so whether objects after ${newestThere.key} were lost cannot be told; restore with --at no later than ${newestThere.time.toISOString()} or from a backup`, headObjectKey(component, generation));
    return;
  }
  const { header: head } = await readWalObject<FramesHead>(vault, headKey);
  if (head.format !== 'memvault-sqlite-head/1' || head.component !== component || head.generation !== generation) throw new IntegrityError(`${component}: ${headKey} does not hold the head of generation ${generation}`, headKey);
  if (inGen.some((f) => f.key === head.key)) return;
  const lastThere = newestThere ? newestThere.time.getTime() : Date.parse((manifest.driver.wal as WalPosition).at);
  if (until && until.getTime() <= lastThere) return;
  throw new IntegrityError(`${component}: shipped WAL object ${head.key} (the newest of generation ${generation}, WAL index ${head.index} frame ${head.last}, shipped ${head.time}) is missing from ${vault.storage.url}${newestThere ? `; the newest there is ${newestThere.key}` : ''}: commits shipped after it are lost; restore with --at no later than ${new Date(lastThere).toISOString()} or from another backup`, head.key);
}

export interface AppliedWal {
  /** Time of the newest applied object (every commit it holds happened at or before it); the snapshot's time when none. */
  recoveryPoint: string;
  objects: number;
  frames: number;
  generation: string | null;
}

/**
 * Applies the shipped frames that continue `manifest`'s WAL position to the restored
 * database `file`, up to `until` (null: everything shipped). Every object is
 * authenticated and checked against its name and the one before it; a missing or
 * damaged one is an IntegrityError naming it (the file is then left as it was: the
 * caller removes it).
 */
export async function applyShippedFrames(vault: Vault, component: string, manifest: ManifestHeader, file: string, until: Date | null, log?: Logger): Promise<AppliedWal> {
  const pos = manifest.driver.wal as WalPosition | undefined;
  if (!pos) throw new PermanentError(`${component}: backup ${manifest.id} records no WAL position; it cannot be the base of a point-in-time restore`);
  const listing = await listShipped(vault, component);
  const { frames } = listing;
  const c = chainFor(frames, pos, until);
  await checkHead(vault, component, listing, c?.generation ?? pos.generation, manifest, until);
  if (!c) {
    if (frames.length === 0 || pos.generation === undefined) return { recoveryPoint: pos.at, objects: 0, frames: 0, generation: null };
    return { recoveryPoint: pos.at, objects: 0, frames: 0, generation: pos.generation };
  }
  // Names first: gaps are reported before anything is read.
  let prev: FrameObjectName | null = null;
  for (const f of c.chain) {
    const expect = prev === null
      ? (f.index === c.index ? pos.frame + 1 : 1)
      : (f.index === prev.index ? prev.last + 1 : 1);
    const expectIndex = prev === null ? (f.index === c.index ? c.index : c.index + 1) : (f.index === prev.index ? prev.index : prev.index + 1);
    const bad = f.index !== expectIndex || (prev === null && f.index === c.index ? !(f.first <= expect && expect <= f.last) : f.first !== expect);
    if (bad) {
      throw new IntegrityError(`${component}: shipped WAL is incomplete: ${prev ? `after ${prev.key}` : `after the base snapshot ${manifest.id} (WAL index ${c.index}, frame ${pos.frame})`} the next object should hold WAL index ${expectIndex} frame ${expect}, but the next one is ${f.key}; objects are missing from ${vault.storage.url} (restore to an earlier time with --at, or from another backup)`, f.key);
    }
    prev = f;
  }
  const fh = await fs.open(file, 'r+');
  let applied = 0;
  let frameCount = 0;
  let recoveryPoint = pos.at;
  try {
    let ck: Checksum | null = null;
    let last: FrameObjectName | null = null;
    for (const f of c.chain) {
      const { header: h, body } = await readWalObject<FramesHeader>(vault, f.key);
      const wal = parseWalHeader(Buffer.from(h.walHeader ?? '', 'base64'));
      const named = h.format === 'memvault-sqlite-frames/1' && h.component === component && h.generation === f.generation && h.index === f.index && h.salt === f.salt && h.first === f.first && h.last === f.last;
      if (!named || !wal || wal.salt !== f.salt) throw new IntegrityError(`${component}: shipped WAL object ${f.key} does not hold what its name says`, f.key);
      if (last && last.index === f.index && ck && (h.prevChecksum[0] !== ck[0] || h.prevChecksum[1] !== ck[1])) {
        throw new IntegrityError(`${component}: shipped WAL object ${f.key} does not continue ${last.key} (checksum chain broken)`, f.key);
      }
      const before = last ? (last.index !== f.index ? last.index : null) : (f.index !== c.index ? c.index : null);
      if (before !== null && h.prevIndexLast !== Math.max(c.lastOfIndex.get(before) ?? 0, before === c.index ? pos.frame : 0)) {
        throw new IntegrityError(`${component}: shipped WAL object ${f.key} starts WAL index ${f.index} after frame ${h.prevIndexLast} of the index before, but the vault holds that index up to frame ${c.lastOfIndex.get(before) ?? pos.frame}; objects are missing`, f.key);
      }
      const size = FRAME_HEADER_BYTES + wal.pageSize;
      const n = f.last - f.first + 1;
      if (body.length !== n * size) throw new IntegrityError(`${component}: shipped WAL object ${f.key} holds ${body.length} bytes, not ${n} frames of ${size}`, f.key);
      const s = scanFrames(wal, body, f.first, h.prevChecksum);
      if (s.valid !== n || s.lastCommit !== f.last || s.commitChecksum[0] !== h.endChecksum[0] || s.commitChecksum[1] !== h.endChecksum[1]) {
        throw new IntegrityError(`${component}: shipped WAL object ${f.key} fails its frame checksums (frame ${f.first + s.valid} of ${f.first}..${f.last})`, f.key);
      }
      for (let i = 0; i < n; i++) {
        const frame = f.first + i;
        if (f.index === c.index && frame <= pos.frame) continue;
        const off = i * size;
        const pgno = body.readUInt32BE(off);
        await fh.write(body, off + FRAME_HEADER_BYTES, wal.pageSize, (pgno - 1) * wal.pageSize);
        const commit = body.readUInt32BE(off + 4);
        if (commit > 0) await fh.truncate(commit * wal.pageSize);
        frameCount++;
      }
      ck = h.endChecksum;
      last = f;
      applied++;
      recoveryPoint = h.time > recoveryPoint ? h.time : recoveryPoint;
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
  log?.info('applied shipped WAL', { component, base: manifest.id, objects: applied, frames: frameCount, recoveryPoint });
  return { recoveryPoint, objects: applied, frames: frameCount, generation: c.generation };
}

// ---------------------------------------------------------------- retention

export interface WalPruneReport {
  component: string;
  dryRun: boolean;
  deleted: string[];
  kept: number;
}

/**
 * Removes shipped objects no kept base snapshot needs: per generation, those
 * wholly before the oldest snapshot's position that the catalog still holds; a
 * generation with no snapshot left goes entirely, unless it is the newest (its
 * shipper may be taking one). Run after retention forgot backups.
 */
export async function pruneShippedFrames(vault: Vault, component: string, o: { dryRun?: boolean } = {}): Promise<WalPruneReport> {
  const { frames, heads } = await listShipped(vault, component);
  const positions: WalPosition[] = [];
  for (const e of (await readCatalog(vault, { component })).entries) {
    const pos = (await vault.readManifestHeader(e.key)).driver.wal as WalPosition | undefined;
    if (pos) positions.push(pos);
  }
  const gens = [...new Set([...frames.map((f) => f.generation), ...heads.keys()])].sort();
  const deleted: string[] = [];
  for (const g of gens) {
    const inGen = frames.filter((f) => f.generation === g);
    const starts: { index: number; frame: number }[] = [];
    for (const p of positions) {
      const byGen = p.salt === null && p.generation === g ? Math.min(...inGen.map((f) => f.index)) : undefined;
      const index = p.salt !== null ? inGen.find((f) => f.salt === p.salt)?.index : byGen;
      if (index !== undefined) starts.push({ index, frame: p.frame });
    }
    let doomed: FrameObjectName[];
    if (starts.length === 0) doomed = g === gens[gens.length - 1] ? [] : inGen;
    else {
      starts.sort((a, b) => a.index - b.index || a.frame - b.frame);
      const s = starts[0];
      // The newest object stays while the generation does: its head names it.
      doomed = inGen.filter((f) => (f.index < s.index || (f.index === s.index && f.last <= s.frame)) && f !== inGen.at(-1));
    }
    for (const f of doomed) {
      if (!o.dryRun) await vault.storage.delete(f.key);
      deleted.push(f.key);
    }
    // A generation that goes entirely loses its head last (after its objects).
    const head = heads.get(g);
    if (head && doomed.length === inGen.length && (starts.length === 0 && g !== gens[gens.length - 1])) {
      if (!o.dryRun) await vault.storage.delete(head);
      deleted.push(head);
    }
  }
  return { component, dryRun: o.dryRun === true, deleted, kept: frames.length + heads.size - deleted.length };
}
