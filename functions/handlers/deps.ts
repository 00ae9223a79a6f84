// Shared plumbing of the Lambda handlers (not a handler itself).
//
// - loadConfigFromEnv() / configFromEnv(): the one place handlers read the
//   environment. On AWS the CDK app sets MEMVAULT_CONFIG_S3 (s3://bucket/key
//   of the validated configuration as JSON, a file asset uploaded by
//   `cdk deploy`) and MEMVAULT_CONFIG_SHA256 (its digest, checked before the
//   config is used): Lambda limits a function's whole environment to 4 KB,
//   which a real config exceeds. MEMVAULT_CONFIG_JSON (the JSON itself) and
//   MEMVAULT_CONFIG (a path to memvault.yaml) serve the local runtime and
//   tests. With none set it throws a ConfigError naming them, at cold start.
// - HandlerDeps: what every makeHandler(deps) receives (config, clock, alert
//   sink, logger, drivers, vault opener), so tests inject fakes and a fixed clock.
// - parseEvent(): zod-parses a state input; problems name the field.
// - lazyHandler(): the `handler` export: on Lambda (AWS_LAMBDA_FUNCTION_NAME set)
//   the configuration starts loading when the module loads, i.e. at cold start,
//   once per instance; elsewhere on the first call, so importing a handler
//   module never throws. Each invocation runs in its own secret scope
//   (adapters/secrets.ts): a database secret is read once per invocation.
import { z } from 'zod';
import { createHash } from 'node:crypto';
import path from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import { loadConfigFile, parseConfig, type MemvaultConfig } from '../core/config.ts';
import { ConfigError, IntegrityError, RetryableError, UsageError } from '../core/errors.ts';
import { formatIssues } from '../core/config.ts';
import type { AlertSink, Clock } from '../core/ports.ts';
import { systemClock } from '../core/ports.ts';
import type { Driver, Logger } from '../components/types.ts';
import { driverFor as registryDriverFor, kindSchemas } from '../components/registry.ts';
import { alertSink, openVault as servicesOpenVault, type Side } from '../services.ts';
import type { Vault } from '../core/vault.ts';
import { jsonLogger } from '../logger.ts';
import { setInvocationDeadline } from '../core/lock.ts';
import { secretScope } from '../adapters/secrets.ts';
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

/** Parses the configuration as JSON (MEMVAULT_CONFIG_JSON, or the config object); `source` names where it came from. */
function configFromJson(json: string, source: string): MemvaultConfig {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(json);
  } catch (err) {
    throw new ConfigError(`${source}: not valid JSON (${(err as Error).message}); set it to the validated memvault.yaml as JSON`);
  }
  const { baseDir, file, ...doc } = raw as { baseDir?: string; file?: string };
  return parseConfig(doc, kindSchemas, typeof baseDir === 'string' ? baseDir : process.cwd(), typeof file === 'string' ? file : undefined);
}

const NO_CONFIG = 'neither MEMVAULT_CONFIG_S3 (s3://bucket/key of the configuration, set by the CDK app with MEMVAULT_CONFIG_SHA256), ' +
  'MEMVAULT_CONFIG_JSON (the configuration as JSON) nor MEMVAULT_CONFIG (a path to memvault.yaml) is set in the environment of this handler';

/**
 * Reads the configuration from the environment, synchronously: MEMVAULT_CONFIG_JSON
 * or MEMVAULT_CONFIG (the local runtime and tests). A deployed function's
 * MEMVAULT_CONFIG_S3 needs loadConfigFromEnv.
 */
export function configFromEnv(env: NodeJS.ProcessEnv = process.env): MemvaultConfig {
  const json = env.MEMVAULT_CONFIG_JSON;
  if (json !== undefined && json !== '') return configFromJson(json, 'MEMVAULT_CONFIG_JSON');
  const file = env.MEMVAULT_CONFIG;
  if (file !== undefined && file !== '') return loadConfigFile(path.resolve(file), kindSchemas);
  if (env.MEMVAULT_CONFIG_S3) throw new ConfigError('MEMVAULT_CONFIG_S3: the configuration is an S3 object; load it with loadConfigFromEnv (async)');
  throw new ConfigError(NO_CONFIG);
}

export interface LoadConfigOptions {
  /** The S3 client that reads MEMVAULT_CONFIG_S3. @default a client for AWS_REGION (the SDK honours AWS_ENDPOINT_URL_S3) */
  s3?: S3Client;
}

/**
 * Reads the configuration from the environment: MEMVAULT_CONFIG_S3 (the
 * deployed functions; the object's SHA-256 must equal MEMVAULT_CONFIG_SHA256),
 * else as configFromEnv.
 */
export async function loadConfigFromEnv(env: NodeJS.ProcessEnv = process.env, o: LoadConfigOptions = {}): Promise<MemvaultConfig> {
  const url = env.MEMVAULT_CONFIG_S3;
  if (url === undefined || url === '') return configFromEnv(env);
  const m = /^s3:\/\/([^/]+)\/(.+)$/.exec(url);
  if (!m) throw new ConfigError(`MEMVAULT_CONFIG_S3: expected s3://bucket/key, got ${JSON.stringify(url)}`);
  const want = (env.MEMVAULT_CONFIG_SHA256 ?? '').toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(want)) {
    throw new ConfigError(`MEMVAULT_CONFIG_SHA256: expected the SHA-256 (64 hex digits) of the config object ${url}, got ${JSON.stringify(env.MEMVAULT_CONFIG_SHA256 ?? '')}`);
  }
  const sdk = await import('@aws-sdk/client-s3');
  const client = o.s3 ?? new sdk.S3Client({ region: env.AWS_REGION });
  let body: Buffer;
  try {
    const out = await client.send(new sdk.GetObjectCommand({ Bucket: m[1], Key: m[2] }));
    body = Buffer.from(await out.Body!.transformToByteArray());
  } catch (err) {
    const name = (err as Error).name;
    if (name === 'NoSuchKey' || name === 'NotFound' || name === 'NoSuchBucket') {
      throw new ConfigError(`MEMVAULT_CONFIG_S3: the config object ${url} does not exist (${name}); deploy the stack again (cdk deploy uploads it)`);
    }
    // Denied, throttled or unreachable: not the config's fault, and a later cold start may succeed.
    throw new RetryableError(`MEMVAULT_CONFIG_S3: cannot read the config object ${url}: ${name}: ${(err as Error).message}`, { cause: err });
  } finally {
    if (!o.s3) client.destroy();
  }
  const got = createHash('sha256').update(body).digest('hex');
  if (got !== want) {
    throw new IntegrityError(`MEMVAULT_CONFIG_S3: the config object ${url} has SHA-256 ${got}, but MEMVAULT_CONFIG_SHA256 is ${want}: it is not the config this function was deployed with; refusing it (deploy again to restore it)`, m[2]);
  }
  return configFromJson(body.toString('utf8'), `MEMVAULT_CONFIG_S3 (${url})`);
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
 * container (a failed load is tried again by the next invocation: S3 may
 * have been unreachable). Each invocation runs in its own secret scope and
 * records its deadline, so vault locks taken during it expire when a
 * timed-out invocation can no longer release them (core/lock.ts).
 */
export function lazyHandler<R>(make: (deps: HandlerDeps) => Handler<unknown, R>, env: NodeJS.ProcessEnv = process.env, o: LoadConfigOptions = {}): (event: unknown, context?: InvocationContext) => Promise<R> {
  let fn: Promise<Handler<unknown, R>> | undefined;
  // Without a config object the environment is read synchronously, so a
  // missing or bad config fails the cold start itself, loudly.
  if (env.AWS_LAMBDA_FUNCTION_NAME && !env.MEMVAULT_CONFIG_S3) fn = Promise.resolve(make(defaultDeps(configFromEnv(env))));
  const build = () => {
    if (!fn) {
      const p = loadConfigFromEnv(env, o).then((cfg) => make(defaultDeps(cfg)));
      p.catch(() => { if (fn === p) fn = undefined; });
      fn = p;
    }
    return fn;
  };
  if (env.AWS_LAMBDA_FUNCTION_NAME) build();
  return (event, context) => {
    const left = context?.getRemainingTimeInMillis?.();
    setInvocationDeadline(typeof left === 'number' && Number.isFinite(left) ? Date.now() + left : undefined);
    return secretScope(async () => (await build())(event));
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
