// The driver interface. A driver knows one kind of source (sqlite, files,
// postgres, redis, ...). Stream drivers export a consistent byte stream (or a
// tree of entries) into the vault through a BackupWriter; snapshot drivers
// (RDS, Aurora) drive the service's own snapshot and record its ids in the
// manifest's `driver` field. Every driver restores into a fresh target and
// validates the result with counts and checksums, not just "it ran".
import type { z } from 'zod';
import type { BackupType, Entry, Manifest } from '../core/manifest.ts';
import type { BackupWriter } from '../core/writer.ts';
import type { Vault } from '../core/vault.ts';
import type { ComponentConfig } from '../core/config.ts';

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
  parent?: Manifest;
  writer: BackupWriter;
  /** Resolves a path from the config against the config file's directory. */
  resolve(p: string): string;
  log: Logger;
  signal?: AbortSignal;
}

export interface DriverBackupResult {
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
  manifest: Manifest;
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
  manifest: Manifest;
  target: RestoreTarget;
  location: string;
  resolve(p: string): string;
  log: Logger;
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
  drillCheck(ctx: { component: string; manifest: Manifest }): Promise<ValidationReport>;
}

export function hasDrillCheck(d: Driver<any>): d is Driver<any> & DrillCheck {
  return typeof (d as Partial<DrillCheck>).drillCheck === 'function';
}

export function isSnapshotDriver(d: Driver<any>): d is SnapshotDriver<any> {
  return d.mode === 'snapshot';
}
