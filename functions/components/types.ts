// The driver interface. A driver knows one kind of source (sqlite, files,
// postgres, redis, ...). Stream drivers export a consistent byte stream (or a
// tree of entries) into the vault through a BackupWriter; snapshot drivers
// (RDS, Aurora) drive the service's own snapshot and record its ids in the
// manifest's `driver` field. Every driver restores into a fresh target and
// validates the result with counts and checksums, not just "it ran".
import type { z } from 'zod';
import type { BackupType, Entry, Manifest, ManifestHeader } from '../core/manifest.ts';
import type { EntryLog } from '../core/entry-log.ts';
import type { BackupWriter } from '../core/writer.ts';
import type { Vault } from '../core/vault.ts';
import type { ComponentConfig } from '../core/config.ts';
import type { MaskOutcome, MaskRule } from '../core/mask.ts';

export interface Logger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export interface DriverBackupContext<S> {
  component: string;
  settings: S & ComponentConfig;
  type: BackupType;
  /** The component's previous backup; drivers may reuse unchanged entries from it (not on `full`). */
  parent?: ManifestHeader;
  /** The parent's entries in order, read as they are needed (none without a parent). */
  parentEntries(): AsyncIterable<Entry>;
  /**
   * Where a driver with many entries (files) adds them as it goes, in order, instead of
   * returning them: they are written out in parts, so memory does not grow with the tree.
   */
  entries: EntryLog;
  writer: BackupWriter;
  /** Resolves a path from the config against the config file's directory. */
  resolve(p: string): string;
  log: Logger;
  signal?: AbortSignal;
}

export interface DriverBackupResult {
  /** Entries after those the driver added to ctx.entries (most drivers: all of them). */
  entries: Entry[];
  /** Driver details stored in the manifest (row counts, snapshot ids, validation expectations). */
  meta: Record<string, unknown>;
  /** Problems that did not stop the backup but leave it incomplete (e.g. unreadable files). */
  warnings: string[];
}

/** Where a restore goes. Stream drivers restore under `dir`; others read driver options. */
export interface RestoreTarget {
  dir: string;
  /** Driver-specific target settings (e.g. a database URL to restore into). */
  options?: Record<string, unknown>;
}

export interface DriverRestoreContext<S> {
  component: string;
  settings: S & ComponentConfig;
  /** The backup as stored: its entries inline or in parts (read them with readEntries/loadEntries). */
  manifest: ManifestHeader;
  vault: Vault;
  target: RestoreTarget;
  resolve(p: string): string;
  log: Logger;
}

export interface DriverRestoreResult {
  /** Where the data now is (path, database URL, instance id). */
  location: string;
  bytes: number;
  entries: number;
  /** Point-in-time restores (continuous components): the newest commit restored (ISO time). */
  recoveryPoint?: string;
  /** How the data reached the target, where a driver has more than one way (redis: rdb-sync or restore). */
  method?: string;
}

export interface ValidationCheck {
  name: string;
  ok: boolean;
  expected?: unknown;
  actual?: unknown;
}

export interface ValidationReport {
  ok: boolean;
  checks: ValidationCheck[];
}

export interface DriverValidateContext<S> {
  component: string;
  settings: S & ComponentConfig;
  /** The backup as stored (see DriverRestoreContext.manifest). */
  manifest: ManifestHeader;
  /** The vault the backup is in (to read the manifest's entry parts). */
  vault: Vault;
  target: RestoreTarget;
  location: string;
  resolve(p: string): string;
  log: Logger;
  /**
   * A sanitized restore: what masking changed (restore step, right after the restore).
   * Masked columns, keys and files are not compared with the backup's figures: row
   * (document, key) counts are, and the data no rule touched is compared with its
   * digest taken before masking (itself validated against the backup then).
   */
  masked?: MaskOutcome;
}

/** What a driver's mask() needs: the restored data's location and the component's rules. */
export interface DriverMaskContext<S> {
  component: string;
  settings: S & ComponentConfig;
  manifest: ManifestHeader;
  /** The vault the backup is in (to read the manifest's entry parts). */
  vault: Vault;
  target: RestoreTarget;
  location: string;
  rules: MaskRule[];
  /** The keyed hash's key (derived from the vault's keys). */
  key: Buffer;
  resolve(p: string): string;
  log: Logger;
}

/**
 * Drivers that can mask restored data (sanitized restores: drills, sandbox restores).
 * mask() runs in the restore step, after the data is restored and validated against
 * the backup and before any other step reads it. A rule that names a table, column or
 * collection the restored data lacks is a ConfigError naming the rule.
 */
export interface Masking<S = Record<string, unknown>> {
  mask(ctx: DriverMaskContext<S>): Promise<Omit<MaskOutcome, 'validatedBeforeMasking' | 'note'> & { note?: string }>;
}

export function hasMasking(d: Driver<any>): d is Driver<any> & Masking<any> {
  return typeof (d as Partial<Masking>).mask === 'function';
}

export interface Driver<S = Record<string, unknown>> {
  readonly kind: string;
  /** 'stream': data goes through the vault; 'snapshot': the service keeps the data. */
  readonly mode: 'stream' | 'snapshot';
  /** zod schema of the kind's own settings in memvault.yaml (merged with the common fields). */
  readonly schema: z.ZodObject;
  /** The default restore location for this component under a target directory. */
  backup(ctx: DriverBackupContext<S>): Promise<DriverBackupResult>;
  restore(ctx: DriverRestoreContext<S>): Promise<DriverRestoreResult>;
  validate(ctx: DriverValidateContext<S>): Promise<ValidationReport>;
  /**
   * The target options that send a restore to a network target (a database, a
   * bucket prefix, a service) rather than into target.dir, as a user types them,
   * e.g. `url (postgres://...) or secretArn`. Absent: the kind restores into a
   * directory only (files, sqlite).
   */
  readonly networkTargetFields?: string;
  /** True when these target options restore into a network target (never a directory). */
  isNetworkTarget?(options: Record<string, unknown> | undefined): boolean;
  /**
   * Target options for a restore that names none (snapshot kinds: a new
   * instance/cluster named after the source and the time, never the source),
   * with a sentence saying so for the execution output.
   */
  defaultRestoreTarget?(ctx: { component: string; settings: S & ComponentConfig; now: Date; from?: 'primary' | 'secondary' }): { options: Record<string, unknown>; note: string };
}

/** What a drill restore into a scratch target needs from a driver (stream kinds with a network target). */
export interface DrillTargetContext<S> {
  component: string;
  settings: S & ComponentConfig;
  /** Lowercase letters and digits, unique to the drill run and component (part of scratch names). */
  tag: string;
}

export interface DrillCleanupContext<S> {
  component: string;
  settings: S & ComponentConfig;
  manifest: ManifestHeader;
  /** The target the drill restored into (options from drillTarget). */
  target: RestoreTarget;
  log: Logger;
}

export interface DrillTargets<S = Record<string, unknown>> {
  /**
   * Target options of a drill restore into the component's `drill` scratch
   * target, with names unique to the run (a database, a key prefix...), or
   * undefined when the component has no `drill` setting.
   */
  drillTarget(ctx: DrillTargetContext<S>): Record<string, unknown> | undefined;
  /**
   * Removes what a drill restore put into its scratch target (drops the scratch
   * database, flushes the scratch redis databases, deletes the objects /
   * parameters / secrets). Nothing there is fine (a restore that failed before
   * writing). Returns what was removed, for the log.
   */
  cleanupTarget(ctx: DrillCleanupContext<S>): Promise<string>;
}

export function hasDrillTargets(d: Driver<any>): d is Driver<any> & DrillTargets<any> {
  return typeof (d as Partial<DrillTargets>).drillTarget === 'function' && typeof (d as Partial<DrillTargets>).cleanupTarget === 'function';
}

export function report(checks: ValidationCheck[]): ValidationReport {
  return { ok: checks.every((c) => c.ok), checks };
}

/**
 * Snapshot drivers (RDS, Aurora, DocumentDB) split a backup into steps so the
 * state machine can poll the service with a Wait loop instead of a sleeping
 * Lambda: start -> poll until ready -> finish (record ids in the manifest).
 * `backup()` of such a driver runs the same steps in a loop, for the CLI.
 */
export interface SnapshotState {
  /** JSON-serialisable progress carried between steps in the state machine. */
  [k: string]: unknown;
}

export interface SnapshotDriver<S = Record<string, unknown>> extends Driver<S> {
  readonly mode: 'snapshot';
  start(ctx: DriverBackupContext<S>): Promise<SnapshotState>;
  /** Returns ready=false while the service is still working (the state machine waits and polls again). */
  poll(ctx: DriverBackupContext<S>, state: SnapshotState): Promise<{ ready: boolean; state: SnapshotState }>;
  /** Builds the manifest content once the snapshot (and its DR copy) is available. */
  finish(ctx: DriverBackupContext<S>, state: SnapshotState): Promise<DriverBackupResult>;
}

/** Service snapshots the driver created and retention may delete (never the newest good one). */
export interface ServiceRetention {
  pruneSnapshots(o: { component: string; settings: any; now?: Date; dryRun?: boolean; log?: Logger }): Promise<{
    component: string;
    dryRun: boolean;
    regions: { region: string; kept: unknown[]; deleted: { id: string; time: string }[]; skipped: unknown[] }[];
  }>;
}

export function hasServiceRetention(d: Driver<any>): d is Driver<any> & ServiceRetention {
  return typeof (d as Partial<ServiceRetention>).pruneSnapshots === 'function';
}

/** Drivers whose drill is a check of the service's copies rather than a restore (snapshot kinds). */
export interface DrillCheck {
  drillCheck(ctx: { component: string; manifest: ManifestHeader }): Promise<ValidationReport>;
}

export function hasDrillCheck(d: Driver<any>): d is Driver<any> & DrillCheck {
  return typeof (d as Partial<DrillCheck>).drillCheck === 'function';
}

export function isSnapshotDriver(d: Driver<any>): d is SnapshotDriver<any> {
  return d.mode === 'snapshot';
}
