// Whole operations on a configured platform, shared by the CLI and the local
// runtime: init, backup runs (with alerts on failure), replicate, retention.
import type { MemvaultConfig } from './core/config.ts';
import type { BackupType } from './core/manifest.ts';
import { acquireBackupLock, backupComponent, selectComponents, type BackupOutcome } from './core/backup.ts';
import type { VaultLock } from './core/lock.ts';
import { pausePoint } from './core/pause.ts';
import type { WriterStats } from './core/writer.ts';
import { Vault } from './core/vault.ts';
import { replicate, type ReplicateReport } from './core/replicate.ts';
import { applyRetention, type RetentionReport } from './core/retention.ts';
import type { VerifyReport } from './core/verify.ts';
import { errorMessage, NotFoundError, UsageError } from './core/errors.ts';
import { continuousOf } from './core/continuous.ts';
import { isPhysicalComponent, prunePgWal } from './components/pg-physical-plan.ts';
import { heartbeatFor, pruneShippedFrames, runSqliteShipper, type TickResult, type WalPruneReport } from './components/sqlite-wal.ts';
import type { AlertSink } from './core/ports.ts';
import type { Driver, Logger, ServiceRetention } from './components/types.ts';
import { hasServiceRetention } from './components/types.ts';
import { driverFor } from './components/registry.ts';
import { keyProvider, location, openStorage, openVault } from './services.ts';
import { LocalKeyProvider } from './adapters/keys/local.ts';
import { resolvePath } from './core/config.ts';
import { recordAudit, type AuditResult } from './core/audit.ts';
import { checkBudget, checkVaultRoom, expectedNewBytes, vaultBytes } from './core/space.ts';
import { readCatalog } from './core/catalog.ts';

export interface InitReport {
  key: { type: string; keyId: string; created: boolean; file?: string };
  primary: { url: string; vaultId: string; created: boolean };
  secondary?: { url: string; vaultId: string; created: boolean };
}

export async function initVaults(cfg: MemvaultConfig): Promise<InitReport> {
  let created = false;
  if (cfg.encryption.key && !cfg.encryption.kms) {
    const file = resolvePath(cfg, cfg.encryption.key);
    if (!(await LocalKeyProvider.exists(file))) {
      await LocalKeyProvider.create(file);
      created = true;
    }
  }
  const pk = await keyProvider(cfg, 'primary');
  const pStore = openStorage(cfg, location(cfg, 'primary'));
  let primaryCreated = false;
  let secret: Buffer;
  let vault: Vault;
  try {
    ({ vault, secret } = await Vault.openWithSecret(pStore, pk));
  } catch (err) {
    if (!(err instanceof NotFoundError)) throw err;
    vault = await Vault.init(pStore, [pk]);
    ({ secret } = await Vault.openWithSecret(pStore, pk));
    primaryCreated = true;
  }
  const report: InitReport = {
    key: { type: pk.type, keyId: pk.keyId, created, file: pk instanceof LocalKeyProvider ? pk.file : undefined },
    primary: { url: pStore.url, vaultId: vault.id, created: primaryCreated },
  };
  if (cfg.vault.secondary) {
    const sk = await keyProvider(cfg, 'secondary');
    const sStore = openStorage(cfg, location(cfg, 'secondary'));
    let sCreated = false;
    try {
      const s = await Vault.open(sStore, sk);
      if (s.id !== vault.id) throw new Error(`${sStore.url} holds vault ${s.id}, not a replica of ${vault.id}`);
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
      await Vault.init(sStore, [sk], { secret, doc: vault.doc });
      sCreated = true;
    }
    report.secondary = { url: sStore.url, vaultId: vault.id, created: sCreated };
  }
  return report;
}

export interface RunReport {
  runId: string;
  type: BackupType;
  ok: boolean;
  outcomes: BackupOutcome[];
  failures: { component: string; error: string; errorName: string }[];
  replicated?: ReplicateReport;
  durationMs: number;
}

/** Backs up the chosen components one after another; a failure alerts and the run goes on. */
export async function runBackups(
  cfg: MemvaultConfig,
  o: { type: BackupType; components?: string[]; runId?: string; alerts: AlertSink; log: Logger; replicate?: boolean; onProgress?: (c: string, s: WriterStats) => void },
): Promise<RunReport> {
  const t0 = Date.now();
  const names = selectComponents(cfg, o.type, o.components);
  const runId = o.runId ?? `run-${new Date().toISOString().replace(/[-:.]/g, '')}`;
  const vault = await openVault(cfg, 'primary');
  const outcomes: BackupOutcome[] = [];
  const failures: RunReport['failures'] = [];
  // One shared lock for the whole run, and the vault's chunks listed under it: a prune
  // cannot run between the components and remove chunks this run skips as stored.
  let lock: VaultLock;
  try {
    lock = await acquireBackupLock(vault, 10 * 60_000);
  } catch (err) {
    for (const name of names) {
      failures.push({ component: name, error: errorMessage(err), errorName: (err as Error).name ?? 'Error' });
      await o.alerts.send({
        severity: 'error', subject: `backup failed: ${name}`, component: name, step: 'lock', cause: errorMessage(err),
        message: `backup of ${name} (${cfg.components[name].kind}) could not start: ${errorMessage(err)}`,
        time: new Date().toISOString(), details: { runId, type: o.type },
      });
    }
    await recordAudit(vault, {
      op: 'backup', result: 'failed', startedAt: new Date(t0).toISOString(), endedAt: new Date().toISOString(),
      components: names, backupIds: [], error: `could not start: ${errorMessage(err)}`, details: { runId, type: o.type },
    }, o.log);
    return { runId, type: o.type, ok: false, outcomes, failures, durationMs: Date.now() - t0 };
  }
  try {
    const held = { lock, known: await vault.listChunks() };
    pausePoint('backup-listed');
    // A local vault's disk must have room for what each component usually stores.
    const history = vault.storage.localRoot ? (await readCatalog(vault, { seen: vault.seen })).entries : [];
    for (const name of names) {
      try {
        if (vault.storage.localRoot) await checkVaultRoom(vault.storage.localRoot, vault.storage.url, name, expectedNewBytes(history, name));
        const out = await backupComponent({ cfg, vault, driverFor, log: o.log, held, onProgress: o.onProgress }, name, o.type, runId);
        outcomes.push(out);
        if (out.warnings.length > 0) {
          failures.push({ component: name, error: `incomplete backup: ${out.warnings.join('; ')}`, errorName: 'IncompleteBackup' });
          await o.alerts.send({
            severity: 'warning', subject: `backup incomplete: ${name}`, component: name, step: 'export',
            message: `backup ${out.backupId} of ${name} completed with ${out.warnings.length} problem(s): ${out.warnings.slice(0, 5).join('; ')}`,
            time: new Date().toISOString(), details: { runId, warnings: out.warnings },
          });
        }
      } catch (err) {
        failures.push({ component: name, error: errorMessage(err), errorName: (err as Error).name ?? 'Error' });
        await o.alerts.send({
          severity: 'error', subject: `backup failed: ${name}`, component: name, step: 'backup', cause: errorMessage(err),
          message: `backup of ${name} (${cfg.components[name].kind}) failed: ${errorMessage(err)}`,
          time: new Date().toISOString(), details: { runId, type: o.type },
        });
      }
    }
  } finally {
    await lock.release().catch(() => undefined);
  }
  let replicated: ReplicateReport | undefined;
  if (o.replicate && cfg.vault.secondary) {
    try {
      replicated = await replicateVaults(cfg);
    } catch (err) {
      failures.push({ component: '(secondary vault)', error: errorMessage(err), errorName: (err as Error).name });
      await o.alerts.send({
        severity: 'error', subject: 'replication to the secondary vault failed', step: 'replicate', cause: errorMessage(err),
        message: errorMessage(err), time: new Date().toISOString(), details: { runId },
      });
    }
  }
  await alertOnBudget(cfg, vault, o.alerts, { runId });
  const result: AuditResult = failures.length === 0 ? 'ok' : outcomes.length > 0 ? 'partial' : 'failed';
  await recordAudit(vault, {
    op: 'backup', result, startedAt: new Date(t0).toISOString(), endedAt: new Date().toISOString(),
    components: names, backupIds: outcomes.map((x) => x.backupId),
    ...(failures.length ? { error: failures.map((f) => `${f.component}: ${f.error}`).join('; ') } : {}),
    details: { runId, type: o.type, ...(replicated ? { replicatedTo: replicated.to } : {}) },
  }, o.log);
  return { runId, type: o.type, ok: failures.length === 0, outcomes, failures, replicated, durationMs: Date.now() - t0 };
}

export async function replicateVaults(cfg: MemvaultConfig, onProgress?: (d: number, t: number) => void): Promise<ReplicateReport> {
  // Opening both proves each region's key opens its vault before anything is copied.
  const [p, s] = await Promise.all([openVault(cfg, 'primary'), openVault(cfg, 'secondary')]);
  const startedAt = new Date().toISOString();
  try {
    const r = await replicate(p, s, { onProgress });
    await recordAudit(p, {
      op: 'replicate', result: r.notCopied.length ? 'partial' : 'ok', startedAt, endedAt: new Date().toISOString(), components: [], backupIds: [],
      ...(r.notCopied.length ? { error: r.notCopied.slice(0, 20).map((n) => `${n.key}: ${n.problem}`).join('; ') } : {}),
      details: { to: r.to, manifestsCopied: r.manifestsCopied, chunksCopied: r.chunksCopied, bytesCopied: r.bytesCopied },
    });
    return r;
  } catch (err) {
    await recordAudit(p, { op: 'replicate', result: 'failed', startedAt, endedAt: new Date().toISOString(), components: [], backupIds: [], error: errorMessage(err), details: { to: s.storage.url } });
    throw err;
  }
}

export type SnapshotPruneReport = Awaited<ReturnType<ServiceRetention['pruneSnapshots']>>;

/** Retention of service snapshots (rds-snapshot, aurora-snapshot): only ours, never the newest good one. */
export async function pruneServiceSnapshots(
  cfg: MemvaultConfig,
  driverOf: (kind: string) => Driver<any>,
  o: { now?: Date; dryRun?: boolean; log?: Logger } = {},
): Promise<SnapshotPruneReport[]> {
  const out: SnapshotPruneReport[] = [];
  for (const [component, settings] of Object.entries(cfg.components)) {
    const d = driverOf(settings.kind);
    if (hasServiceRetention(d)) out.push(await d.pruneSnapshots({ component, settings, now: o.now, dryRun: o.dryRun, log: o.log }));
  }
  return out;
}

export async function retentionRun(cfg: MemvaultConfig, o: { dryRun?: boolean; now?: Date; sides?: ('primary' | 'secondary')[]; alerts?: AlertSink } = {}): Promise<{ vaults: RetentionReport[]; snapshots: SnapshotPruneReport[]; wal: (WalPruneReport & { vault: string })[] }> {
  const policies = Object.fromEntries(Object.entries(cfg.components).map(([n, c]) => [n, c.retention]));
  const sides = o.sides ?? (cfg.vault.secondary ? ['primary', 'secondary'] : ['primary']);
  const vaults: RetentionReport[] = [];
  const wal: (WalPruneReport & { vault: string })[] = [];
  for (const side of sides) {
    const vault = await openVault(cfg, side);
    const startedAt = new Date().toISOString();
    let r: RetentionReport;
    try {
      r = await applyRetention(vault, policies, { dryRun: o.dryRun, now: o.now });
    } catch (err) {
      await recordAudit(vault, { op: 'retention', result: 'failed', startedAt, endedAt: new Date().toISOString(), components: [], backupIds: [], error: errorMessage(err), details: { dryRun: o.dryRun === true } });
      throw err;
    }
    await recordAudit(vault, retentionAudit(r, startedAt));
    // Shipped WAL that no kept base snapshot needs any more (after the forget above).
    for (const w of await pruneContinuousWal(cfg, vault, o.dryRun)) wal.push({ vault: vault.storage.url, ...w });
    if (o.alerts && !o.dryRun) await alertOnBudget(cfg, vault, o.alerts, {});
    vaults.push(r);
  }
  const snapshots = await pruneServiceSnapshots(cfg, driverFor, { dryRun: o.dryRun, now: o.now });
  return { vaults, snapshots, wal };
}

/**
 * Shipped WAL no kept base needs any more, per continuous component: SQLite frames before the
 * oldest kept snapshot's position, PostgreSQL segments before the oldest kept physical base
 * backup's start. Run after retention forgot backups (CLI and the apply-retention handler).
 */
export async function pruneContinuousWal(cfg: MemvaultConfig, vault: Vault, dryRun?: boolean): Promise<WalPruneReport[]> {
  const out: WalPruneReport[] = [];
  for (const component of continuousComponents(cfg)) out.push(await pruneShippedFrames(vault, component, { dryRun }));
  for (const [component, c] of Object.entries(cfg.components)) {
    if (c.kind === 'postgres' && isPhysicalComponent(c)) out.push(await prunePgWal(vault, component, { dryRun }));
  }
  return out;
}

/** The audit record of one vault's retention run (CLI and the apply-retention handler). */
export function retentionAudit(r: RetentionReport, startedAt: string): Parameters<typeof recordAudit>[1] {
  const troubled = r.pruneSkipped || r.damaged.length > 0 || r.chainProblems.length > 0;
  return {
    op: 'retention', result: troubled ? 'partial' : 'ok', startedAt, endedAt: new Date().toISOString(),
    components: [...new Set(r.forgotten.map((f) => f.component))].sort(), backupIds: r.forgotten.map((f) => f.id),
    ...(troubled ? { error: [r.pruneSkipped, ...r.chainProblems, ...r.damaged.map((d) => `${d.key}: ${d.problem}`)].filter(Boolean).slice(0, 20).join('; ') } : {}),
    details: { dryRun: r.dryRun, forgotten: r.forgotten.length, kept: r.kept, chunksPruned: r.chunksPruned, bytesPruned: r.bytesPruned },
  };
}

/** The audit record of a verify run (CLI and the verify-vault handler). */
export function verifyAudit(r: VerifyReport, startedAt: string, readData: unknown): Parameters<typeof recordAudit>[1] {
  const n = r.problems.length + r.damagedManifests.length + r.chainProblems.length;
  return {
    op: 'verify', result: r.ok ? 'ok' : 'failed', startedAt, endedAt: new Date().toISOString(), components: [], backupIds: r.damagedBackups,
    ...(r.ok ? {} : { error: `${n} problem(s): ${[...r.damagedManifests.map((d) => `${d.key}: ${d.error}`), ...r.problems.map((p) => `chunk ${p.chunk}: ${p.problem}`), ...r.chainProblems.map((c) => `${c.component}: ${c.detail}`)].slice(0, 20).join('; ')}` }),
    details: { readData, manifests: r.manifests, chunksReferenced: r.chunksReferenced, chunksRead: r.chunksRead },
  };
}

/** Alerts when the vault is past vault.budget's threshold (a warning) or over it (an error). Returns its size. */
export async function alertOnBudget(cfg: MemvaultConfig, vault: Vault, alerts: AlertSink, details: Record<string, unknown>): Promise<number | null> {
  if (!cfg.vault.budget) return null;
  const bytes = await vaultBytes(vault.storage);
  const f = checkBudget(cfg.vault.budget, vault.storage.url, bytes);
  if (f) await alerts.send({ severity: f.severity, subject: f.subject, step: 'budget', message: f.message, time: new Date().toISOString(), details: { ...f.details, ...details } });
  return bytes;
}

/** The components `memvault watch` ships continuously: sqlite components with `continuous`. */
export function continuousComponents(cfg: MemvaultConfig, names: string[] = []): string[] {
  for (const n of names) {
    if (!cfg.components[n]) throw new UsageError(`unknown component "${n}"; configured components: ${Object.keys(cfg.components).join(', ')}`);
    if (cfg.components[n].kind !== 'sqlite' || !continuousOf(cfg.components[n])) throw new UsageError(`component ${n} is not a sqlite component with a continuous: block (postgres components ship through archive_command: memvault wal-push)`);
  }
  return (names.length ? names : Object.keys(cfg.components)).filter((n) => cfg.components[n].kind === 'sqlite' && continuousOf(cfg.components[n]));
}

/**
 * Ships the WAL of every continuous sqlite component until the signal aborts
 * (`memvault watch`, and `memvault schedule` alongside its schedules). Each
 * generation's base snapshot is a full backup of the component through the
 * usual path (lock, chunks, manifest, head), recording its WAL position.
 */
export async function watchContinuous(cfg: MemvaultConfig, o: { components?: string[]; signal: AbortSignal; log: Logger; alerts?: AlertSink; onTick?: (component: string, r: TickResult) => void }): Promise<void> {
  const names = continuousComponents(cfg, o.components);
  if (names.length === 0) return;
  const vault = await openVault(cfg, 'primary');
  await Promise.all(names.map((component) => {
    const settings = cfg.components[component];
    // One alert per run of failures (a tick fails every interval while the cause lasts).
    let failing = false;
    return runSqliteShipper({
      vault, component, dbPath: resolvePath(cfg, String(settings.path)), settings: continuousOf(settings)!, log: o.log, signal: o.signal,
      heartbeatMs: heartbeatFor(settings.rpo, continuousOf(settings)!.intervalSeconds),
      snapshot: async (generation) => {
        const withGeneration = { ...cfg, components: { ...cfg.components, [component]: { ...settings, snapshotGeneration: generation } } };
        const out = await backupComponent({ cfg: withGeneration, vault, driverFor, log: o.log }, component, 'full', `continuous-${generation}`);
        return { backupId: out.backupId };
      },
      onTick: (r) => { failing = false; o.onTick?.(component, r); },
      onError: (err) => {
        if (failing) return;
        failing = true;
        void o.alerts?.send({
          severity: 'error', subject: `continuous shipping failed: ${component}`, component, step: 'ship-wal', cause: errorMessage(err),
          message: `shipping the WAL of ${component} failed (retrying every ${continuousOf(settings)!.intervalSeconds}s): ${errorMessage(err)}`, time: new Date().toISOString(),
        }).catch(() => undefined);
      },
    });
  }));
}
