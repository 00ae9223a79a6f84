// Shared by the snapshot handlers (not a handler itself): the driver context
// of a snapshot-native component (RDS instance, Aurora / DocumentDB cluster).
import { z } from 'zod';
import { EntryLog } from '../core/entry-log.ts';
import { BackupWriter } from '../core/writer.ts';
import { BACKUP_TYPES, type BackupType } from '../core/manifest.ts';
import { resolvePath } from '../core/config.ts';
import { PermanentError } from '../core/errors.ts';
import { isSnapshotDriver, type DriverBackupContext, type Logger, type SnapshotDriver } from '../components/types.ts';
import { type HandlerDeps, componentSettings, traced } from './deps.ts';

export const snapshotStepInput = z.object({
  component: z.string(),
  type: z.enum(BACKUP_TYPES as [BackupType, ...BackupType[]]),
  runId: z.string().optional(),
  /** Progress carried between steps (from snapshot-start / snapshot-poll). */
  snapshot: z.object({ state: z.record(z.string(), z.unknown()), startedAt: z.string() }).passthrough().optional(),
  ...traced,
});
export type SnapshotStepInput = z.infer<typeof snapshotStepInput>;

/** Seconds the state machine's Wait state sleeps between polls. */
export const POLL_SECONDS = 30;

export async function snapshotContext(deps: HandlerDeps, e: SnapshotStepInput, log: Logger): Promise<{ driver: SnapshotDriver<any>; ctx: DriverBackupContext<any> }> {
  const settings = componentSettings(deps.cfg, e.component);
  const driver = deps.driverFor(settings.kind);
  if (!isSnapshotDriver(driver)) throw new PermanentError(`component ${e.component} (kind ${settings.kind}) streams its data; it has no snapshot steps`);
  const vault = await deps.openVault('primary');
  const writer = new BackupWriter(vault, new Set());
  const ctx: DriverBackupContext<any> = {
    component: e.component, settings: settings as never, type: e.type, writer, entries: new EntryLog(writer),
    parentEntries: async function* () {}, resolve: (p) => resolvePath(deps.cfg, p), log,
  };
  return { driver, ctx };
}
