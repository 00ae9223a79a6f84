// ssm-config: platform configuration kept in SSM Parameter Store and Secrets
// Manager.
//
// Backup:
//   - each parameter path: GetParametersByPath (Recursive, WithDecryption,
//     paginated) for names, types and values, and DescribeParameters (Path
//     filter, recursive, paginated) for the KMS key id, tier, description and
//     allowed pattern that Put needs to recreate a parameter faithfully;
//   - secrets by name/ARN (DescribeSecret + GetSecretValue of AWSCURRENT) and by
//     name prefix (ListSecrets with a name filter, paginated, then GetSecretValue).
// The records go into the vault as two NDJSON entries (parameters.ndjson,
// secrets.ndjson), encrypted there like all data. Values are never logged;
// the manifest (sealed as well) keeps only counts and a SHA-256 per item.
//
// Throttling (ThrottlingException, TooManyUpdates, ...) is retried a few times
// with exponential backoff and jitter, then raised as ThrottledError for the
// state machine's Retry. Not found and access denied become NotFoundError /
// PermanentError naming the path or secret and the API action.
//
// Restore: by default into target.dir as parameters.ndjson / secrets.ndjson
// (mode 0600) — nothing is written to AWS unless the target options say
// `to: aws`; then PutParameter (Overwrite, original Type incl. SecureString,
// KMS key from the backup or `kmsKeyId`) and PutSecretValue, or CreateSecret
// when the secret does not exist, optionally under other paths / names
// (`parameterPathMap`, `secretNameMap`). Validation reads everything back
// (GetParameters WithDecryption, GetSecretValue, or the files) and compares
// the SHA-256 of type and value per item with the manifest.
import { withEntries } from '../core/entry-log.ts';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { SSMClient, ParameterType, ParameterTier } from '@aws-sdk/client-ssm';
import type { SecretsManagerClient, Tag } from '@aws-sdk/client-secrets-manager';
import type { Driver, DriverBackupContext, DriverBackupResult, DriverRestoreContext, DriverValidateContext, DrillTargets, ValidationCheck } from './types.ts';
import { report } from './types.ts';
import type { Entry } from '../core/manifest.ts';
import type { Vault } from '../core/vault.ts';
import { readEntry } from '../core/writer.ts';
import { ConfigError, IntegrityError, MemvaultError, NotFoundError, PermanentError, RetryableError, ThrottledError, UsageError } from '../core/errors.ts';
import { restoreEntriesToDir } from './restore-file.ts';

export const ssmConfigSchema = z.object({
  region: z.string().optional(),
  /** Parameter Store paths, read recursively, e.g. ["/memvault/prod"]. */
  parameterPaths: z.array(z.string().startsWith('/', 'expected a path starting with /')).default([]),
  /** Secrets by name or ARN. */
  secrets: z.array(z.string().min(1)).default([]),
  /** Every secret whose name starts with one of these, e.g. ["prod/memory/"]. */
  secretPrefixes: z.array(z.string().min(1)).default([]),
  /**
   * Where verify-drill restores this component: parameters under
   * <parameterPath>/<tag>/<original name>, secrets named <secretPrefix><tag>/<original name>,
   * all deleted after (secrets without a recovery window).
   */
  drill: z.object({
    /** @default /memvault-drill */
    parameterPath: z.string().regex(/^\/[A-Za-z0-9_.\-/]*[A-Za-z0-9_.-]$/, 'expected a parameter path like /memvault-drill').default('/memvault-drill'),
    /** @default memvault-drill/ */
    secretPrefix: z.string().regex(/^[A-Za-z0-9_.+=@\-/]+\/$/, 'expected a name prefix ending in /, like memvault-drill/').default('memvault-drill/'),
    /** @default the component's region */
    region: z.string().optional(),
    /** KMS key of the scratch SecureString parameters and secrets. @default the keys recorded at backup */
    kmsKeyId: z.string().optional(),
  }).strict().optional(),
});
export type SsmConfigSettings = z.infer<typeof ssmConfigSchema>;

export interface SsmConfigDeps {
  ssm(region?: string): SSMClient | Promise<SSMClient>;
  secrets(region?: string): SecretsManagerClient | Promise<SecretsManagerClient>;
  sleep(ms: number): Promise<void>;
  /** Attempts per call when throttled, before ThrottledError. @default 5 */
  maxAttempts: number;
}

// The SSM and Secrets Manager SDKs load on first use, so other configs never pay their memory.
let ssmModule: Promise<typeof import('@aws-sdk/client-ssm')> | undefined;
const ssmSdk = () => (ssmModule ??= import('@aws-sdk/client-ssm'));
let secretsModule: Promise<typeof import('@aws-sdk/client-secrets-manager')> | undefined;
const secretsSdk = () => (secretsModule ??= import('@aws-sdk/client-secrets-manager'));

const defaultDeps: SsmConfigDeps = {
  ssm: async (region) => new (await ssmSdk()).SSMClient(region ? { region } : {}),
  secrets: async (region) => new (await secretsSdk()).SecretsManagerClient(region ? { region } : {}),
  sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
  maxAttempts: 5,
};

export interface ParameterRecord {
  kind: 'parameter';
  name: string;
  /** The configured path it was found under. */
  sourcePath: string;
  type: ParameterType;
  value: string;
  dataType?: string;
  keyId?: string;
  description?: string;
  tier?: ParameterTier;
  allowedPattern?: string;
  version?: number;
}

export interface SecretRecord {
  kind: 'secret';
  name: string;
  arn?: string;
  secretString?: string;
  /** base64 */
  secretBinary?: string;
  kmsKeyId?: string;
  description?: string;
  tags?: Tag[];
  versionId?: string;
}

const PARAMS = 'parameters.ndjson';
const SECRETS = 'secrets.ndjson';

export function parameterChecksum(r: { type?: string; value?: string; dataType?: string }): string {
  return createHash('sha256').update(JSON.stringify([r.type, r.value, r.dataType ?? 'text'])).digest('hex');
}

export function secretChecksum(r: { secretString?: string; secretBinary?: string }): string {
  return createHash('sha256').update(JSON.stringify(r.secretString !== undefined ? ['string', r.secretString] : ['binary', r.secretBinary ?? ''])).digest('hex');
}

const THROTTLE = new Set([
  'ThrottlingException', 'Throttling', 'TooManyRequestsException', 'ThrottledException', 'RequestLimitExceeded', 'TooManyUpdates',
  'RequestThrottledException', 'SlowDown',
]);
const DENIED = new Set(['AccessDeniedException', 'AccessDenied', 'UnrecognizedClientException', 'ExpiredTokenException', 'InvalidClientTokenId', 'NotAuthorized']);

interface AwsErr { name?: string; message?: string; $metadata?: { httpStatusCode?: number } }

/** Maps an AWS error to memvault's families; `what` names the action and the path/secret. */
function awsError(err: unknown, what: string): Error {
  if (err instanceof MemvaultError) return err;
  const e = (err ?? {}) as AwsErr;
  const detail = `${e.name ?? 'Error'}: ${e.message ?? String(err)}`;
  if (e.name === 'ParameterNotFound') return new NotFoundError(`${what}: parameter not found`);
  if (e.name === 'ResourceNotFoundException') return new NotFoundError(`${what}: secret not found (${e.message ?? ''})`);
  if ((e.name && DENIED.has(e.name)) || e.$metadata?.httpStatusCode === 403) {
    return new PermanentError(`${what}: access denied; grant the role this action on this resource (${detail})`, { cause: err });
  }
  if (e.name === 'DecryptionFailure' || e.name === 'InvalidKeyId' || e.name === 'KMSAccessDeniedException') {
    return new PermanentError(`${what}: cannot use the KMS key (${detail}); the role needs kms:Decrypt / kms:Encrypt on it`, { cause: err });
  }
  if (e.name === 'InternalServerError' || e.name === 'InternalFailure' || e.name === 'InternalServiceError' || (e.$metadata?.httpStatusCode ?? 0) >= 500) {
    return new RetryableError(`${what}: ${detail}`, { cause: err });
  }
  return new PermanentError(`${what}: ${detail}`, { cause: err });
}

async function call<T>(deps: SsmConfigDeps, what: string, fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      const name = (err as AwsErr)?.name;
      if (name && THROTTLE.has(name)) {
        if (attempt >= deps.maxAttempts) throw new ThrottledError(`${what}: still throttled by AWS after ${attempt} attempts (${name})`, { cause: err });
        await deps.sleep(Math.min(20_000, 200 * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2));
        continue;
      }
      throw awsError(err, what);
    }
  }
}

function ndjson(records: unknown[]): Buffer {
  return Buffer.from(records.map((r) => `${JSON.stringify(r)}\n`).join(''));
}

async function readRecords<T>(vault: Vault, e: Entry | undefined): Promise<T[]> {
  if (!e) return [];
  const parts: Buffer[] = [];
  for await (const b of readEntry(vault, e)) parts.push(b);
  return Buffer.concat(parts).toString('utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as T);
}

async function backupParameters(deps: SsmConfigDeps, ssm: SSMClient, p: string, warnings: string[]): Promise<ParameterRecord[]> {
  const meta = new Map<string, { keyId?: string; description?: string; tier?: ParameterTier; allowedPattern?: string }>();
  let token: string | undefined;
  do {
    const page = await call(deps, `ssm:DescribeParameters ${p}`, async () => ssm.send(new (await ssmSdk()).DescribeParametersCommand({
      ParameterFilters: [{ Key: 'Path', Option: 'Recursive', Values: [p] }], MaxResults: 50, NextToken: token,
    })));
    for (const m of page.Parameters ?? []) {
      if (m.Name) meta.set(m.Name, { keyId: m.KeyId, description: m.Description, tier: m.Tier, allowedPattern: m.AllowedPattern });
    }
    token = page.NextToken;
  } while (token);
  const out: ParameterRecord[] = [];
  token = undefined;
  do {
    const page = await call(deps, `ssm:GetParametersByPath ${p}`, async () => ssm.send(new (await ssmSdk()).GetParametersByPathCommand({
      Path: p, Recursive: true, WithDecryption: true, MaxResults: 10, NextToken: token,
    })));
    for (const prm of page.Parameters ?? []) {
      if (!prm.Name || prm.Type === undefined || prm.Value === undefined) continue;
      const m = meta.get(prm.Name) ?? {};
      out.push({
        kind: 'parameter', name: prm.Name, sourcePath: p, type: prm.Type, value: prm.Value, dataType: prm.DataType,
        keyId: prm.Type === 'SecureString' ? m.keyId : undefined, description: m.description, tier: m.tier, allowedPattern: m.allowedPattern, version: prm.Version,
      });
    }
    token = page.NextToken;
  } while (token);
  if (out.length === 0) warnings.push(`parameter path ${p}: no parameters found`);
  return out;
}

async function secretValue(deps: SsmConfigDeps, sm: SecretsManagerClient, id: string) {
  return call(deps, `secretsmanager:GetSecretValue ${id}`, async () => sm.send(new (await secretsSdk()).GetSecretValueCommand({ SecretId: id })));
}

async function backupSecrets(deps: SsmConfigDeps, sm: SecretsManagerClient, s: SsmConfigSettings, warnings: string[]): Promise<SecretRecord[]> {
  const out = new Map<string, SecretRecord>();
  const toRecord = (d: { Name?: string; ARN?: string; KmsKeyId?: string; Description?: string; Tags?: Tag[] }, v: { SecretString?: string; SecretBinary?: Uint8Array; VersionId?: string }): SecretRecord => ({
    kind: 'secret', name: d.Name!, arn: d.ARN, kmsKeyId: d.KmsKeyId, description: d.Description, tags: d.Tags?.length ? d.Tags : undefined,
    versionId: v.VersionId,
    ...(v.SecretString !== undefined ? { secretString: v.SecretString } : { secretBinary: Buffer.from(v.SecretBinary ?? new Uint8Array()).toString('base64') }),
  });
  for (const id of s.secrets) {
    const d = await call(deps, `secretsmanager:DescribeSecret ${id}`, async () => sm.send(new (await secretsSdk()).DescribeSecretCommand({ SecretId: id })));
    const v = await secretValue(deps, sm, id);
    const r = toRecord({ ...d, Name: d.Name ?? v.Name ?? id }, v);
    out.set(r.name, r);
  }
  for (const prefix of s.secretPrefixes) {
    let token: string | undefined;
    let found = 0;
    do {
      const page = await call(deps, `secretsmanager:ListSecrets ${prefix}*`, async () => sm.send(new (await secretsSdk()).ListSecretsCommand({
        Filters: [{ Key: 'name', Values: [prefix] }], MaxResults: 100, NextToken: token,
      })));
      for (const d of page.SecretList ?? []) {
        if (!d.Name?.startsWith(prefix) || out.has(d.Name)) continue;
        found++;
        let v;
        try {
          v = await secretValue(deps, sm, d.ARN ?? d.Name);
        } catch (err) {
          if (err instanceof NotFoundError) { warnings.push(`secret ${d.Name}: deleted during the backup`); continue; }
          throw err;
        }
        out.set(d.Name, toRecord(d, v));
      }
      token = page.NextToken;
    } while (token);
    if (found === 0) warnings.push(`secret prefix ${prefix}: no secrets found`);
  }
  return [...out.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
}

export interface SsmRestoreOptions {
  /** 'dir' (default): files in target.dir; 'aws': PutParameter / PutSecretValue / CreateSecret. */
  to?: 'dir' | 'aws';
  region?: string;
  /** Replace leading parameter paths: { "/memvault/prod": "/memvault/dr" }. */
  parameterPathMap?: Record<string, string>;
  /** Replace leading secret-name prefixes: { "prod/memory/": "dr/memory/" }. */
  secretNameMap?: Record<string, string>;
  /** KMS key for SecureString parameters (default: the key recorded at backup). */
  kmsKeyId?: string;
  /** KMS key for secrets that have to be created (default: the key recorded at backup). */
  secretKmsKeyId?: string;
}

const restoreOptionsSchema = z.object({
  to: z.enum(['dir', 'aws']).default('dir'),
  region: z.string().optional(),
  parameterPathMap: z.record(z.string().startsWith('/'), z.string().startsWith('/')).default({}),
  secretNameMap: z.record(z.string(), z.string()).default({}),
  kmsKeyId: z.string().optional(),
  secretKmsKeyId: z.string().optional(),
}).strict();

type SsmDrill = NonNullable<SsmConfigSettings['drill']>;

/**
 * Restore options; a drill's ({"scratch": true, "tag": ...}) restore to AWS
 * under the component's drill parameter path and secret prefix, in a
 * sub-path / sub-prefix named by the run's tag.
 */
function parseRestoreOptions(component: string, options: Record<string, unknown> | undefined, drill?: SsmDrill) {
  if (options?.scratch === true) {
    const tag = options.tag;
    if (!drill) throw new UsageError(`restore options for ${component} (ssm-config): scratch: the component has no drill setting (components.${component}.drill)`);
    if (typeof tag !== 'string' || !/^d[0-9a-f]{11}$/.test(tag)) throw new UsageError(`restore options for ${component} (ssm-config): tag: expected the drill's tag, got ${JSON.stringify(tag)}`);
    return {
      ...restoreOptionsSchema.parse({
        to: 'aws', region: drill.region, parameterPathMap: { '/': `${drill.parameterPath}/${tag}` }, secretNameMap: { '': `${drill.secretPrefix}${tag}/` },
        kmsKeyId: drill.kmsKeyId, secretKmsKeyId: drill.kmsKeyId,
      }),
      scratch: true,
    };
  }
  const r = restoreOptionsSchema.safeParse(options ?? {});
  if (!r.success) {
    throw new UsageError(`restore options for ${component} (ssm-config): ${r.error.issues.map((i) => `${i.path.join('.') || '(options)'}: ${i.message}`).join('; ')}`);
  }
  return { ...r.data, scratch: false };
}

/** New name of a parameter: the longest mapped path that is a whole-segment prefix of the name. */
export function mapParameterName(name: string, map: Record<string, string>): string {
  let best: string | undefined;
  for (const k of Object.keys(map)) {
    const from = k.replace(/\/+$/, '');
    if ((name === from || name.startsWith(`${from}/`)) && (best === undefined || from.length > best.replace(/\/+$/, '').length)) best = k;
  }
  if (best === undefined) return name;
  const from = best.replace(/\/+$/, '');
  return map[best].replace(/\/+$/, '') + name.slice(from.length);
}

export function mapSecretName(name: string, map: Record<string, string>): string {
  const k = Object.keys(map).filter((p) => name.startsWith(p)).sort((a, b) => b.length - a.length)[0];
  return k === undefined ? name : map[k] + name.slice(k.length);
}

const DEFAULT_SSM_KEY = 'alias/aws/ssm';

export function createSsmConfigDriver(overrides: Partial<SsmConfigDeps> = {}): Driver<SsmConfigSettings> & DrillTargets<SsmConfigSettings> {
  const deps: SsmConfigDeps = { ...defaultDeps, ...overrides };
  return {
    kind: 'ssm-config',
    mode: 'stream',
    schema: ssmConfigSchema,
    networkTargetFields: '"to": "aws" (with region, parameterPathMap, secretNameMap, kmsKeyId)',
    isNetworkTarget: (o) => !!o && (o.to === 'aws' || o.scratch === true),
    drillTarget: (ctx) => (ctx.settings.drill ? { scratch: true, tag: ctx.tag } : undefined),

    async cleanupTarget(ctx) {
      const o = parseRestoreOptions(ctx.component, ctx.target.options, ctx.settings.drill);
      if (!o.scratch) throw new UsageError(`${ctx.component}: drill cleanup: the target is not the component's drill target`);
      const region = o.region ?? ctx.settings.region;
      const params = Object.keys((ctx.manifest.driver.parameters ?? {}) as Record<string, unknown>).map((n) => mapParameterName(n, o.parameterPathMap));
      const secrets = Object.keys((ctx.manifest.driver.secrets ?? {}) as Record<string, unknown>).map((n) => mapSecretName(n, o.secretNameMap));
      let deletedP = 0;
      if (params.length > 0) {
        const ssm = await deps.ssm(region);
        for (let i = 0; i < params.length; i += 10) {
          const Names = params.slice(i, i + 10);
          const r = await call(deps, `ssm:DeleteParameters ${Names[0]}...`, async () => ssm.send(new (await ssmSdk()).DeleteParametersCommand({ Names })));
          deletedP += r.DeletedParameters?.length ?? 0;
        }
      }
      let deletedS = 0;
      if (secrets.length > 0) {
        const sm = await deps.secrets(region);
        for (const SecretId of secrets) {
          try {
            await call(deps, `secretsmanager:DeleteSecret ${SecretId}`, async () => sm.send(new (await secretsSdk()).DeleteSecretCommand({ SecretId, ForceDeleteWithoutRecovery: true })));
            deletedS++;
          } catch (err) {
            if (!(err instanceof NotFoundError)) throw err;
          }
        }
      }
      return `${deletedP} parameters under ${o.parameterPathMap['/']} and ${deletedS} secrets named ${o.secretNameMap['']}* deleted`;
    },

    async backup(ctx: DriverBackupContext<SsmConfigSettings>): Promise<DriverBackupResult> {
      const s = ctx.settings;
      if (s.parameterPaths.length + s.secrets.length + s.secretPrefixes.length === 0) {
        throw new ConfigError(`components.${ctx.component}: set parameterPaths, secrets or secretPrefixes (nothing to back up)`);
      }
      const warnings: string[] = [];
      const params: ParameterRecord[] = [];
      if (s.parameterPaths.length > 0) {
        const ssm = await deps.ssm(s.region);
        const seen = new Set<string>();
        for (const p of s.parameterPaths) {
          for (const r of await backupParameters(deps, ssm, p, warnings)) {
            if (!seen.has(r.name)) { seen.add(r.name); params.push(r); }
          }
        }
      }
      const secrets = s.secrets.length + s.secretPrefixes.length > 0 ? await backupSecrets(deps, await deps.secrets(s.region), s, warnings) : [];
      params.sort((a, b) => (a.name < b.name ? -1 : 1));
      const entries: Entry[] = [];
      for (const [p, records] of [[PARAMS, params], [SECRETS, secrets]] as const) {
        const r = await ctx.writer.writeBuffer(ndjson(records));
        entries.push({ path: p, type: 'file', mode: 0o600, size: r.size, sha256: r.sha256, chunks: r.chunks, meta: { count: records.length } });
      }
      ctx.log.info('ssm-config exported', { component: ctx.component, parameters: params.length, secrets: secrets.length });
      return {
        entries,
        meta: {
          parameters: Object.fromEntries(params.map((r) => [r.name, { type: r.type, sha256: parameterChecksum(r) }])),
          secrets: Object.fromEntries(secrets.map((r) => [r.name, { sha256: secretChecksum(r) }])),
          counts: { parameters: params.length, secrets: secrets.length },
        },
        warnings,
      };
    },

    async restore(ctx: DriverRestoreContext<SsmConfigSettings>) {
      const o = parseRestoreOptions(ctx.component, ctx.target.options, ctx.settings.drill);
      const { entries } = await withEntries(ctx.vault, ctx.manifest);
      const pe = entries.find((e) => e.path === PARAMS);
      const se = entries.find((e) => e.path === SECRETS);
      if (!pe || !se) throw new IntegrityError(`${ctx.component}: manifest ${ctx.manifest.id} lacks ${PARAMS} or ${SECRETS}`);
      if (o.to === 'dir') {
        await fs.mkdir(ctx.target.dir, { recursive: true, mode: 0o700 });
        const bytes = await restoreEntriesToDir(ctx.vault, ctx.component, [pe, se], ctx.target.dir);
        return { location: ctx.target.dir, bytes, entries: 2 };
      }
      const params = await readRecords<ParameterRecord>(ctx.vault, pe);
      const secrets = await readRecords<SecretRecord>(ctx.vault, se);
      const region = o.region ?? ctx.settings.region;
      if (params.length > 0) {
        const ssm = await deps.ssm(region);
        for (const r of params) {
          const Name = mapParameterName(r.name, o.parameterPathMap);
          const keyId = r.type === 'SecureString' ? (o.kmsKeyId ?? (r.keyId && r.keyId !== DEFAULT_SSM_KEY ? r.keyId : undefined)) : undefined;
          await call(deps, `ssm:PutParameter ${Name}`, async () => ssm.send(new (await ssmSdk()).PutParameterCommand({
            Name, Value: r.value, Type: r.type, Overwrite: true, KeyId: keyId, DataType: r.dataType,
            Description: r.description, Tier: r.tier, AllowedPattern: r.allowedPattern,
          })));
        }
      }
      if (secrets.length > 0) {
        const sm = await deps.secrets(region);
        for (const r of secrets) {
          const Name = mapSecretName(r.name, o.secretNameMap);
          const value = r.secretString !== undefined ? { SecretString: r.secretString } : { SecretBinary: Buffer.from(r.secretBinary ?? '', 'base64') };
          try {
            await call(deps, `secretsmanager:PutSecretValue ${Name}`, async () => sm.send(new (await secretsSdk()).PutSecretValueCommand({ SecretId: Name, ...value })));
          } catch (err) {
            if (!(err instanceof NotFoundError)) throw err;
            await call(deps, `secretsmanager:CreateSecret ${Name}`, async () => sm.send(new (await secretsSdk()).CreateSecretCommand({
              Name, ...value, KmsKeyId: o.secretKmsKeyId ?? r.kmsKeyId, Description: r.description, Tags: r.tags,
            })));
          }
        }
      }
      ctx.log.info('ssm-config restored', { component: ctx.component, parameters: params.length, secrets: secrets.length });
      return { location: `aws${region ? ` ${region}` : ''}: ${params.length} parameters, ${secrets.length} secrets`, bytes: pe.size + se.size, entries: params.length + secrets.length };
    },

    async validate(ctx: DriverValidateContext<SsmConfigSettings>) {
      const o = parseRestoreOptions(ctx.component, ctx.target.options, ctx.settings.drill);
      const expP = (ctx.manifest.driver.parameters ?? {}) as Record<string, { type: string; sha256: string }>;
      const expS = (ctx.manifest.driver.secrets ?? {}) as Record<string, { sha256: string }>;
      const gotP = new Map<string, string>();
      const gotS = new Map<string, string>();
      const problems: string[] = [];
      if (o.to === 'dir') {
        const read = async (f: string) => (await fs.readFile(path.join(ctx.location, f), 'utf8').catch(() => '')).split('\n').filter(Boolean).map((l) => JSON.parse(l));
        for (const r of (await read(PARAMS)) as ParameterRecord[]) gotP.set(r.name, parameterChecksum(r));
        for (const r of (await read(SECRETS)) as SecretRecord[]) gotS.set(r.name, secretChecksum(r));
      } else {
        const region = o.region ?? ctx.settings.region;
        const names = Object.keys(expP);
        if (names.length > 0) {
          const ssm = await deps.ssm(region);
          const byNew = new Map(names.map((n) => [mapParameterName(n, o.parameterPathMap), n]));
          const all = [...byNew.keys()];
          for (let i = 0; i < all.length; i += 10) {
            const Names = all.slice(i, i + 10);
            const res = await call(deps, `ssm:GetParameters ${Names[0]}...`, async () => ssm.send(new (await ssmSdk()).GetParametersCommand({ Names, WithDecryption: true })));
            for (const p of res.Parameters ?? []) {
              const orig = byNew.get(p.Name!);
              if (orig) gotP.set(orig, parameterChecksum({ type: p.Type, value: p.Value, dataType: p.DataType }));
            }
            for (const n of res.InvalidParameters ?? []) problems.push(`parameter ${n}: not found`);
          }
        }
        if (Object.keys(expS).length > 0) {
          const sm = await deps.secrets(region);
          for (const n of Object.keys(expS)) {
            const id = mapSecretName(n, o.secretNameMap);
            try {
              const v = await secretValue(deps, sm, id);
              gotS.set(n, secretChecksum(v.SecretString !== undefined ? { secretString: v.SecretString } : { secretBinary: Buffer.from(v.SecretBinary ?? new Uint8Array()).toString('base64') }));
            } catch (err) {
              if (err instanceof NotFoundError) { problems.push(`secret ${id}: not found`); continue; }
              throw err;
            }
          }
        }
      }
      let okP = 0;
      for (const [n, e] of Object.entries(expP)) {
        const g = gotP.get(n);
        if (g === undefined) { if (o.to === 'dir') problems.push(`parameter ${n}: missing`); } else if (g !== e.sha256) problems.push(`parameter ${mapParameterName(n, o.parameterPathMap)}: type or value differs`); else okP++;
      }
      let okS = 0;
      for (const [n, e] of Object.entries(expS)) {
        const g = gotS.get(n);
        if (g === undefined) { if (o.to === 'dir') problems.push(`secret ${n}: missing`); } else if (g !== e.sha256) problems.push(`secret ${mapSecretName(n, o.secretNameMap)}: value differs`); else okS++;
      }
      const checks: ValidationCheck[] = [
        { name: 'parameters read back with matching type and value', ok: okP === Object.keys(expP).length, expected: Object.keys(expP).length, actual: okP },
        { name: 'secrets read back with matching value', ok: okS === Object.keys(expS).length, expected: Object.keys(expS).length, actual: okS },
        { name: 'problems', ok: problems.length === 0, actual: problems.slice(0, 20) },
      ];
      return report(checks);
    },
  };
}

export const ssmConfigDriver = createSsmConfigDriver();
