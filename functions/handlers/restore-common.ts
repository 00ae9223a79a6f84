// Shared by restore-component, validate-restore and promote-restore (not a
// handler itself): the Map item of a restore or drill, and the manifest,
// settings and driver it needs.
import { z } from 'zod';
import { resolvePath, type ComponentConfig } from '../core/config.ts';
import type { ManifestHeader } from '../core/manifest.ts';
import { parseManifestKey } from '../core/manifest.ts';
import { UsageError } from '../core/errors.ts';
import type { Driver } from '../components/types.ts';
import type { MemvaultConfig } from '../core/config.ts';
import type { Vault } from '../core/vault.ts';
import type { HandlerDeps } from './deps.ts';
import type { MaskOutcome } from '../core/mask.ts';

export const restoreItem = z.object({
  component: z.string(),
  backupId: z.string(),
  manifestKey: z.string(),
  backupTime: z.string(),
  from: z.enum(['primary', 'secondary']),
  targetDir: z.string(),
  inPlace: z.boolean(),
  live: z.string().nullable(),
  /** Driver target options (snapshot restores: the new instance/cluster). */
  options: z.record(z.string(), z.unknown()).nullable().optional(),
  /** A verify-drill item: snapshot kinds check their snapshots instead of creating a database. */
  drill: z.boolean().optional(),
  /** What the plan chose for the operator (e.g. a derived new instance id), shown in the output. */
  note: z.string().optional(),
  /**
   * A sanitized restore (drills; restores with "sandbox": true): the component's mask rules
   * are applied in the restore step. Never with inPlace.
   */
  sanitize: z.boolean().optional(),
});
export type RestoreItemInput = z.infer<typeof restoreItem>;

export const restoredResult = z.object({
  component: z.string(),
  backupId: z.string(),
  backupTime: z.string(),
  location: z.string(),
  bytes: z.number(),
  entries: z.number(),
  durationMs: z.number(),
  /** Continuous components: the newest commit restored (the shipped WAL replayed onto the base). */
  recoveryPoint: z.string().optional(),
  /** The item's note (e.g. the derived new instance id). */
  note: z.string().optional(),
  /** What masking changed (a sanitized restore of a component with mask rules), else null. */
  masking: z.custom<MaskOutcome>((v) => typeof v === 'object' && v !== null && Array.isArray((v as MaskOutcome).rules)).nullable().optional(),
});
export type Restored = z.infer<typeof restoredResult>;

export async function loadItem(deps: HandlerDeps, item: RestoreItemInput): Promise<{ vault: Vault; manifest: ManifestHeader; settings: ComponentConfig; driver: Driver<any>; resolve: (p: string) => string }> {
  const ref = parseManifestKey(item.manifestKey);
  if (!ref || ref.component !== item.component) throw new UsageError(`restore item: manifestKey: "${item.manifestKey}" is not a manifest of ${item.component}`);
  const vault = await deps.openVault(item.from);
  const manifest = await vault.readManifestHeader(ref);
  const settings = (deps.cfg.components[item.component] ?? { kind: manifest.kind, critical: false, timezone: 'UTC', scheduleType: 'incremental', retention: {} }) as ComponentConfig;
  return { vault, manifest, settings, driver: deps.driverFor(manifest.kind), resolve: (p) => resolvePath(deps.cfg, p) };
}

/**
 * True in the handlers of an AWS deploy (the deployed handler config carries
 * `aws`): every step may run in another function with its own /tmp, so
 * restores and drills go to network targets only, never a directory.
 */
export function onAws(cfg: MemvaultConfig): boolean {
  return cfg.aws !== undefined;
}

/** True when an item's target options send the restore to a network target (database, bucket, service). */
export function isNetworkItem(driver: Driver<any>, options: Record<string, unknown> | null | undefined): boolean {
  return driver.isNetworkTarget?.(options ?? undefined) === true;
}

/**
 * Refuses, on AWS, a restore of a stream kind into a directory: the restored data
 * would stay in this function's /tmp (at most 10 GB), unseen by the next step.
 */
export function requireNetworkTarget(deps: HandlerDeps, driver: Driver<any>, item: RestoreItemInput, step: string): void {
  if (!onAws(deps.cfg) || isNetworkItem(driver, item.options)) return;
  throw new UsageError(
    `${step}: ${item.component} (${driver.kind}) would be restored into the directory ${item.targetDir || '(none)'} of one Lambda function's /tmp; ` +
      (driver.networkTargetFields
        ? `on AWS restores go to a network target: set target.options.${item.component} with ${driver.networkTargetFields}${item.drill ? `, or components.${item.component}.drill for drills` : ''}`
        : `a ${driver.kind} component is restored on the host that holds it (memvault restore, or the local runtime)`),
  );
}

/** The scratch target of a drill item, for messages (no passwords: URLs lose their user info). */
export function describeScratch(component: string, settings: ComponentConfig, options: Record<string, unknown> | null | undefined): string {
  const drill = (settings.drill ?? {}) as Record<string, unknown>;
  const shown = ['url', 'host', 'port', 'database', 'db', 'uriEnv', 'databasePrefix', 'bucket', 'prefix', 'endpoint', 'parameterPath', 'secretPrefix', 'region']
    .filter((k) => drill[k] !== undefined)
    .map((k) => `${k}=${String(drill[k]).replace(/\/\/[^@/]*@/, '//')}`);
  const run = Object.entries(options ?? {}).filter(([k]) => k === 'scratchDatabase' || k === 'tag').map(([k, v]) => `${k}=${String(v)}`);
  return `components.${component}.drill {${[...shown, ...run].join(', ')}}`;
}
