// Manifests: one per backup of one component. A manifest lists the entries
// (files, streams, links) of the backup with their metadata, the ids and sizes
// of the chunks holding their bytes, plaintext SHA-256 checksums, backup stats
// and driver-specific metadata (e.g. service snapshot ids). It is sealed
// (authenticated + encrypted) and written last: a backup without one does not exist.
//
// The manifest's object key carries what the catalog needs, so listing the
// vault needs no key and no reads:
//   manifests/<component>/<YYYYMMDDTHHMMSSmmmZ>.<type>.<backup-id>

export type BackupType = 'full' | 'incremental' | 'critical';
export const BACKUP_TYPES: BackupType[] = ['full', 'incremental', 'critical'];

export interface ChunkRef {
  /** HMAC-SHA-256 chunk id, hex */
  id: string;
  /** plaintext size */
  size: number;
}

export interface Entry {
  /** '/'-separated path relative to the component root, or a stream name. */
  path: string;
  type: 'file' | 'dir' | 'symlink';
  mode?: number;
  /** modification time, nanoseconds since the epoch, as a decimal string */
  mtimeNs?: string;
  size: number;
  sha256?: string;
  chunks?: ChunkRef[];
  target?: string;
  /** Identity used to skip unchanged files on incremental backups. */
  ino?: string;
  ctimeNs?: string;
  /** Driver-specific details (row counts, checksums, TTLs...). */
  meta?: Record<string, unknown>;
}

export interface BackupStats {
  /** Bytes read from the source (0 for entries reused without reading). */
  bytesRead: number;
  /** Logical bytes of the backup (all entries). */
  bytesTotal: number;
  /** Bytes of entries reused from the parent backup without reading them. */
  bytesUnchanged: number;
  /** Plaintext bytes of chunks the vault did not have. */
  newBytes: number;
  /** Bytes written to the vault (compressed + encrypted chunks and the manifest). */
  bytesStored: number;
  chunksTotal: number;
  chunksNew: number;
  entries: number;
  durationMs: number;
}

/**
 * Where a backup stands in its component's history: a sequence number and the
 * backup it followed (id, key and the SHA-256 of its sealed manifest object),
 * inside the authenticated manifest. A missing or replaced link shows.
 */
export interface ChainLink {
  seq: number;
  predecessor: { id: string; key: string; digest: string } | null;
}

/** A part of a large manifest's entries: newline-separated JSON entries stored as a stream (entry-log.ts). */
export interface EntryPart {
  chunks: ChunkRef[];
  size: number;
  sha256: string;
  /** Entries in the part. */
  count: number;
}

/**
 * The manifest formats: /1 keeps every entry inline; /2 (backups of more than a
 * few thousand entries) lists entry parts instead and has no `entries` field, so
 * a reader that predates parts finds no entries list and refuses the manifest
 * (its prune then deletes nothing) rather than taking it for an empty backup.
 */
export const MANIFEST_FORMATS = ['memvault-manifest/1', 'memvault-manifest/2'] as const;

export interface Manifest {
  format: (typeof MANIFEST_FORMATS)[number];
  id: string;
  component: string;
  kind: string;
  type: BackupType;
  runId?: string;
  startedAt: string;
  finishedAt: string;
  /** Backup id this incremental compared against. */
  parent?: string;
  host: string;
  entries: Entry[];
  /** Where the entries are when they are not inline (format /2). */
  entryParts?: EntryPart[];
  driver: Record<string, unknown>;
  stats: BackupStats;
  warnings: string[];
  /** Absent in manifests written before chains existed. */
  chain?: ChainLink;
}

/**
 * A manifest as stored: its entries inline (small backups) or in parts, read
 * with readEntries/loadEntries (entry-log.ts). What most of the code reads.
 */
export type ManifestHeader = Omit<Manifest, 'entries'> & { entries?: Entry[] };

export interface ManifestRef {
  key: string;
  component: string;
  id: string;
  type: BackupType;
  time: Date;
}

export function compactTime(d: Date): string {
  return d.toISOString().replace(/[-:]/g, '').replace('.', '');
}

export function parseCompactTime(s: string): Date | null {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(\d{3})Z$/.exec(s);
  if (!m) return null;
  return new Date(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}.${m[7]}Z`);
}

export function manifestKey(component: string, time: Date, type: BackupType, id: string): string {
  return `manifests/${component}/${compactTime(time)}.${type}.${id}`;
}

export function parseManifestKey(key: string): ManifestRef | null {
  const m = /^manifests\/([a-z0-9][a-z0-9_-]*)\/(\d{8}T\d{9}Z)\.(full|incremental|critical)\.([a-z0-9-]+)$/.exec(key);
  if (!m) return null;
  const time = parseCompactTime(m[2]);
  if (!time) return null;
  return { key, component: m[1], time, type: m[3] as BackupType, id: m[4] };
}

