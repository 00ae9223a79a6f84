// Sanitizing a restored component (drills, sandbox restores; never a production
// restore): shared by the restore step of the state machines (restore-component)
// and `memvault restore --sanitize` (core/restore.ts).
//
//   1. the driver's own validation against the backup, before anything changes
//      (counts and content hashes of every table, key, file): a restore that is
//      wrong fails here, as it would unmasked;
//   2. the driver's mask(): the component's `mask:` rules, each counted;
//   3. the result travels with the restore, so the validation after it
//      (DriverValidateContext.masked) compares counts and the data no rule
//      touched, not the masked values.
// A failure after the restore removes what was restored into a directory (a
// sandbox must not keep production values because masking failed); a network
// target is named in the error, for the drill's cleanup or the operator.
import { promises as fs } from 'node:fs';
import type { ComponentConfig } from '../core/config.ts';
import type { ManifestHeader } from '../core/manifest.ts';
import type { Vault } from '../core/vault.ts';
import { ConfigError, IntegrityError } from '../core/errors.ts';
import { type MaskOutcome, type MaskRule, maskKeyFrom } from '../core/mask.ts';
import { type Driver, type Logger, type RestoreTarget, hasMasking } from './types.ts';

export const MASKED_VALIDATION_NOTE =
  'masked columns, fields, keys and files are not compared with the backup after masking: row, document and key counts are, and the data no rule touched is compared with its digest taken before masking, when the whole restore had passed validation against the backup';

export function maskRules(settings: ComponentConfig | undefined): MaskRule[] {
  return (settings?.mask ?? []) as MaskRule[];
}

export interface SanitizeRequest {
  driver: Driver<any>;
  component: string;
  settings: ComponentConfig;
  manifest: ManifestHeader;
  target: RestoreTarget;
  location: string;
  vault: Vault;
  resolve(p: string): string;
  log: Logger;
  /** The directory the restore wrote into (removed when masking fails), if any. */
  directory?: string;
}

/** Validates, then masks the restored component; null when it has no rules. */
export async function sanitizeRestored(r: SanitizeRequest): Promise<MaskOutcome | null> {
  const rules = maskRules(r.settings);
  if (rules.length === 0) return null;
  try {
    if (!hasMasking(r.driver)) throw new ConfigError(`components.${r.component}.mask: masking of ${r.driver.kind} components is not implemented yet; remove the rules or restore without sanitizing`);
    const pre = await r.driver.validate({ component: r.component, settings: r.settings as never, manifest: r.manifest, vault: r.vault, target: r.target, location: r.location, resolve: r.resolve, log: r.log });
    if (!pre.ok) {
      const bad = pre.checks.filter((c) => !c.ok).map((c) => `${c.name}: expected ${JSON.stringify(c.expected)}, got ${JSON.stringify(c.actual)}`);
      throw new IntegrityError(`restored ${r.component} (backup ${r.manifest.id}) failed validation before masking at ${r.location}: ${bad.join('; ')}`);
    }
    const m = await r.driver.mask({ component: r.component, settings: r.settings as never, manifest: r.manifest, vault: r.vault, target: r.target, location: r.location, rules, key: maskKeyFrom(r.vault.keys.idKey), resolve: r.resolve, log: r.log });
    const outcome: MaskOutcome = { ...m, validatedBeforeMasking: pre.checks.length, note: m.note ?? MASKED_VALIDATION_NOTE };
    r.log.info('restored data masked', { component: r.component, rules: outcome.rules.map((x) => ({ rule: x.rule, touched: x.touched, unit: x.unit })) });
    return outcome;
  } catch (err) {
    if (r.directory) {
      await fs.rm(r.directory, { recursive: true, force: true });
      r.log.warn('masking failed: the restored (unmasked) data was removed', { component: r.component, dir: r.directory });
    } else {
      (err as Error).message += ` (the restore target ${r.location} may hold unmasked data until it is cleaned up)`;
    }
    throw err;
  }
}
