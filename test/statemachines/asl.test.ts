// The ASL files as the CDK app will load them: each passes asl-validator and
// aws-local-stepfunctions' own validation, every ${Placeholder} has a binding
// (a handler file exporting `handler`, or statemachines/substitutions.json),
// and every Lambda task retries exactly the retryable error names of
// functions/core/errors.ts and never a permanent one.
import { describe, expect, it } from 'vitest';
import { createRequire } from 'node:module';
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { StateMachine } from 'aws-local-stepfunctions';
import * as errors from '../../functions/core/errors.ts';
import { HANDLERS_DIR, STATE_MACHINES_DIR, STATE_MACHINE_NAMES, handlerNames, kebab, localDefinition, localSubstitutions, placeholders, readDefinitionText, taskStates } from '../../local/runtime.ts';

const aslValidator = createRequire(import.meta.url)('asl-validator') as (d: unknown) => { isValid: boolean; errorsText: (sep?: string) => string };

const retryable: string[] = [];
const permanent: string[] = [];
for (const C of Object.values(errors)) {
  if (typeof C !== 'function' || !(C.prototype instanceof Error)) continue;
  let e: Error;
  try { e = new (C as new (m: string) => Error)('x'); } catch { continue; }
  if (e instanceof errors.RetryableError) retryable.push(e.name);
  else if (e instanceof errors.PermanentError) permanent.push(e.name);
}

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

  it('retries the retryable errors with backoff and jitter, never a permanent one', () => {
    const def = localDefinition(name);
    const tasks = taskStates(def);
    expect(tasks.length).toBeGreaterThan(0);
    const find = (states: Record<string, any>, state: string): any => {
      for (const [n, s] of Object.entries(states)) {
        if (n === state) return s;
        const inner = s.Type === 'Map' ? find(s.ItemProcessor.States, state) : s.Type === 'Parallel' ? s.Branches.map((b: any) => find(b.States, state)).find(Boolean) : undefined;
        if (inner) return inner;
      }
    };
    for (const t of tasks) {
      const s = find(def.States, t.state);
      const retried = s.Retry.flatMap((r: any) => r.ErrorEquals);
      for (const n of retryable) expect(retried, `${t.state} retries ${n}`).toContain(n);
      for (const n of [...permanent, 'States.ALL', 'States.TaskFailed']) expect(retried).not.toContain(n);
      for (const r of s.Retry) {
        expect(r.JitterStrategy).toBe('FULL');
        expect(r.BackoffRate).toBeGreaterThan(1);
      }
    }
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
