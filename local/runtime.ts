// The local runtime: runs the same ASL files as AWS (statemachines/*.asl.json)
// with aws-local-stepfunctions, in-process.
//
//   1. load the definition and substitute its placeholders: each
//      ${<Pascal>FunctionArn} becomes a local Lambda ARN for the handler file
//      functions/handlers/<kebab>.ts; every other ${Name} comes from
//      statemachines/substitutions.json. An unbound placeholder is an error.
//   2. bind every Task state to its handler: makeHandler(deps) of that module,
//      called in-process with deps built from the configuration. Results go
//      through JSON as a Lambda result would, and a thrown error keeps its
//      `name` (what Retry/Catch match) with a Lambda-style JSON Cause.
//   3. shorten time, keep semantics: Wait states wait `waitMs`, Retry pauses are
//      `retryMs`, but the same states, retries and catches run.
//   4. report each state as it is entered, exited, retried or fails, and return
//      the outcome the way `memvault run --remote` does (status, output, error,
//      cause).
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { StateMachine, ExecutionError } from 'aws-local-stepfunctions';
import type { MemvaultConfig } from '../functions/core/config.ts';
import { ConfigError, UsageError } from '../functions/core/errors.ts';
import { defaultDeps, type HandlerDeps, type Handler } from '../functions/handlers/deps.ts';
import type { RemoteEvent, RemoteResult } from '../functions/adapters/sfn.ts';

export const STATE_MACHINES_DIR = fileURLToPath(new URL('../statemachines/', import.meta.url));
export const HANDLERS_DIR = fileURLToPath(new URL('../functions/handlers/', import.meta.url));
export const STATE_MACHINE_NAMES = ['backup-run', 'restore', 'verify-drill', 'retention', 'rpo-watch'] as const;
export type StateMachineName = (typeof STATE_MACHINE_NAMES)[number];

const LOCAL_ACCOUNT = '000000000000';
const LOCAL_REGION = 'local-1';
const FUNCTION_ARN = /^\$\{([A-Z][A-Za-z0-9]*)FunctionArn\}$/;

export function kebab(pascal: string): string {
  return pascal.replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase();
}

export function pascal(kebabName: string): string {
  return kebabName.split('-').map((p) => p.charAt(0).toUpperCase() + p.slice(1)).join('');
}

export function localFunctionArn(pascalName: string): string {
  return `arn:aws:lambda:${LOCAL_REGION}:${LOCAL_ACCOUNT}:function:memvault-${kebab(pascalName)}`;
}

/** Placeholders (${Name}) used by a definition's text. */
export function placeholders(text: string): string[] {
  return [...new Set([...text.matchAll(/\$\{([A-Za-z0-9_]+)\}/g)].map((m) => m[1]))];
}

/** Handler files that export `handler` (kebab names). */
export function handlerNames(dir = HANDLERS_DIR): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.ts'))
    .filter((f) => /export const handler\b/.test(readFileSync(path.join(dir, f), 'utf8')))
    .map((f) => f.slice(0, -3))
    .sort();
}

export function localSubstitutions(dir = STATE_MACHINES_DIR): Record<string, string> {
  return JSON.parse(readFileSync(path.join(dir, 'substitutions.json'), 'utf8')) as Record<string, string>;
}

export function readDefinitionText(name: string, dir = STATE_MACHINES_DIR): string {
  if (!(STATE_MACHINE_NAMES as readonly string[]).includes(name)) {
    throw new UsageError(`unknown state machine "${name}"; state machines: ${STATE_MACHINE_NAMES.join(', ')}`);
  }
  return readFileSync(path.join(dir, `${name}.asl.json`), 'utf8');
}

/** The definition with every placeholder bound to its local value. */
export function localDefinition(name: string, dir = STATE_MACHINES_DIR): Record<string, any> {
  const text = readDefinitionText(name, dir);
  const subs = localSubstitutions(dir);
  const handlers = new Set(handlerNames());
  const unbound: string[] = [];
  const out = text.replace(/\$\{([A-Za-z0-9_]+)\}/g, (whole, key: string) => {
    const fn = FUNCTION_ARN.exec(whole);
    if (fn) {
      if (!handlers.has(kebab(fn[1]))) unbound.push(`${whole} (no functions/handlers/${kebab(fn[1])}.ts exporting handler)`);
      return localFunctionArn(fn[1]);
    }
    if (subs[key] === undefined) unbound.push(`${whole} (not in statemachines/substitutions.json)`);
    return subs[key] ?? whole;
  });
  if (unbound.length) throw new ConfigError(`statemachines/${name}.asl.json: unbound placeholder(s): ${unbound.join(', ')}`);
  return JSON.parse(out);
}

/** Every Task state (at any depth) with its Resource. */
export function taskStates(def: Record<string, any>): { state: string; resource: string }[] {
  const out: { state: string; resource: string }[] = [];
  const visit = (states: Record<string, any>) => {
    for (const [name, s] of Object.entries(states)) {
      if (s.Type === 'Task') out.push({ state: name, resource: s.Resource });
      if (s.Type === 'Map') visit((s.ItemProcessor ?? s.Iterator).States);
      if (s.Type === 'Parallel') for (const b of s.Branches) visit(b.States);
    }
  };
  visit(def.States);
  return out;
}

/** Every state (at any depth) that has a Retry, and every Wait state. */
function statesOfType(def: Record<string, any>, pred: (s: any) => boolean): string[] {
  const out: string[] = [];
  const visit = (states: Record<string, any>) => {
    for (const [name, s] of Object.entries(states)) {
      if (pred(s)) out.push(name);
      if (s.Type === 'Map') visit((s.ItemProcessor ?? s.Iterator).States);
      if (s.Type === 'Parallel') for (const b of s.Branches) visit(b.States);
    }
  };
  visit(def.States);
  return out;
}

type MakeHandler = (deps: HandlerDeps) => Handler;
const modules = new Map<string, Promise<{ makeHandler: MakeHandler }>>();

async function loadHandlerModule(kebabName: string): Promise<{ makeHandler: MakeHandler }> {
  let m = modules.get(kebabName);
  if (!m) {
    m = import(path.join(HANDLERS_DIR, `${kebabName}.ts`)) as Promise<{ makeHandler: MakeHandler }>;
    modules.set(kebabName, m);
  }
  return m;
}

/** An error as Step Functions sees a failed Lambda: the same name, a JSON Cause. */
class LambdaError extends Error {
  constructor(name: string, message: string) {
    super(JSON.stringify({ errorType: name, errorMessage: message, trace: [] }));
    this.name = name;
  }
}

export interface LocalRunOptions {
  cfg: MemvaultConfig;
  /** Overrides of the handlers' dependencies (clock, alert sink, drivers, vault opener...). */
  deps?: Partial<HandlerDeps>;
  /** Wrap a handler (by Pascal name, e.g. "ExportStream"), e.g. to inject a fault in a test. */
  wrap?: (name: string, fn: Handler) => Handler;
  /** Pause of every Wait state. @default 10 */
  waitMs?: number;
  /** Pause before every retry. @default 10 */
  retryMs?: number;
  /** Execution name. @default local-<time>-<random> */
  name?: string;
  onEvent?: (e: RemoteEvent) => void;
  dir?: string;
}

export interface LocalRunResult extends RemoteResult {
  /** Handler invocations by Pascal name (counts retries). */
  invocations: Record<string, number>;
  /** States that were retried, with how many times. */
  retried: Record<string, number>;
}

/** Runs a state machine once, locally, and returns how it ended (never throws for a failed execution). */
export async function runLocal(name: string, input: unknown, o: LocalRunOptions): Promise<LocalRunResult> {
  const def = localDefinition(name, o.dir);
  const deps = defaultDeps(o.cfg, o.deps);
  const execName = o.name ?? `local-${new Date().toISOString().replace(/[-:.]/g, '')}-${randomBytes(3).toString('hex')}`;
  const executionArn = `arn:aws:states:${LOCAL_REGION}:${LOCAL_ACCOUNT}:execution:memvault-${name}:${execName}`;
  const invocations: Record<string, number> = {};
  const retried: Record<string, number> = {};

  const taskHandlers: Record<string, (input: any) => Promise<any>> = {};
  for (const { state, resource } of taskStates(def)) {
    const m = /:function:memvault-([a-z0-9-]+)$/.exec(resource);
    if (!m) throw new ConfigError(`statemachines/${name}.asl.json: state ${state}: Resource ${resource} is not a memvault handler`);
    const pascalName = pascal(m[1]);
    const mod = await loadHandlerModule(m[1]);
    let fn: Handler = mod.makeHandler(deps);
    if (o.wrap) fn = o.wrap(pascalName, fn);
    const bound = fn;
    taskHandlers[state] = async (event: unknown) => {
      invocations[pascalName] = (invocations[pascalName] ?? 0) + 1;
      try {
        return JSON.parse(JSON.stringify((await bound(JSON.parse(JSON.stringify(event)))) ?? null));
      } catch (err) {
        const e = err instanceof Error ? err : new Error(String(err));
        throw new LambdaError(e.name || 'Error', e.message);
      }
    };
  }
  const waitMs = o.waitMs ?? 10;
  const retryMs = o.retryMs ?? 10;
  const sm = new StateMachine(def as never, { validationOptions: { checkPaths: true, checkArn: true } });
  const began = Date.now();
  const execution = sm.run(input as never, {
    overrides: {
      taskResourceLocalHandlers: taskHandlers,
      waitTimeOverrides: Object.fromEntries(statesOfType(def, (s) => s.Type === 'Wait').map((s) => [s, waitMs])),
      retryIntervalOverrides: Object.fromEntries(statesOfType(def, (s) => Array.isArray(s.Retry)).map((s) => [s, retryMs])),
    },
    context: {
      Execution: { Id: executionArn, Name: execName, RoleArn: `arn:aws:iam::${LOCAL_ACCOUNT}:role/memvault-local` },
      StateMachine: { Id: `arn:aws:states:${LOCAL_REGION}:${LOCAL_ACCOUNT}:stateMachine:memvault-${name}`, Name: `memvault-${name}` },
    } as never,
  });
  const following = (async () => {
    for await (const ev of execution.eventLogs as AsyncIterable<any>) {
      const time = new Date(ev.timestamp ?? Date.now());
      if (ev.type === 'StateRetried') retried[ev.state.name] = (retried[ev.state.name] ?? 0) + 1;
      if (!o.onEvent) continue;
      if (ev.type === 'StateEntered') o.onEvent({ state: ev.state.name, type: 'entered', time, detail: ev.state.type });
      else if (ev.type === 'StateExited') o.onEvent({ state: ev.state.name, type: 'exited', time, detail: ev.state.type });
      else if (ev.type === 'StateFailed') o.onEvent({ state: ev.state.name, type: 'failed', time, detail: `${ev.Error}: ${causeText(ev.Cause)}` });
    }
  })();
  let result: LocalRunResult;
  try {
    const output = await execution.result;
    result = { executionArn, status: 'SUCCEEDED', output, durationMs: Date.now() - began, invocations, retried };
  } catch (err) {
    const inner = err instanceof ExecutionError ? (err.cause as Error) : (err as Error);
    const status = (err as Error).name === 'ExecutionTimeoutError' ? 'TIMED_OUT' : (err as Error).name === 'ExecutionAbortedError' ? 'ABORTED' : 'FAILED';
    result = { executionArn, status, error: inner?.name ?? 'Error', cause: causeText(inner?.message), durationMs: Date.now() - began, invocations, retried };
  }
  await following.catch(() => undefined);
  return result;
}

function causeText(cause: unknown): string {
  if (typeof cause !== 'string') return cause === undefined ? '' : JSON.stringify(cause);
  try {
    const c = JSON.parse(cause) as { errorMessage?: unknown };
    if (c && typeof c.errorMessage === 'string') return c.errorMessage;
  } catch {
    // plain text
  }
  return cause;
}
