// Hooks around a component's backups and restores (config: components.<name>.hooks):
// the runbooks' "stop the service, restore, verify, restart". Before-hooks gate
// the operation: the first that fails stops it, naming the hook. After-hooks all
// run, whatever the outcome (MEMVAULT_RESULT tells them), so a service stopped
// before a backup is started again after a failed one; their failures are
// reported together. A hook is a command, an HTTP(S) call or a Lambda function
// (lambda-hook.ts). Drills run none: they restore into a sandbox, and the
// hooks act on the production service.
import type { ComponentConfig, Hook, HookPhase } from '../core/config.ts';
import { PermanentError } from '../core/errors.ts';
import { commandCheck, httpCheck } from './checks.ts';

export class HookFailedError extends PermanentError {
  constructor(message: string) {
    super(message);
    this.name = 'HookFailedError';
  }
}

export interface HookContext {
  component: string;
  kind: string;
  /** Where the data is (restores: the target), for the hook's environment. */
  location: string;
  result?: 'ok' | 'failed';
}

export function hooksOf(settings: ComponentConfig | undefined, phase: HookPhase): Hook[] {
  return (settings as { hooks?: Partial<Record<HookPhase, Hook[]>> } | undefined)?.hooks?.[phase] ?? [];
}

async function runOne(h: Hook, phase: HookPhase, ctx: HookContext): Promise<string | null> {
  const r = h.command
    ? await commandCheck({ component: ctx.component, kind: ctx.kind, location: ctx.location, env: { MEMVAULT_HOOK: phase, MEMVAULT_RESULT: ctx.result ?? '' } }, h.command)
    : h.lambda
      ? await (await import('./lambda-hook.ts')).lambdaHook(h.lambda, { component: ctx.component, kind: ctx.kind, hook: phase, result: ctx.result ?? '', location: ctx.location })
      : await httpCheck(h.http!);
  return r.ok ? null : `${ctx.component}: ${phase} hook ${h.name} failed: expected ${r.expected}, got ${r.actual}`;
}

/** Runs before-hooks in order; the first failure throws HookFailedError naming it. */
export async function runBeforeHooks(settings: ComponentConfig | undefined, phase: 'beforeBackup' | 'beforeRestore', ctx: HookContext): Promise<void> {
  for (const h of hooksOf(settings, phase)) {
    const bad = await runOne(h, phase, ctx);
    if (bad) throw new HookFailedError(`${bad}; the ${phase === 'beforeBackup' ? 'backup' : 'restore'} did not start`);
  }
}

/** Runs every after-hook; returns the failures (empty: all ran fine). */
export async function runAfterHooks(settings: ComponentConfig | undefined, phase: 'afterBackup' | 'afterRestore', ctx: HookContext): Promise<string[]> {
  const failures: string[] = [];
  for (const h of hooksOf(settings, phase)) {
    const bad = await runOne(h, phase, ctx);
    if (bad) failures.push(bad);
  }
  return failures;
}
