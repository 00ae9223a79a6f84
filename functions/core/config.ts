// memvault.yaml: one file, validated with zod. Every problem is reported with
// its path (e.g. `components.memory-db.retention.days: expected a positive
// integer, got -3`). Per-kind source settings are validated by the schema each
// driver registers, so core stays free of driver code.
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { z } from 'zod';
import { ConfigError } from './errors.ts';
import { parseCron } from './cron.ts';
import { awsSchema, type AwsConfig } from './aws-config.ts';
import { MASK_RULE_SCHEMAS } from './mask.ts';

export const COMPONENT_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;

const vaultLocation = z.union([
  z.string().transform((url) => ({ url })),
  z.object({
    url: z.string(),
    /** An S3-compatible endpoint (s3://), or the blob service endpoint (azblob://: Azurite, sovereign clouds). */
    endpoint: z.string().url().optional(),
    region: z.string().optional(),
    /** Path-style addressing for S3-compatible servers. */
    forcePathStyle: z.boolean().optional(),
  }).strict(),
]).superRefine((v, ctx) => {
  if (!/^(file|s3|azblob):\/\//.test(v.url)) {
    ctx.addIssue({ code: 'custom', message: `expected file://DIR, s3://bucket/prefix or azblob://account/container/prefix, got "${v.url}"` });
    return;
  }
  // The account and container names are checked when the vault is opened (azure-location.ts).
  if (v.url.startsWith('azblob://') && !/^azblob:\/\/[^/]+\/[^/]+/.test(v.url)) {
    ctx.addIssue({ code: 'custom', message: `expected azblob://account/container/prefix (prefix optional), got "${v.url}"` });
  }
});
export type VaultLocation = { url: string; endpoint?: string; region?: string; forcePathStyle?: boolean };

const positiveInt = z.number({ error: (i) => `expected a positive integer, got ${JSON.stringify(i.input)}` })
  .int({ error: (i) => `expected a positive integer, got ${JSON.stringify(i.input)}` })
  .positive({ error: (i) => `expected a positive integer, got ${JSON.stringify(i.input)}` });

export const retentionSchema = z.object({
  /** Forget backups older than this many days (the newest backup is always kept). */
  days: positiveInt.optional(),
  keepLast: positiveInt.optional(),
  keepDaily: positiveInt.optional(),
  keepWeekly: positiveInt.optional(),
  keepMonthly: positiveInt.optional(),
}).strict();
export type Retention = z.infer<typeof retentionSchema>;

const duration = z.string().regex(/^\d+(s|m|h|d)$/, 'expected a duration like 90s, 90m, 26h or 8d');

const cronField = z.string().superRefine((s, ctx) => {
  try {
    parseCron(s);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
  }
});

/**
 * A recovery check: run after every restore and in every drill of the
 * component, on the restored data; a failure fails the restore or drill with
 * the check named. Exactly one of http, sql, command.
 */
export const recoveryCheckSchema = z.object({
  name: z.string().min(1),
  /** An HTTP(S) probe: the service answers on the restored data. */
  http: z.object({
    url: z.string().url(),
    method: z.enum(['GET', 'HEAD', 'POST']).default('GET'),
    expectStatus: z.number().int().min(100).max(599).default(200),
    bodyContains: z.string().optional(),
    timeoutSeconds: z.number().positive().max(300).default(10),
  }).strict().optional(),
  /** A query on the restored database (sqlite: the restored file; postgres, vector: the restore target url). */
  sql: z.object({
    query: z.string().min(1),
    /** The first column of the first row, as text, equals this. */
    expect: z.union([z.string(), z.number()]).optional(),
    /** ... or, as a number, is at least this. */
    expectAtLeast: z.number().optional(),
  }).strict().optional(),
  /** A command (not on Lambda): MEMVAULT_COMPONENT, MEMVAULT_RESTORED (the restored location) in its environment. */
  command: z.object({
    argv: z.array(z.string()).min(1),
    expectExitCode: z.number().int().default(0),
    stdoutContains: z.string().optional(),
    timeoutSeconds: z.number().positive().max(3600).default(60),
  }).strict().optional(),
}).strict().refine((c) => [c.http, c.sql, c.command].filter((x) => x !== undefined).length === 1, {
  message: 'a check has exactly one of http, sql or command',
});
export type RecoveryCheck = z.infer<typeof recoveryCheckSchema>;

/** arn:aws:lambda:<region>:<account>:function:<name>[:<version or alias>] */
export const LAMBDA_FUNCTION_ARN = /^arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:[A-Za-z0-9_-]{1,64}(:[A-Za-z0-9_$-]{1,128})?$/;

/**
 * A hook: a command (not on Lambda), an HTTP(S) call, or a Lambda function invoked
 * synchronously (on AWS the handlers' roles may invoke exactly the functions the config
 * names), run around a component's backups and restores.
 */
export const hookSchema = z.object({
  name: z.string().min(1),
  command: z.object({ argv: z.array(z.string()).min(1), expectExitCode: z.number().int().default(0), timeoutSeconds: z.number().positive().max(3600).default(120) }).strict().optional(),
  http: z.object({
    url: z.string().url(), method: z.enum(['GET', 'POST', 'PUT']).default('POST'),
    expectStatus: z.number().int().min(100).max(599).default(200), timeoutSeconds: z.number().positive().max(300).default(30),
  }).strict().optional(),
  lambda: z.object({
    /** The function's ARN (a version or alias may follow). */
    functionArn: z.string().regex(LAMBDA_FUNCTION_ARN, 'expected arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]'),
    /** Extra fields of the event (besides component, kind, hook, result, location). */
    payload: z.record(z.string(), z.unknown()).optional(),
    timeoutSeconds: z.number().positive().max(900).default(60),
  }).strict().optional(),
}).strict().refine((h) => [h.command, h.http, h.lambda].filter((x) => x !== undefined).length === 1, { message: 'a hook has exactly one of command, http or lambda' });
export type Hook = z.infer<typeof hookSchema>;
export const HOOK_PHASES = ['beforeBackup', 'afterBackup', 'beforeRestore', 'afterRestore'] as const;
export type HookPhase = (typeof HOOK_PHASES)[number];

export const componentBaseSchema = z.object({
  kind: z.string(),
  critical: z.boolean().default(false),
  /** Cron expression (5 fields, minute first) for scheduled backups. */
  schedule: cronField.optional(),
  /** IANA time zone the schedule is read in. @default UTC */
  timezone: z.string().default('UTC'),
  /** Backup type the schedule runs. @default incremental */
  scheduleType: z.enum(['full', 'incremental']).default('incremental'),
  /** Recovery point objective: alert when the newest backup is older. */
  rpo: duration.optional(),
  /** Recovery time objective: the report compares measured restore times with it. */
  rto: duration.optional(),
  retention: retentionSchema.default({}),
  /** Free-form description for reports. */
  description: z.string().optional(),
  /**
   * Hooks around backups and restores (not drills): "stop the service, restore,
   * verify, restart". A failing before-hook stops the operation; after-hooks run
   * whether it worked or not (MEMVAULT_RESULT=ok|failed).
   */
  hooks: z.object({
    beforeBackup: z.array(hookSchema).max(20).default([]),
    afterBackup: z.array(hookSchema).max(20).default([]),
    beforeRestore: z.array(hookSchema).max(20).default([]),
    afterRestore: z.array(hookSchema).max(20).default([]),
  }).strict().optional(),
  /** Recovery checks run after every restore and in every drill (names unique). */
  checks: z.array(recoveryCheckSchema).max(50).default([]).refine((cs) => new Set(cs.map((c) => c.name)).size === cs.length, { message: 'check names must be unique' }),
  /**
   * Masking rules of sanitized restores (drills, sandbox restores): what is
   * replaced before anything reads the restored data. Each kind's rule shape is
   * in core/mask.ts (MASK_RULE_SCHEMAS); a production restore never masks.
   */
  mask: z.array(z.unknown()).max(200).optional(),
});

const alertSinkSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('stdout') }).strict(),
  z.object({ type: z.literal('file'), path: z.string() }).strict(),
  z.object({ type: z.literal('sns'), topicArn: z.string(), region: z.string().optional() }).strict(),
]);

const encryptionSchema = z.object({
  /** Local key file (created by `memvault init`, mode 0600). */
  key: z.string().optional(),
  /** KMS keys: one per vault region (primary, secondary). */
  kms: z.object({
    primary: z.string(),
    secondary: z.string().optional(),
    region: z.string().optional(),
    secondaryRegion: z.string().optional(),
  }).strict().optional(),
}).strict().refine((e) => e.key !== undefined || e.kms !== undefined, {
  message: 'set encryption.key (a local key file) or encryption.kms (KMS key ids)',
});

export type KindSchemas = Record<string, z.ZodObject>;

function makeConfigSchema(kinds: KindSchemas) {
  const component = z.looseObject({ kind: z.string() }).superRefine((c, ctx) => {
    const schema = kinds[c.kind];
    if (!schema) {
      ctx.addIssue({
        code: 'custom',
        path: ['kind'],
        message: `unknown kind "${c.kind}"; known kinds: ${Object.keys(kinds).sort().join(', ')}`,
      });
    }
  }).transform((c, ctx) => {
    const schema = kinds[c.kind];
    if (!schema) return z.NEVER;
    const full = componentBaseSchema.extend(schema.shape).strict();
    const r = full.safeParse(c);
    if (!r.success) {
      for (const issue of r.error.issues) {
        ctx.addIssue({ ...issue, code: 'custom', message: issue.message, path: issue.path } as never);
      }
      return z.NEVER;
    }
    // A kind's own rules across its fields (refinements of its schema, which extend() leaves out).
    if ((schema as { _zod?: { def?: { checks?: unknown[] } } })._zod?.def?.checks?.length) {
      const own = schema.safeParse(r.data);
      if (!own.success) {
        for (const issue of own.error.issues) ctx.addIssue({ ...issue, code: 'custom', message: issue.message, path: issue.path } as never);
        return z.NEVER;
      }
    }
    if (r.data.mask !== undefined) {
      const rule = MASK_RULE_SCHEMAS[c.kind];
      if (!rule) {
        ctx.addIssue({ code: 'custom', path: ['mask'], message: `a ${c.kind} component cannot be masked; masking rules apply to ${Object.keys(MASK_RULE_SCHEMAS).join(', ')}` });
        return z.NEVER;
      }
      const m = z.array(rule).safeParse(r.data.mask);
      if (!m.success) {
        for (const issue of m.error.issues) ctx.addIssue({ ...issue, code: 'custom', message: issue.message, path: ['mask', ...issue.path] } as never);
        return z.NEVER;
      }
      r.data.mask = m.data;
    }
    return r.data as ComponentConfig;
  });

  return z.object({
    vault: z.object({
      primary: vaultLocation,
      secondary: vaultLocation.optional(),
      /**
       * A size budget for each vault (the runbooks' max_size_gb): backups and
       * retention alert when a vault holds more than warnAtPercent of it (a
       * warning) or more than all of it (an error). Nothing is refused.
       */
      budget: z.object({
        maxSizeGb: z.number().positive(),
        warnAtPercent: z.number().gt(0).lte(100).default(80),
      }).strict().optional(),
    }).strict(),
    encryption: encryptionSchema,
    alerts: z.array(alertSinkSchema).default([{ type: 'stdout' }]),
    /** Where restore drills and default restores go (sandbox). */
    sandbox: z.string().optional(),
    /** Schedules of the vault-wide jobs run by `memvault schedule`. */
    jobs: z.object({
      verifyDrill: cronField.default('0 4 * * *'),
      retention: cronField.default('30 5 * * *'),
      rpoWatch: cronField.default('*/15 * * * *'),
      /** Percent of chunk data read on each drill; over 100/N runs all of it is read. */
      verifySubsetPercent: z.number().min(1).max(100).default(10),
    }).strict().default({ verifyDrill: '0 4 * * *', retention: '30 5 * * *', rpoWatch: '*/15 * * * *', verifySubsetPercent: 10 }),
    components: z.record(
      z.string().regex(COMPONENT_NAME, 'component names are lowercase letters, digits, - and _'),
      component,
    ).refine((m) => Object.keys(m).length > 0, 'define at least one component'),
    /** Deployment settings for the CDK app (functions/core/aws-config.ts). */
    aws: awsSchema.optional(),
  }).strict();
}

export type ComponentConfig = z.infer<typeof componentBaseSchema> & Record<string, unknown> & { kind: string };

export interface MemvaultConfig {
  vault: { primary: VaultLocation; secondary?: VaultLocation; budget?: { maxSizeGb: number; warnAtPercent: number } };
  encryption: z.infer<typeof encryptionSchema>;
  alerts: z.infer<typeof alertSinkSchema>[];
  sandbox?: string;
  jobs: { verifyDrill: string; retention: string; rpoWatch: string; verifySubsetPercent: number };
  components: Record<string, ComponentConfig>;
  /** Deployment settings for the CDK app; absent when only run locally. */
  aws?: AwsConfig;
  /** Directory of the config file; relative paths in the config resolve against it. */
  baseDir: string;
  /** Path of the file this was loaded from, if any. */
  file?: string;
}

export function formatIssues(error: z.ZodError): string[] {
  return error.issues.map((i) => {
    const p = i.path.map(String).join('.');
    let msg = i.message;
    if (i.code === 'unrecognized_keys') msg = `unknown field(s): ${(i as { keys: string[] }).keys.join(', ')}`;
    return p ? `${p}: ${msg}` : msg;
  });
}

/** Validates an already-parsed document. Throws ConfigError listing every problem. */
export function parseConfig(raw: unknown, kinds: KindSchemas, baseDir: string, file?: string): MemvaultConfig {
  const r = makeConfigSchema(kinds).safeParse(raw ?? {});
  if (!r.success) throw new ConfigError(formatIssues(r.error));
  const cfg = r.data as unknown as MemvaultConfig;
  cfg.baseDir = baseDir;
  if (file) cfg.file = file;
  return cfg;
}

/** Finds the config: --config, then $MEMVAULT_CONFIG, then ./memvault.yaml. */
export function locateConfig(explicit?: string, env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): string {
  const candidate = explicit ?? env.MEMVAULT_CONFIG ?? path.join(cwd, 'memvault.yaml');
  const abs = path.resolve(cwd, candidate);
  if (!existsSync(abs)) {
    throw new ConfigError(`config file not found: ${abs} (pass --config FILE, set MEMVAULT_CONFIG, or create memvault.yaml here)`);
  }
  return abs;
}

export function loadConfigFile(file: string, kinds: KindSchemas): MemvaultConfig {
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(file, 'utf8'));
  } catch (err) {
    if (err instanceof YAMLParseError) throw new ConfigError(`${file}: invalid YAML: ${err.message}`);
    throw new ConfigError(`${file}: cannot read: ${(err as Error).message}`);
  }
  return parseConfig(raw, kinds, path.dirname(file), file);
}

/** Resolves a path from the config relative to the config file's directory. */
export function resolvePath(cfg: Pick<MemvaultConfig, 'baseDir'>, p: string): string {
  return path.resolve(cfg.baseDir, p);
}

export function durationMs(d: string): number {
  const m = /^(\d+)(s|m|h|d)$/.exec(d);
  if (!m) throw new ConfigError(`invalid duration "${d}"`);
  const n = Number(m[1]);
  return n * (m[2] === 's' ? 1000 : m[2] === 'm' ? 60_000 : m[2] === 'h' ? 3_600_000 : 86_400_000);
}
