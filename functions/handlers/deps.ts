// Shared plumbing of the Lambda handlers (not a handler itself).
//
// - configFromEnv(): the one place handlers read the environment.
//   MEMVAULT_CONFIG_JSON holds the validated configuration as JSON (the CDK app
//   sets it); MEMVAULT_CONFIG is a path to memvault.yaml (used locally). With
//   neither set it throws a ConfigError naming both, at cold start.
// - HandlerDeps: what every makeHandler(deps) receives (config, clock, alert
//   sink, logger, drivers, vault opener), so tests inject fakes and a fixed clock.
// - parseEvent(): zod-parses a state input; problems name the field.
// - lazyHandler(): the `handler` export: on Lambda (AWS_LAMBDA_FUNCTION_NAME set)
//   the environment is read when the module loads, i.e. at cold start;
//   elsewhere on the first call, so importing a handler module never throws.
import { z } from 'zod';
import path from 'node:path';
import { loadConfigFile, parseConfig, type MemvaultConfig } from '../core/config.ts';
import { ConfigError, UsageError } from '../core/errors.ts';
import { formatIssues } from '../core/config.ts';
import type { AlertSink, Clock } from '../core/ports.ts';
import { systemClock } from '../core/ports.ts';
import type { Driver, Logger } from '../components/types.ts';
import { driverFor as registryDriverFor, kindSchemas } from '../components/registry.ts';
import { alertSink, openVault as servicesOpenVault, type Side } from '../services.ts';
import type { Vault } from '../core/vault.ts';
import { jsonLogger } from '../logger.ts';
import { setInvocationDeadline } from '../core/lock.ts';
import { metricsFromEnv, type MetricPoint, type MetricsSink } from './metrics.ts';

export type { Side };

export interface HandlerLogger extends Logger {
  child(fields: Record<string, unknown>): Logger;
}

export interface HandlerDeps {
  cfg: MemvaultConfig;
  clock: Clock;
  alerts: AlertSink;
  log: HandlerLogger;
  driverFor(kind: string): Driver<any>;
  openVault(side: Side): Promise<Vault>;
  /** Where the handlers' metrics go (EMF on stdout on Lambda). @default metricsFromEnv() */
  metrics?: MetricsSink;
}

/** Reads the configuration from the environment; fails loudly when it is not there. */
export function configFromEnv(env: NodeJS.ProcessEnv = process.env): MemvaultConfig {
  const json = env.MEMVAULT_CONFIG_JSON;
  if (json !== undefined && json !== '') {
    let raw: Record<string, unknown>;
    try {
      raw = JSON.parse(json);
    } catch (err) {
      throw new ConfigError(`MEMVAULT_CONFIG_JSON: not valid JSON (${(err as Error).message}); set it to the validated memvault.yaml as JSON`);
    }
    const { baseDir, file, ...doc } = raw as { baseDir?: string; file?: string };
    return parseConfig(doc, kindSchemas, typeof baseDir === 'string' ? baseDir : process.cwd(), typeof file === 'string' ? file : undefined);
  }
  const file = env.MEMVAULT_CONFIG;
  if (file !== undefined && file !== '') return loadConfigFile(path.resolve(file), kindSchemas);
  throw new ConfigError('neither MEMVAULT_CONFIG_JSON (the configuration as JSON) nor MEMVAULT_CONFIG (a path to memvault.yaml) is set in the environment of this handler');
}

/** Real dependencies for a configuration: configured alert sinks, registry drivers, cached vaults. */
export function defaultDeps(cfg: MemvaultConfig, overrides: Partial<HandlerDeps> = {}): HandlerDeps {
  const vaults = new Map<Side, Promise<Vault>>();
  return {
    cfg,
    clock: systemClock,
    alerts: alertSink(cfg, { json: true }),
    log: jsonLogger({ service: 'memvault' }),
    driverFor: registryDriverFor,
    metrics: metricsFromEnv(),
    openVault(side) {
      let v = vaults.get(side);
      if (!v) {
        v = servicesOpenVault(cfg, side);
        v.catch(() => vaults.delete(side));
        vaults.set(side, v);
      }
      return v;
    },
    ...overrides,
  };
}

export type Handler<E = unknown, R = unknown> = (event: E) => Promise<R>;

/** What the handler uses of Lambda's context object. */
export interface InvocationContext {
  getRemainingTimeInMillis?: () => number;
}

/**
 * The module's `handler`: dependencies from the environment, built once per
 * container. Each invocation records its deadline, so vault locks taken
 * during it expire when a timed-out invocation can no longer release them
 * (core/lock.ts).
 */
export function lazyHandler<R>(make: (deps: HandlerDeps) => Handler<unknown, R>, env: NodeJS.ProcessEnv = process.env): (event: unknown, context?: InvocationContext) => Promise<R> {
  let fn: Handler<unknown, R> | undefined;
  const build = () => (fn ??= make(defaultDeps(configFromEnv(env))));
  if (env.AWS_LAMBDA_FUNCTION_NAME) build();
  return async (event, context) => {
    const left = context?.getRemainingTimeInMillis?.();
    setInvocationDeadline(typeof left === 'number' && Number.isFinite(left) ? Date.now() + left : undefined);
    return build()(event);
  };
}

/** Parses a state input; every problem names its field. */
export function parseEvent<T extends z.ZodType>(schema: T, event: unknown, what: string, example?: string): z.infer<T> {
  const r = schema.safeParse(event ?? {});
  if (r.success) return r.data;
  const problems = formatIssues(r.error);
  throw new UsageError(`${what}: ${problems.join('; ')}${example ? `; a valid input looks like ${example}` : ''}`);
}

/** Fields every task receives from the state machine for its logs. */
export const traced = { executionId: z.string().optional() };

export const side = z.enum(['primary', 'secondary']);

/** A logger for one invocation: every line carries the execution id (and component). */
export function invocationLog(deps: HandlerDeps, handler: string, fields: { executionId?: string; component?: string }): Logger {
  return deps.log.child({ handler, executionId: fields.executionId, ...(fields.component ? { component: fields.component } : {}) });
}

export function componentSettings(cfg: MemvaultConfig, component: string) {
  const s = cfg.components[component];
  if (!s) throw new UsageError(`unknown component "${component}"; configured components: ${Object.keys(cfg.components).join(', ')}`);
  return s;
}

/** Emits metric points; a failing sink never fails the handler. */
export function emitMetrics(deps: HandlerDeps, points: MetricPoint[]): void {
  if (points.length === 0 || !deps.metrics) return;
  try {
    deps.metrics.emit(points, deps.clock.now());
  } catch (err) {
    deps.log.warn('metrics not emitted', { error: (err as Error).message });
  }
}

/** Plain JSON (no Dates, no undefined), as a Lambda result would be. */
export function json<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}
