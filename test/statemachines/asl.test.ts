// The ASL files as the CDK app will load them: each passes asl-validator and
// aws-local-stepfunctions' own validation, every ${Placeholder} has a binding
// (a handler file exporting `handler`, or statemachines/substitutions.json),
// and every Lambda task retries exactly the retryable error names of
// functions/core/errors.ts (RETRYABLE_ERROR_NAMES, the one list) and never a
// permanent one, and waits out a dead invocation's vault lock on LockedError.
import { describe, expect, it } from 'vitest';
import { createRequire } from 'node:module';
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { StateMachine } from 'aws-local-stepfunctions';
import * as errors from '../../functions/core/errors.ts';
import { RETRYABLE_ERROR_NAMES } from '../../functions/core/errors.ts';
import { MAX_LAMBDA_LOCK_LIFETIME_MS } from '../../functions/core/lock.ts';
import { HANDLERS_DIR, STATE_MACHINES_DIR, STATE_MACHINE_NAMES, handlerNames, kebab, localDefinition, localSubstitutions, placeholders, readDefinitionText, taskStates } from '../../local/runtime.ts';

const aslValidator = createRequire(import.meta.url)('asl-validator') as (d: unknown) => { isValid: boolean; errorsText: (sep?: string) => string };

/** Every error class errors.ts exports, by family (what a Lambda failure reports as its name). */
const exported = { retryable: [] as string[], permanent: [] as string[] };
for (const C of Object.values(errors)) {
  if (typeof C !== 'function' || !(C.prototype instanceof Error)) continue;
  let e: Error;
  try { e = new (C as new (m: string) => Error)('x'); } catch { continue; }
  if (e instanceof errors.RetryableError) exported.retryable.push(e.name);
  else if (e instanceof errors.PermanentError) exported.permanent.push(e.name);
}

/** The task state named `state`, wherever it is nested (Map, Parallel). */
function findState(states: Record<string, any>, state: string): any {
  for (const [n, s] of Object.entries(states)) {
    if (n === state) return s;
    const inner = s.Type === 'Map' ? findState(s.ItemProcessor.States, state) : s.Type === 'Parallel' ? s.Branches.map((b: any) => findState(b.States, state)).find(Boolean) : undefined;
    if (inner) return inner;
  }
}

/** The shortest total wait of a retrier over all its attempts (with full jitter a wait can be ~0). */
function minimumWaitSeconds(r: { IntervalSeconds?: number; MaxAttempts?: number; BackoffRate?: number; MaxDelaySeconds?: number; JitterStrategy?: string }): number {
  if (r.JitterStrategy === 'FULL') return 0;
  let total = 0;
  for (let k = 0; k < (r.MaxAttempts ?? 3); k++) total += Math.min(r.MaxDelaySeconds ?? Infinity, (r.IntervalSeconds ?? 1) * (r.BackoffRate ?? 2) ** k);
  return total;
}

describe('functions/core/errors.ts', () => {
  it('RETRYABLE_ERROR_NAMES names every retryable class it exports, and only those', () => {
    expect([...RETRYABLE_ERROR_NAMES].sort()).toEqual([...exported.retryable].sort());
    expect(RETRYABLE_ERROR_NAMES).toEqual(expect.arrayContaining(['RetryableError', 'TransientStorageError', 'NotReadyError', 'LockedError', 'BackupRacedError', 'SourceBusyError', 'SnapshotCopyLimitError', 'ThrottledError']));
  });
});

describe.each(STATE_MACHINE_NAMES)('statemachines/%s.asl.json', (name) => {
  const text = readDefinitionText(name);

  it('is valid ASL once its placeholders are bound (asl-validator and the local runner)', () => {
    const def = localDefinition(name);
    const r = aslValidator(def);
    expect(r.errorsText('\n')).toBe('');
    expect(r.isValid).toBe(true);
    expect(() => new StateMachine(def as never, { validationOptions: { checkPaths: true, checkArn: true } })).not.toThrow();
    expect(text).not.toMatch(/QueryLanguage|JSONata|"Assign"|ItemReader/);
  });

  it('binds every placeholder locally', () => {
    const subs = localSubstitutions();
    const handlers = new Set(handlerNames());
    for (const p of placeholders(text)) {
      const fn = /^([A-Z][A-Za-z0-9]*)FunctionArn$/.exec(p);
      if (fn) {
        expect(handlers.has(kebab(fn[1])), `${p} -> functions/handlers/${kebab(fn[1])}.ts`).toBe(true);
        expect(readFileSync(path.join(HANDLERS_DIR, `${kebab(fn[1])}.ts`), 'utf8')).toMatch(/export function makeHandler\(/);
      } else {
        expect(subs[p], `${p} in substitutions.json`).toBeDefined();
      }
    }
  });

  it('retries every retryable error name in every task, never a permanent one', () => {
    const def = localDefinition(name);
    const tasks = taskStates(def);
    expect(tasks.length).toBeGreaterThan(0);
    const problems: string[] = [];
    for (const t of tasks) {
      const s = findState(def.States, t.state);
      const retried: string[] = (s.Retry ?? []).flatMap((r: any) => r.ErrorEquals);
      for (const n of RETRYABLE_ERROR_NAMES) if (!retried.includes(n)) problems.push(`${name}.asl.json: state ${t.state} does not retry ${n}`);
      for (const n of [...exported.permanent, 'States.ALL', 'States.TaskFailed']) if (retried.includes(n)) problems.push(`${name}.asl.json: state ${t.state} retries ${n}, which no retry can fix`);
      for (const r of s.Retry ?? []) {
        // Only the lock wait is exact (its minimum must be known); every other retry spreads out.
        const lockOnly = r.ErrorEquals.length === 1 && r.ErrorEquals[0] === 'LockedError';
        if (r.JitterStrategy !== (lockOnly ? 'NONE' : 'FULL')) problems.push(`${name}.asl.json: state ${t.state}: retry of ${r.ErrorEquals.join(', ')} has JitterStrategy ${r.JitterStrategy}, expected ${lockOnly ? 'NONE' : 'FULL'}`);
        if (!(r.BackoffRate > 1)) problems.push(`${name}.asl.json: state ${t.state}: retry of ${r.ErrorEquals.join(', ')} has no backoff`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('waits out the longest vault lock of a Lambda invocation on LockedError', () => {
    // A lock taken on Lambda is dead at most MAX_LAMBDA_LOCK_LIFETIME_MS after it was taken (core/lock.ts:
    // the holder's invocation deadline + margin), so a task that retries LockedError at least that long
    // always outlasts a live holder and a timed-out one alike.
    const def = localDefinition(name);
    const needed = MAX_LAMBDA_LOCK_LIFETIME_MS / 1000;
    const problems: string[] = [];
    for (const t of taskStates(def)) {
      const s = findState(def.States, t.state);
      const r = (s.Retry ?? []).find((x: any) => x.ErrorEquals.includes('LockedError'));
      const waited = r ? minimumWaitSeconds(r) : 0;
      if (waited < needed) problems.push(`${name}.asl.json: state ${t.state} waits at least ${Math.round(waited)} s on LockedError, less than a lock's longest life on Lambda (${needed} s)`);
    }
    expect(problems).toEqual([]);
  });
});

describe('the contract with the CDK app', () => {
  it('uses one Lambda form everywhere: Resource ${<Pascal>FunctionArn}', () => {
    for (const name of STATE_MACHINE_NAMES) {
      const raw = JSON.parse(readDefinitionText(name));
      const resources: string[] = [];
      JSON.stringify(raw, (k, v) => { if (k === 'Resource') resources.push(v); return v; });
      for (const r of resources) expect(r).toMatch(/^\$\{[A-Z][A-Za-z0-9]*FunctionArn\}$/);
    }
  });

  it('documents every state machine and handler in statemachines/README.md', () => {
    const readme = readFileSync(path.join(STATE_MACHINES_DIR, 'README.md'), 'utf8');
    for (const n of STATE_MACHINE_NAMES) expect(readme).toContain(`${n}.asl.json`);
    for (const h of handlerNames()) expect(readme).toContain(`${h}.ts`);
    expect(existsSync(path.join(STATE_MACHINES_DIR, 'substitutions.json'))).toBe(true);
  });

  it('fails loudly on an unbound placeholder', async () => {
    const { mkdtemp, writeFile, readFile } = await import('node:fs/promises');
    const os = await import('node:os');
    const dir = await mkdtemp(path.join(os.tmpdir(), 'asl-'));
    await writeFile(path.join(dir, 'substitutions.json'), '{}');
    const broken = (await readFile(path.join(STATE_MACHINES_DIR, 'rpo-watch.asl.json'), 'utf8')).replace('"TimeoutSeconds": 3600', '"TimeoutSeconds": 3600, "Comment": "${Nowhere}"');
    await writeFile(path.join(dir, 'rpo-watch.asl.json'), broken.replace(/"Comment": "memvault RPO[^"]*",/, ''));
    expect(() => localDefinition('rpo-watch', dir)).toThrow(/\$\{Nowhere\}.*substitutions\.json/);
  });
});
