// validate-restore: checks restored data with the driver's validation (row
// counts and content hashes, integrity_check, file checksums), not just that
// the restore ran. Any failed check is an IntegrityError naming the component
// and each check with expected and actual values.
import { z } from 'zod';
import { IntegrityError } from '../core/errors.ts';
import type { ValidationReport } from '../components/types.ts';
import { type HandlerDeps, invocationLog, json, lazyHandler, parseEvent, traced } from './deps.ts';
import { loadItem, restoreItem, restoredResult } from './restore-common.ts';

export const validateRestoreInput = z.object({ item: restoreItem, restored: restoredResult, ...traced });

export function makeHandler(deps: HandlerDeps) {
  return async (event: unknown): Promise<ValidationReport> => {
    const e = parseEvent(validateRestoreInput, event, 'validate-restore input');
    const log = invocationLog(deps, 'validate-restore', { executionId: e.executionId, component: e.item.component });
    const { manifest, settings, driver, resolve } = await loadItem(deps, e.item);
    const v = await driver.validate({ component: e.item.component, settings: settings as never, manifest, target: { dir: e.item.targetDir }, location: e.restored.location, resolve, log });
    if (!v.ok) {
      const bad = v.checks.filter((c) => !c.ok).map((c) => `${c.name}: expected ${JSON.stringify(c.expected)}, got ${JSON.stringify(c.actual)}`);
      throw new IntegrityError(`restored ${e.item.component} (backup ${manifest.id}) failed validation at ${e.restored.location}: ${bad.join('; ')}`);
    }
    log.info('restore validated', { checks: v.checks.length });
    return json(v);
  };
}

export const handler = lazyHandler(makeHandler);
