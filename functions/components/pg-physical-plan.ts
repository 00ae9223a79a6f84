// Physical PostgreSQL backups, the planning side (no pg, no server): WAL
// segment names, what a base backup records in its manifest, which base and
// which archived segments a restore to a time needs, and which archived WAL
// retention may delete. Planners (restore, drill) and retention import this;
// components/pg-physical.ts takes the backups and runs the restores.
import type { Vault } from '../core/vault.ts';
import type { ManifestHeader } from '../core/manifest.ts';
import { readCatalog } from '../core/catalog.ts';
import { listShipped, type PgObjectName } from '../core/continuous.ts';
import { IntegrityError, NotFoundError } from '../core/errors.ts';

/** A postgres component's settings take physical base backups (method physical, or auto with continuous). */
export const isPhysicalComponent = (s: Record<string, unknown>): boolean => s.method === 'physical' || ((s.method === undefined || s.method === 'auto') && s.continuous !== undefined);

// ---------------------------------------------------------------- WAL names

/** A WAL location "X/Y" as a number. */
export function parseLsn(lsn: string): bigint {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(lsn);
  if (!m) throw new IntegrityError(`not a WAL location: ${JSON.stringify(lsn)}`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

const hex8 = (n: bigint | number) => n.toString(16).toUpperCase().padStart(8, '0');

/** The segment number holding `lsn`. */
export const segmentOf = (lsn: bigint, segSize: number): bigint => lsn / BigInt(segSize);

export function segmentName(timeline: number, segno: bigint, segSize: number): string {
  const perId = 0x100000000n / BigInt(segSize);
  return `${hex8(timeline)}${hex8(segno / perId)}${hex8(segno % perId)}`;
}

export function parseSegmentName(file: string, segSize: number): { timeline: number; segno: bigint } | null {
  const m = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$/.exec(file);
  if (!m) return null;
  const perId = 0x100000000n / BigInt(segSize);
  return { timeline: parseInt(m[1], 16), segno: BigInt(`0x${m[2]}`) * perId + BigInt(`0x${m[3]}`) };
}

// ---------------------------------------------------------------- what a base backup records

export interface PhysicalMeta {
  method: 'physical';
  format: 'memvault-pg-physical/1';
  source: string;
  database: string;
  serverVersion: string;
  label: string;
  timeline: number;
  startLsn: string;
  endLsn: string;
  startSegment: string;
  endSegment: string;
  walSegmentSize: number;
  /** Before pg_basebackup started. */
  startedAt: string;
  /** After it finished and the end segment was archived: the earliest time this base can be restored to. */
  endedAt: string;
  /** The bootstrap superuser (validation connects as it, over the private socket). */
  superuser: string;
  databases: string[];
  backupLabel: string;
}

export function isPhysical(m: ManifestHeader): boolean {
  return (m.driver as { method?: unknown }).method === 'physical';
}

// ---------------------------------------------------------------- restore planning

export interface PgBase {
  key: string;
  id: string;
  meta: PhysicalMeta;
}

/** The newest physical base backup that ended at or before `at` (null: the newest). */
export async function choosePgBase(vault: Vault, component: string, at: Date | null): Promise<PgBase> {
  const cat = await readCatalog(vault, { component });
  let first: PhysicalMeta | null = null;
  for (const e of cat.entries) {
    const m = await vault.readManifestHeader(e.key);
    if (!isPhysical(m)) continue;
    const meta = m.driver as unknown as PhysicalMeta;
    first = meta;
    if (at && Date.parse(meta.endedAt) > at.getTime()) continue;
    return { key: e.key, id: e.id, meta };
  }
  if (first && at) {
    throw new NotFoundError(`component ${component}: ${at.toISOString()} is before the first physical base backup that can be restored (it ended at ${first.endedAt}); choose a later time`);
  }
  throw new NotFoundError(`component ${component} has no physical base backup in ${vault.storage.url}; run \`memvault backup --component ${component}\` (with archive_command = memvault wal-push) first`);
}

export interface WalPlan {
  /** The archived segments recovery replays, in order. */
  segments: PgObjectName[];
  /** A segment archived after the time is among them: the time lies within the archive. */
  reachesPast: boolean;
}

/**
 * Which archived segments a restore of `base` to `until` (null: everything) needs:
 * from the start segment on, contiguous, up to the first archived after `until`.
 * A gap below a segment that is there, or in the base backup's own range, is an
 * IntegrityError naming the missing segment.
 */
export async function planWal(vault: Vault, component: string, meta: PhysicalMeta, until: Date | null, o: { toBackupEnd?: boolean } = {}): Promise<WalPlan> {
  const { pg: archived } = await listShipped(vault, component);
  const seg = meta.walSegmentSize;
  const byNo = new Map<bigint, PgObjectName>();
  let highest = -1n;
  for (const p of archived) {
    const s = parseSegmentName(p.file, seg);
    if (!s || s.timeline !== meta.timeline) continue;
    byNo.set(s.segno, p); // sorted by time: the newest copy of a name wins (as wal-fetch picks)
    if (s.segno > highest) highest = s.segno;
  }
  const start = parseSegmentName(meta.startSegment, seg)!.segno;
  const end = parseSegmentName(meta.endSegment, seg)!.segno;
  const segments: PgObjectName[] = [];
  let reachesPast = false;
  let n = start;
  for (; byNo.has(n); n++) {
    const p = byNo.get(n)!;
    segments.push(p);
    if (until && p.time.getTime() > until.getTime()) { reachesPast = true; break; }
    if (o.toBackupEnd && n === end) { reachesPast = true; break; }
  }
  if (!reachesPast && (n <= end || n < highest)) {
    const file = segmentName(meta.timeline, n, seg);
    const why = n <= end ? `the base backup (${meta.startSegment} to ${meta.endSegment}) needs it` : `later segments are archived (up to ${segmentName(meta.timeline, highest, seg)}), so replay would stop before ${until ? until.toISOString() : 'the newest archived commit'}`;
    throw new IntegrityError(`${component}: archived WAL is incomplete: segment ${file} (object wal/${component}/pg/${file}-<time>.seg) is missing from ${vault.storage.url}; ${why}. Restore to an earlier time with --at, or from another vault (--from)`, `wal/${component}/pg/${file}`);
  }
  return { segments, reachesPast };
}

// ---------------------------------------------------------------- retention

export interface PgWalPruneReport {
  component: string;
  dryRun: boolean;
  deleted: string[];
  kept: number;
}

/**
 * Removes archived WAL no kept base backup needs: segments (and backup labels)
 * of a base's timeline before the oldest kept physical base's start segment.
 * Without any physical base nothing is removed (the archive may be all there is).
 * History files are kept. Run after retention forgot backups.
 */
export async function prunePgWal(vault: Vault, component: string, o: { dryRun?: boolean } = {}): Promise<PgWalPruneReport> {
  const { pg: archived } = await listShipped(vault, component);
  let oldest: PhysicalMeta | null = null;
  for (const e of (await readCatalog(vault, { component })).entries) {
    const m = await vault.readManifestHeader(e.key);
    if (isPhysical(m)) oldest = m.driver as unknown as PhysicalMeta; // entries are newest first
  }
  const deleted: string[] = [];
  if (oldest) {
    const seg = oldest.walSegmentSize;
    const start = parseSegmentName(oldest.startSegment, seg)!;
    for (const p of archived) {
      const s = parseSegmentName(p.file.slice(0, 24), seg);
      if (!s || p.file.endsWith('.history')) continue;
      if (s.timeline < start.timeline || (s.timeline === start.timeline && s.segno < start.segno)) {
        if (!o.dryRun) await vault.storage.delete(p.key);
        deleted.push(p.key);
      }
    }
  }
  return { component, dryRun: o.dryRun === true, deleted, kept: archived.length - deleted.length };
}
