// Shared by restore-component, validate-restore and promote-restore (not a
// handler itself): the Map item of a restore or drill, and the manifest,
// settings and driver it needs.
import { z } from 'zod';
import { resolvePath, type ComponentConfig } from '../core/config.ts';
import type { Manifest } from '../core/manifest.ts';
import { parseManifestKey } from '../core/manifest.ts';
import { UsageError } from '../core/errors.ts';
import type { Driver } from '../components/types.ts';
import type { Vault } from '../core/vault.ts';
import type { HandlerDeps } from './deps.ts';

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
});
export type Restored = z.infer<typeof restoredResult>;

export async function loadItem(deps: HandlerDeps, item: RestoreItemInput): Promise<{ vault: Vault; manifest: Manifest; settings: ComponentConfig; driver: Driver<any>; resolve: (p: string) => string }> {
  const ref = parseManifestKey(item.manifestKey);
  if (!ref || ref.component !== item.component) throw new UsageError(`restore item: manifestKey: "${item.manifestKey}" is not a manifest of ${item.component}`);
  const vault = await deps.openVault(item.from);
  const manifest = await vault.readManifest(ref);
  const settings = (deps.cfg.components[item.component] ?? { kind: manifest.kind, critical: false, timezone: 'UTC', scheduleType: 'incremental', retention: {} }) as ComponentConfig;
  return { vault, manifest, settings, driver: deps.driverFor(manifest.kind), resolve: (p) => resolvePath(deps.cfg, p) };
}
