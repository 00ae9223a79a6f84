// Continuous protection: write-ahead log shipped into the vault between backups,
// so a component's recovery point is its newest shipped commit, not its newest
// backup. Shared by the SQLite shipper (components/sqlite-wal.ts) and
// PostgreSQL's archive_command / restore_command (components/pg-wal.ts).
//
//   wal/<component>/<generation>/<index 6d>-<salt 16 hex>/<first 10d>-<last 10d>-<time>.frames
//        SQLite: WAL frames first..last of one WAL file (salt) of a generation,
//        ending at a commit frame; <time> is when the shipper read them (every
//        commit they contain happened at or before it). A generation starts
//        from a base snapshot (a normal memvault backup of the component that
//        records the WAL position it corresponds to).
//   wal/<component>/<generation>/head
//        SQLite: the newest object shipped in the generation (its key, WAL
//        index, last frame and time), sealed and replaced after every object
//        is shipped. A restore that finds the chain ending before the head's
//        object knows objects were lost from the end, which the frames'
//        own chain cannot tell.
//   wal/<component>/pg/<segment file name>-<time>.seg
//        PostgreSQL: one WAL segment, history or backup-label file as
//        archive_command handed it over; <time> is when it was archived.
//
// Every object is sealed like a manifest (zstd, then AES-256-GCM under the
// vault's data key, the object's own key as additional authenticated data):
// [4-byte header length][header JSON][body]. A renamed, edited or cut object
// fails to open, and the error names it. The time in a name is only used
// after the object opened (rpo-watch, restore); a name alone is never trusted.
import zlib from 'node:zlib';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import type { Vault } from './vault.ts';
import { open, seal } from './crypto.ts';
import { compactTime, parseCompactTime } from './manifest.ts';
import { IntegrityError, NotFoundError } from './errors.ts';

const zstdCompress = promisify(zlib.zstdCompress);
const zstdDecompress = promisify(zlib.zstdDecompress);

export const WAL_PREFIX = 'wal/';
/** A shipped object larger than this is refused unread (damage or planted). */
export const MAX_WAL_OBJECT_BYTES = 1024 * 1024 * 1024;

const duration = z.string().regex(/^\d+(s|m|h|d)$/, 'expected a duration like 90s, 90m, 26h or 8d');

/** The `continuous:` block of a sqlite or postgres component. */
export const continuousSchema = z.object({
  /** How often the shipper looks for new commits (sqlite). @default 1 */
  intervalSeconds: z.number().int().min(1).max(3600).default(1),
  /** A new base snapshot (a backup recording its WAL position) this often. @default 24h */
  snapshotEvery: duration.default('24h'),
  /** The shipper checkpoints (and so lets SQLite restart the WAL) once the WAL holds this many frames (sqlite). @default 1000 */
  checkpointFrames: z.number().int().min(1).max(10_000_000).default(1000),
}).strict();
export type ContinuousSettings = z.infer<typeof continuousSchema>;

/** The component's `continuous` settings, or null when it has none. */
export function continuousOf(settings: Record<string, unknown> | undefined): ContinuousSettings | null {
  const c = settings?.continuous as ContinuousSettings | undefined;
  return c && typeof c === 'object' ? c : null;
}

export function walComponentPrefix(component: string): string {
  return `${WAL_PREFIX}${component}/`;
}

/** A new generation id: sortable by time. */
export function newGeneration(now: Date): string {
  return `${compactTime(now)}-${randomBytes(4).toString('hex')}`;
}

// ---------------------------------------------------------------- SQLite frame objects

export interface FrameObjectName {
  key: string;
  component: string;
  generation: string;
  index: number;
  salt: string;
  first: number;
  last: number;
  time: Date;
}

const FRAME_RE = /^wal\/([a-z0-9][a-z0-9_-]*)\/(\d{8}T\d{9}Z-[0-9a-f]{8})\/(\d{6})-([0-9a-f]{16})\/(\d{10})-(\d{10})-(\d{8}T\d{9}Z)\.frames$/;

const HEAD_RE = /^wal\/([a-z0-9][a-z0-9_-]*)\/(\d{8}T\d{9}Z-[0-9a-f]{8})\/head$/;

/** The key of a generation's head object. */
export function headObjectKey(component: string, generation: string): string {
  return `${WAL_PREFIX}${component}/${generation}/head`;
}

export function frameObjectKey(n: Omit<FrameObjectName, 'key'>): string {
  const pad = (x: number, w: number) => String(x).padStart(w, '0');
  return `${WAL_PREFIX}${n.component}/${n.generation}/${pad(n.index, 6)}-${n.salt}/${pad(n.first, 10)}-${pad(n.last, 10)}-${compactTime(n.time)}.frames`;
}

export function parseFrameObjectKey(key: string): FrameObjectName | null {
  const m = FRAME_RE.exec(key);
  if (!m) return null;
  const time = parseCompactTime(m[7]);
  if (!time) return null;
  return { key, component: m[1], generation: m[2], index: Number(m[3]), salt: m[4], first: Number(m[5]), last: Number(m[6]), time };
}

// ---------------------------------------------------------------- PostgreSQL segment objects

export interface PgObjectName {
  key: string;
  component: string;
  /** The file name PostgreSQL gave it (%f). */
  file: string;
  time: Date;
}

/** WAL segments (24 hex), timeline history, backup labels and partial segments. */
export const PG_WAL_FILE = /^[0-9A-F]{24}(\.partial|\.[0-9A-F]{8}\.backup)?$|^[0-9A-F]{8}\.history$/;
const PG_RE = /^wal\/([a-z0-9][a-z0-9_-]*)\/pg\/([0-9A-Za-z.]+)-(\d{8}T\d{9}Z)\.seg$/;

export function pgObjectKey(component: string, file: string, time: Date): string {
  return `${WAL_PREFIX}${component}/pg/${file}-${compactTime(time)}.seg`;
}

export function parsePgObjectKey(key: string): PgObjectName | null {
  const m = PG_RE.exec(key);
  if (!m || !PG_WAL_FILE.test(m[2])) return null;
  const time = parseCompactTime(m[3]);
  return time ? { key, component: m[1], file: m[2], time } : null;
}

// ---------------------------------------------------------------- sealed objects

/** Seals and stores one shipped object: [header length][header JSON][body], zstd, AES-GCM bound to the key. */
export async function writeWalObject(vault: Vault, key: string, header: Record<string, unknown>, body: Uint8Array): Promise<number> {
  const h = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(4);
  len.writeUInt32BE(h.length);
  const z = await zstdCompress(Buffer.concat([len, h, body]), { params: { [zlib.constants.ZSTD_c_compressionLevel]: 3 } });
  const blob = seal(vault.keys.dataKey, z, key);
  await vault.storage.put(key, blob);
  return blob.length;
}

/** Reads, authenticates and decodes a shipped object; an IntegrityError naming it when it does not open. */
export async function readWalObject<H>(vault: Vault, key: string): Promise<{ header: H; body: Buffer }> {
  let blob: Buffer;
  try {
    blob = await vault.storage.get(key, { maxBytes: MAX_WAL_OBJECT_BYTES });
  } catch (err) {
    if (err instanceof NotFoundError) throw new IntegrityError(`shipped WAL object ${key} is missing from ${vault.storage.url}`, key);
    throw err;
  }
  let plain: Buffer;
  try {
    plain = await zstdDecompress(open(vault.keys.dataKey, blob, key));
  } catch (err) {
    throw new IntegrityError(`shipped WAL object ${key} is damaged: ${err instanceof IntegrityError ? 'it fails authentication (corrupt, truncated or renamed)' : 'it cannot be decompressed'}`, key);
  }
  const n = plain.length >= 4 ? plain.readUInt32BE(0) : -1;
  if (n < 0 || 4 + n > plain.length) throw new IntegrityError(`shipped WAL object ${key} is damaged: no header`, key);
  let header: H;
  try {
    header = JSON.parse(plain.subarray(4, 4 + n).toString('utf8')) as H;
  } catch {
    throw new IntegrityError(`shipped WAL object ${key} is damaged: its header is not JSON`, key);
  }
  return { header, body: plain.subarray(4 + n) };
}

// ---------------------------------------------------------------- listing

export interface ShippedListing {
  frames: FrameObjectName[];
  /** The generations that have a head object (sqlite), by generation id. */
  heads: Map<string, string>;
  pg: PgObjectName[];
  /** Names under the component's prefix that are neither (planted or damaged; left alone). */
  unknown: string[];
}

export async function listShipped(vault: Vault, component: string): Promise<ShippedListing> {
  const out: ShippedListing = { frames: [], heads: new Map(), pg: [], unknown: [] };
  for await (const o of vault.storage.list(walComponentPrefix(component))) {
    if (/\.tmp-[0-9a-f]{12}$/.test(o.key)) continue;
    const f = parseFrameObjectKey(o.key);
    if (f && f.component === component) { out.frames.push(f); continue; }
    const h = HEAD_RE.exec(o.key);
    if (h && h[1] === component) { out.heads.set(h[2], o.key); continue; }
    const p = parsePgObjectKey(o.key);
    if (p && p.component === component) { out.pg.push(p); continue; }
    out.unknown.push(o.key);
  }
  out.frames.sort((a, b) => a.generation.localeCompare(b.generation) || a.index - b.index || a.first - b.first);
  out.pg.sort((a, b) => a.time.getTime() - b.time.getTime() || a.file.localeCompare(b.file));
  return out;
}

export interface NewestShipped {
  key: string;
  /** When the newest shipped commit was read / the newest segment archived. */
  time: Date;
}

/**
 * The component's newest shipped object that opens under the vault key: its
 * recovery point by continuous shipping. Objects that do not open are passed
 * over (and listed), never counted.
 */
export async function newestShipped(vault: Vault, component: string): Promise<{ newest: NewestShipped | null; damaged: string[] }> {
  const l = await listShipped(vault, component);
  const all = [...l.frames, ...l.pg].sort((a, b) => b.time.getTime() - a.time.getTime());
  const damaged: string[] = [];
  for (const n of all.slice(0, 20)) {
    try {
      await readWalObject(vault, n.key);
      return { newest: { key: n.key, time: n.time }, damaged };
    } catch (err) {
      if (!(err instanceof IntegrityError)) throw err;
      damaged.push(n.key);
    }
  }
  return { newest: null, damaged };
}
