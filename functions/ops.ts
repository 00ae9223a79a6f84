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
import { errorMessage, NotFoundError } from './core/errors.ts';
import type { AlertSink } from './core/ports.ts';
import type { Driver, Logger, ServiceRetention } from './components/types.ts';
import { hasServiceRetention } from './components/types.ts';
import { driverFor } from './components/registry.ts';
import { keyProvider, location, openStorage, openVault } from './services.ts';
import { LocalKeyProvider } from './adapters/keys/local.ts';
import { resolvePath } from './core/config.ts';

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
    return { runId, type: o.type, ok: false, outcomes, failures, durationMs: Date.now() - t0 };
  }
  try {
    const held = { lock, known: await vault.listChunks() };
    pausePoint('backup-listed');
    for (const name of names) {
      try {
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
  return { runId, type: o.type, ok: failures.length === 0, outcomes, failures, replicated, durationMs: Date.now() - t0 };
}

export async function replicateVaults(cfg: MemvaultConfig, onProgress?: (d: number, t: number) => void): Promise<ReplicateReport> {
  // Opening both proves each region's key opens its vault before anything is copied.
  const [p, s] = await Promise.all([openVault(cfg, 'primary'), openVault(cfg, 'secondary')]);
  return replicate(p, s, { onProgress });
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

export async function retentionRun(cfg: MemvaultConfig, o: { dryRun?: boolean; now?: Date; sides?: ('primary' | 'secondary')[] } = {}): Promise<{ vaults: RetentionReport[]; snapshots: SnapshotPruneReport[] }> {
  const policies = Object.fromEntries(Object.entries(cfg.components).map(([n, c]) => [n, c.retention]));
  const sides = o.sides ?? (cfg.vault.secondary ? ['primary', 'secondary'] : ['primary']);
  const vaults: RetentionReport[] = [];
  for (const side of sides) vaults.push(await applyRetention(await openVault(cfg, side), policies, { dryRun: o.dryRun, now: o.now }));
  const snapshots = await pruneServiceSnapshots(cfg, driverFor, { dryRun: o.dryRun, now: o.now });
  return { vaults, snapshots };
}
