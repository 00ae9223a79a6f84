// What the CDK app derives from a validated memvault.yaml, as plain data (no
// constructs), so it can be tested on its own:
//   - the deterministic names shared by the two regions (buckets, key aliases,
//     state machines), which let one stack refer to the other without
//     cross-region exports;
//   - the config the handlers receive in MEMVAULT_CONFIG_JSON: vault locations
//     rewritten to the created buckets, encryption to the created KMS keys,
//     alerts to the region's SNS topic;
//   - the backup schedules, grouped so components on the same cron, time zone
//     and type share one backup-run execution;
//   - the vault lifecycle (storage-class transitions only where the retention
//     keeps chunks long enough; never an expiration of current objects);
//   - Lambda sizing per handler.
import type { MemvaultConfig } from '../functions/core/config.ts';
import type { AwsConfig, LambdaSizing } from '../functions/core/aws-config.ts';
import { ConfigError } from '../functions/core/errors.ts';
import { checkSettings, type SnapshotCommonSettings } from '../functions/components/snapshot-common.ts';
import { redactUrl, urlHasPassword } from '../functions/adapters/secrets.ts';

export type RegionRole = 'primary' | 'dr';

/** A config whose `aws` section is present. */
export type DeployConfig = MemvaultConfig & { aws: AwsConfig };

/** Key prefix of the vault inside each bucket. */
export const VAULT_PREFIX = 'vault';

/** The state machines of statemachines/*.asl.json. */
export const STATE_MACHINES = ['backup-run', 'restore', 'verify-drill', 'retention', 'rpo-watch'] as const;
export type StateMachineName = (typeof STATE_MACHINES)[number];

/**
 * CloudWatch namespace and metric names of what the handlers emit (Embedded
 * Metric Format), from the emitter itself so the dashboard cannot drift from
 * it: all with dimension Component except BytesStored (dimension Vault:
 * primary | secondary); see METRIC_DIMENSION.
 */
export { METRIC_NAMESPACE, METRICS, METRIC_DIMENSION } from '../functions/handlers/metrics.ts';

/** Lambda limits all environment variables of a function together to 4 KB. */
export const LAMBDA_ENV_LIMIT_BYTES = 4096;

export function requireAws(cfg: MemvaultConfig): DeployConfig {
  if (!cfg.aws) {
    throw new ConfigError(
      'aws: this config has no aws section; add one to deploy with CDK, e.g.\n' +
        'aws:\n  account: "123456789012"\n  region: eu-west-1\n  drRegion: eu-central-1',
    );
  }
  checkAwsReferences(cfg as DeployConfig);
  return cfg as DeployConfig;
}

/** Checks the parts of `aws` that refer to the rest of the config. Throws ConfigError naming each field. */
export function checkAwsReferences(cfg: DeployConfig): void {
  const problems: string[] = [];
  const components = Object.keys(cfg.components);
  const kinds = new Set(Object.values(cfg.components).map((c) => c.kind));
  for (const name of Object.keys(cfg.aws.databaseSecrets.components)) {
    if (!components.includes(name)) {
      problems.push(`aws.databaseSecrets.components.${name}: no component named "${name}"; components: ${components.join(', ')}`);
    }
  }
  for (const kind of Object.keys(cfg.aws.databaseSecrets.kinds)) {
    if (!kinds.has(kind)) {
      problems.push(`aws.databaseSecrets.kinds.${kind}: no component of kind "${kind}"; kinds in use: ${[...kinds].join(', ')}`);
    }
  }
  for (const [name, c] of Object.entries(cfg.components)) {
    if (c.kind === 'rds-snapshot' || c.kind === 'aurora-snapshot') {
      // The drivers check these when a backup starts; a deploy checks them at synth.
      try {
        checkSettings(name, c as unknown as SnapshotCommonSettings);
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        problems.push(...err.problems);
      }
    }
    problems.push(...credentialProblems(cfg, name, c as unknown as Record<string, unknown>));
    if (c.kind === 'postgres' && ((c as { method?: unknown }).method === 'physical' || (c as { continuous?: unknown }).continuous !== undefined)) {
      // pg_basebackup, a data directory and a postgres server replaying the archive: none of it runs in Lambda.
      problems.push(
        `components.${name}: physical base backups and point-in-time restore (method physical / continuous) are for a self-managed PostgreSQL with the local runtime ` +
          '(memvault schedule on its host, archive_command = memvault wal-push): a Lambda function has no pg_basebackup, no data directory and no server to replay WAL in. ' +
          `On AWS use rds-snapshot or aurora-snapshot (RDS and Aurora keep their own point-in-time recovery), or a logical postgres backup without continuous`,
      );
    }
    if (!SNAPSHOT_KINDS.includes(c.kind) && !LOCAL_PATH_KINDS.includes(c.kind) && (c as { drill?: unknown }).drill === undefined) {
      // On AWS the daily verify-drill restores each component into a scratch target and
      // validates it there (a directory would be one function's /tmp); without one the
      // drill would fail every day at plan-drill, so the deploy stops here instead.
      problems.push(
        `components.${name}.drill: not set; on AWS the daily verify-drill (jobs.verifyDrill) restores ${name} (${c.kind}) into a scratch target named there ` +
          'and removes it after (see README, "Drills"): a database server for postgres/vector/mongodb, a redis and database number, a bucket and prefix for s3-prefix, a parameter path and secret prefix for ssm-config',
      );
    }
    ((c as { checks?: { name: string; command?: unknown }[] }).checks ?? []).forEach((k, i) => {
      if (k.command !== undefined) {
        problems.push(`components.${name}.checks.${i} (${k.name}): a command check runs on the host that restores; the Lambda handlers of an AWS deploy have no shell or tools to run it: use an http or sql check there`);
      }
    });
    for (const [phase, hooks] of Object.entries((c as { hooks?: Record<string, { name: string; command?: unknown }[]> }).hooks ?? {})) {
      hooks.forEach((h, i) => {
        if (h.command !== undefined) problems.push(`components.${name}.hooks.${phase}.${i} (${h.name}): a command hook runs on the host; the Lambda handlers of an AWS deploy cannot run it: use an http or lambda hook there`);
      });
    }
    if (!LOCAL_PATH_KINDS.includes(c.kind)) continue;
    problems.push(
      `components.${name}.kind: "${c.kind}" reads a local path (${String(c.path ?? '')}), which the Lambda handlers of an AWS deploy cannot reach; ` +
        'on AWS back the data up where it lives: s3-prefix (files and objects in S3), postgres / rds-snapshot / aurora-snapshot (databases), ' +
        `redis, mongodb, vector or ssm-config; or keep ${name} on the host and back it up with the local runtime (memvault schedule)`,
    );
  }
  if (cfg.aws.objectLock && cfg.aws.objectLock.mode === 'compliance' && cfg.aws.objectLock.days > 3650) {
    problems.push(`aws.objectLock.days: ${cfg.aws.objectLock.days} days in compliance mode cannot be shortened or removed by anyone; use at most 3650`);
  }
  if (problems.length) throw new ConfigError(problems);
}

/** Kinds that connect to a database with credentials: on AWS they come from a Secrets Manager secret. */
export const DATABASE_KINDS = ['postgres', 'vector', 'redis', 'mongodb'];

/**
 * What an AWS deploy refuses in a component's settings, at any depth: a
 * setting that reads an environment variable (uriEnv, passwordEnv, any
 * `*Env`: the stacks set no such variable, so it would fail on every run),
 * and a URL with a password in it (it would sit in plain text in the deployed
 * config, the template's asset and every log that quotes the URL). Both point
 * to secretArn. Also a component secretArn that contradicts
 * aws.databaseSecrets, and a mongodb component with no way to connect.
 */
function credentialProblems(cfg: DeployConfig, name: string, settings: Record<string, unknown>): string[] {
  const problems: string[] = [];
  const fix = DATABASE_KINDS.includes(String(settings.kind))
    ? `put the credentials in a Secrets Manager secret and set components.${name}.secretArn (or aws.databaseSecrets.components.${name})`
    : 'put the credentials in a Secrets Manager secret';
  const walk = (v: unknown, field: string, key: string) => {
    if (typeof v === 'string') {
      if (/Env$/.test(key)) {
        problems.push(`${field}: reads the environment variable ${v}, which the deployed functions do not have; ${fix}`);
      } else if (urlHasPassword(v)) {
        problems.push(`${field}: ${redactUrl(v)} carries a password, which would be stored in plain text in the deployed config; remove it from the URL and ${fix}`);
      }
    } else if (Array.isArray(v)) {
      v.forEach((x, i) => walk(x, `${field}.${i}`, key));
    } else if (v && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) walk(x, `${field}.${k}`, k);
    }
  };
  for (const [k, v] of Object.entries(settings)) walk(v, `components.${name}.${k}`, k);
  const own = settings.secretArn as string | undefined;
  const named = cfg.aws.databaseSecrets.components[name];
  if (own && named && own !== named) {
    problems.push(`components.${name}.secretArn: ${own} differs from aws.databaseSecrets.components.${name} (${named}); name the secret once`);
  }
  if (settings.kind === 'mongodb' && !settings.uri && !componentSecretArn(cfg, name)) {
    problems.push(`components.${name}: no way to connect on AWS; set secretArn (a secret with "uri", or "username", "password", "host", "port") and optionally uri without a password`);
  }
  return problems;
}

/** The secret a database component reads on AWS: its own secretArn, else aws.databaseSecrets by name, else by kind. */
export function componentSecretArn(cfg: DeployConfig, name: string): string | undefined {
  const c = cfg.components[name] as unknown as { kind: string; secretArn?: string } | undefined;
  if (!c || !DATABASE_KINDS.includes(c.kind)) return undefined;
  return c.secretArn ?? cfg.aws.databaseSecrets.components[name] ?? cfg.aws.databaseSecrets.kinds[c.kind];
}

/** Handlers that connect to the configured sources (stream backups, the safety backup of an in-place restore). */
export const SOURCE_SECRET_HANDLERS = ['export-stream'] as const;
/** Handlers that connect to restore targets (restore, and its validation; drills use the same handlers). */
export const RESTORE_SECRET_HANDLERS = ['restore-component', 'validate-restore'] as const;

export interface DatabaseSecretNeeds {
  /** Secrets of the configured sources: what SOURCE_SECRET_HANDLERS read. */
  source: string[];
  /**
   * What RESTORE_SECRET_HANDLERS may read: aws.databaseSecrets.restoreTargets,
   * every other secretArn in a database component's settings (e.g. a scratch
   * target), and the sources' own secrets (a restore into a new database on
   * the source's server with the same user).
   */
  restore: string[];
}

/**
 * Which database secrets which handlers need, as plain data for the IAM
 * grants (each handler role gets secretsmanager:GetSecretValue on its list).
 * Every database component's effective secret (componentSecretArn) counts,
 * so aws.databaseSecrets is granted and also delivered to the handlers.
 */
export function databaseSecretNeeds(cfg: DeployConfig): DatabaseSecretNeeds {
  // Everything aws.databaseSecrets names is read by the backups (by component or kind, of any kind).
  const source = new Set<string>([...Object.values(cfg.aws.databaseSecrets.components), ...Object.values(cfg.aws.databaseSecrets.kinds)]);
  const restore = new Set<string>(cfg.aws.databaseSecrets.restoreTargets);
  for (const [name, c] of Object.entries(cfg.components)) {
    const arn = componentSecretArn(cfg, name);
    if (arn) source.add(arn);
    if (!DATABASE_KINDS.includes(c.kind)) continue;
    const nested = (v: unknown, top: boolean): void => {
      if (Array.isArray(v)) v.forEach((x) => nested(x, false));
      else if (v && typeof v === 'object') {
        for (const [k, x] of Object.entries(v)) {
          if (k === 'secretArn' && typeof x === 'string' && !top) restore.add(x);
          else nested(x, false);
        }
      }
    };
    nested(c, true);
  }
  for (const a of source) restore.add(a);
  return { source: [...source].sort(), restore: [...restore].sort() };
}

/** Every handler that reads database secrets, with the ARNs it reads (a view of databaseSecretNeeds per handler). */
export function secretArnsByHandler(cfg: DeployConfig): Record<string, string[]> {
  const needs = databaseSecretNeeds(cfg);
  const out: Record<string, string[]> = {};
  for (const h of SOURCE_SECRET_HANDLERS) if (needs.source.length) out[h] = needs.source;
  for (const h of RESTORE_SECRET_HANDLERS) if (needs.restore.length) out[h] = needs.restore;
  return out;
}

/** Kinds whose data stays in the service (a drill checks the snapshots, needs no scratch target). */
export const SNAPSHOT_KINDS = ['rds-snapshot', 'aurora-snapshot'];

/** Kinds that read a path on the machine running memvault: not reachable from Lambda. */
export const LOCAL_PATH_KINDS = ['files', 'sqlite'];

/** A service-snapshot component, as the IAM statements need it. */
export interface SnapshotSource {
  component: string;
  resource: 'instance' | 'cluster';
  sourceId: string;
  region: string;
  /** Region of the DR copies (undefined with copyToDr: false). */
  drRegion?: string;
  drKmsKeyId?: string;
}

/** The rds-snapshot and aurora-snapshot components of the config. */
export function snapshotSources(cfg: MemvaultConfig): SnapshotSource[] {
  const out: SnapshotSource[] = [];
  for (const [component, c] of Object.entries(cfg.components).sort(([a], [b]) => a.localeCompare(b))) {
    if (c.kind !== 'rds-snapshot' && c.kind !== 'aurora-snapshot') continue;
    const s = c as unknown as { instanceId?: string; clusterId?: string; region: string; drRegion?: string; drKmsKeyId?: string; copyToDr?: boolean };
    out.push({
      component,
      resource: c.kind === 'rds-snapshot' ? 'instance' : 'cluster',
      sourceId: (c.kind === 'rds-snapshot' ? s.instanceId : s.clusterId) ?? '',
      region: s.region,
      drRegion: s.copyToDr === false ? undefined : s.drRegion,
      drKmsKeyId: s.drKmsKeyId,
    });
  }
  return out;
}

/** An s3-prefix component whose source is AWS S3 (not another endpoint). */
export interface S3Source {
  component: string;
  bucket: string;
  prefix: string;
  /** The customer KMS key of the objects (s3-prefix kmsKeyArn). */
  kmsKeyArn?: string;
  /** The drill's scratch bucket and prefix (s3-prefix drill), on AWS S3. */
  drill?: { bucket: string; prefix: string };
}

export function s3Sources(cfg: MemvaultConfig): S3Source[] {
  return Object.entries(cfg.components)
    .filter(([, c]) => c.kind === 's3-prefix' && !(c as { endpoint?: string }).endpoint)
    .map(([component, c]) => {
      const s = c as unknown as { bucket: string; prefix?: string; kmsKeyArn?: string; drill?: { bucket: string; prefix?: string; endpoint?: string } };
      const p = (s.prefix ?? '').replace(/^\/+/, '');
      const d = s.drill && !s.drill.endpoint ? { bucket: s.drill.bucket, prefix: (s.drill.prefix ?? 'memvault-drill/').replace(/^\/+/, '') } : undefined;
      return {
        component, bucket: s.bucket, prefix: p === '' || p.endsWith('/') ? p : `${p}/`,
        ...(s.kmsKeyArn ? { kmsKeyArn: s.kmsKeyArn } : {}), ...(d ? { drill: d } : {}),
      };
    });
}

export interface DeploymentNames {
  /** Lowercase prefix of physical names. */
  prefix: string;
  stackName: Record<RegionRole, string>;
  region: Record<RegionRole, string>;
  vaultBucket: Record<RegionRole, string>;
  accessLogBucket: Record<RegionRole, string>;
  /** The CloudTrail trail of the vault bucket's data events (aws.cloudTrailDataEvents). */
  vaultTrail: string;
  vaultKeyAlias: string;
  vaultKeyAliasArn: Record<RegionRole, string>;
  alertTopic: string;
  alertTopicArn: Record<RegionRole, string>;
  stateMachine(name: StateMachineName): string;
  stateMachineArn(role: RegionRole, name: StateMachineName): string;
  recoveryTeamRole: string;
  auditorRole: string;
  scheduleGroup: string;
  dashboard: string;
}

export function deploymentNames(aws: AwsConfig): DeploymentNames {
  const p = aws.stackPrefix.toLowerCase();
  const region = { primary: aws.region, dr: aws.drRegion };
  const per = <T>(f: (r: RegionRole) => T) => ({ primary: f('primary'), dr: f('dr') });
  const partition = aws.region.startsWith('cn-') ? 'aws-cn' : aws.region.includes('-gov-') ? 'aws-us-gov' : 'aws';
  return {
    prefix: p,
    stackName: { primary: `${aws.stackPrefix}-Primary`, dr: `${aws.stackPrefix}-Dr` },
    region,
    vaultBucket: per((r) => `${p}-vault-${aws.account}-${region[r]}`),
    accessLogBucket: per((r) => `${p}-access-logs-${aws.account}-${region[r]}`),
    vaultTrail: `${p}-vault-data-events`,
    vaultKeyAlias: `alias/${p}-vault`,
    vaultKeyAliasArn: per((r) => `arn:${partition}:kms:${region[r]}:${aws.account}:alias/${p}-vault`),
    alertTopic: `${p}-alerts`,
    alertTopicArn: per((r) => `arn:${partition}:sns:${region[r]}:${aws.account}:${p}-alerts`),
    stateMachine: (name) => `${p}-${name}`,
    stateMachineArn: (r, name) => `arn:${partition}:states:${region[r]}:${aws.account}:stateMachine:${p}-${name}`,
    recoveryTeamRole: `${aws.stackPrefix}-RecoveryTeam`,
    auditorRole: `${aws.stackPrefix}-Auditors`,
    scheduleGroup: p,
    dashboard: `${aws.stackPrefix}-Backups`,
  };
}

/**
 * The config handlers run with in `role`'s region: vaults in the created
 * buckets, encryption with the created keys (alias ARNs, the same in every
 * wrapping the vault records), alerts to that region's topic, drills in /tmp.
 * It validates again with parseConfig (the handlers' first step).
 */
export function handlerConfig(cfg: DeployConfig, role: RegionRole): Record<string, unknown> {
  const n = deploymentNames(cfg.aws);
  const { baseDir: _b, file: _f, aws, ...rest } = cfg;
  // A database component reads its secret from its own settings: fill in the
  // one aws.databaseSecrets names for it.
  const components = Object.fromEntries(Object.entries(cfg.components).map(([name, c]) => {
    const arn = componentSecretArn(cfg, name);
    return [name, arn && !(c as { secretArn?: string }).secretArn ? { ...c, secretArn: arn } : c];
  }));
  return {
    ...rest,
    components,
    vault: {
      primary: { url: `s3://${n.vaultBucket.primary}/${VAULT_PREFIX}`, region: n.region.primary },
      secondary: { url: `s3://${n.vaultBucket.dr}/${VAULT_PREFIX}`, region: n.region.dr },
      ...(cfg.vault.budget ? { budget: cfg.vault.budget } : {}),
    },
    encryption: {
      kms: {
        primary: n.vaultKeyAliasArn.primary,
        secondary: n.vaultKeyAliasArn.dr,
        region: n.region.primary,
        secondaryRegion: n.region.dr,
      },
    },
    alerts: [{ type: 'sns', topicArn: n.alertTopicArn[role], region: n.region[role] }],
    sandbox: '/tmp/memvault-sandbox',
    aws: {
      account: aws.account,
      region: aws.region,
      drRegion: aws.drRegion,
      stackPrefix: aws.stackPrefix,
      databaseSecrets: aws.databaseSecrets,
    },
  };
}

/**
 * The size Lambda counts against its 4 KB limit: the JSON of the whole
 * variables map, {"KEY":"value",...}, with quotes and the escapes inside
 * values (a `"` in a value counts 2 bytes, a newline 2, a control character 6).
 */
export function lambdaEnvironmentSize(env: Record<string, string>): number {
  return Buffer.byteLength(JSON.stringify(env), 'utf8');
}

/** Throws when a function's environment exceeds Lambda's 4 KB limit, counted as Lambda counts it. */
export function checkEnvironmentSize(fn: string, env: Record<string, string>): void {
  const bytes = lambdaEnvironmentSize(env);
  if (bytes > LAMBDA_ENV_LIMIT_BYTES) {
    const largest = Object.entries(env).sort(([, a], [, b]) => b.length - a.length).slice(0, 3).map(([k, v]) => `${k} (${JSON.stringify(v).length} bytes)`);
    throw new ConfigError(
      `the environment of ${fn} is ${bytes} bytes as Lambda counts it (the JSON of all variables), over Lambda's ${LAMBDA_ENV_LIMIT_BYTES}-byte limit; ` +
        `largest: ${largest.join(', ')}`,
    );
  }
}

// ---- schedules ----

export interface BackupScheduleGroup {
  /** Stable construct id part, from the first component name. */
  id: string;
  cron: string;
  timezone: string;
  components: string[];
  /**
   * The backup-run execution input: plan-backup picks the components with this
   * cron and time zone, each with its own scheduleType.
   */
  input: { schedule: string; timezone: string };
}

/** Components with the same cron and time zone share one backup-run execution. */
export function backupScheduleGroups(cfg: MemvaultConfig): BackupScheduleGroup[] {
  const groups = new Map<string, BackupScheduleGroup>();
  for (const [name, c] of Object.entries(cfg.components).sort(([a], [b]) => a.localeCompare(b))) {
    if (!c.schedule) continue;
    const cron = c.schedule.trim();
    const key = `${cron}|${c.timezone}`;
    let g = groups.get(key);
    if (!g) {
      g = { id: name, cron, timezone: c.timezone, components: [], input: { schedule: cron, timezone: c.timezone } };
      groups.set(key, g);
    }
    g.components.push(name);
  }
  return [...groups.values()];
}

// ---- lifecycle ----

export interface LifecyclePlan {
  /** Days after which chunks move to STANDARD_IA, or undefined for never. */
  infrequentAccessAfterDays?: number;
  /** Days after which chunks move to GLACIER_IR, or undefined for never. */
  glacierInstantRetrievalAfterDays?: number;
  /** Days a noncurrent version (replaced or deleted by the engine) is kept. */
  noncurrentVersionDays: number;
  /** Why the transitions are what they are (shown in the bucket's construct metadata). */
  reason: string;
}

/**
 * The longest a chunk can stay referenced, in days (Infinity when a component
 * keeps backups by count only or keeps everything). Chunks are shared between
 * components, so the bucket-wide rule follows the longest retention.
 */
export function longestRetentionDays(cfg: MemvaultConfig): number {
  let longest = 0;
  for (const c of Object.values(cfg.components)) {
    const r = c.retention ?? {};
    const spans = [
      r.days,
      r.keepDaily,
      r.keepWeekly !== undefined ? r.keepWeekly * 7 : undefined,
      r.keepMonthly !== undefined ? r.keepMonthly * 31 : undefined,
    ].filter((d): d is number => d !== undefined);
    if (r.days === undefined && (r.keepLast !== undefined || spans.length === 0)) return Infinity;
    longest = Math.max(longest, ...spans);
  }
  return longest;
}

/**
 * S3 charges STANDARD_IA for at least 30 days and GLACIER_IR for at least 90,
 * so a transition only pays off when chunks live that much longer; both
 * classes read instantly, which verify drills and restores need (no Glacier
 * Flexible Retrieval or Deep Archive: they would need a restore request first).
 */
export function lifecyclePlan(cfg: DeployConfig): LifecyclePlan {
  const longest = longestRetentionDays(cfg);
  const o = cfg.aws.lifecycle;
  const ia = o.infrequentAccessAfterDays === false ? undefined
    : o.infrequentAccessAfterDays ?? (longest >= 60 ? 30 : undefined);
  const gir = o.glacierInstantRetrievalAfterDays === false ? undefined
    : o.glacierInstantRetrievalAfterDays ?? (longest >= 180 ? 90 : undefined);
  const lockDays = cfg.aws.objectLock?.days ?? 0;
  const longestText = Number.isFinite(longest) ? `${longest} days` : 'unbounded';
  return {
    infrequentAccessAfterDays: ia,
    glacierInstantRetrievalAfterDays: gir,
    noncurrentVersionDays: Math.max(cfg.aws.noncurrentVersionDays, lockDays),
    reason: `longest retention ${longestText}: STANDARD_IA ${ia ?? 'never'}, GLACIER_IR ${gir ?? 'never'}`,
  };
}

// ---- Lambda sizing ----

export type ResolvedSizing = Required<Omit<LambdaSizing, 'reservedConcurrency'>> & Pick<LambdaSizing, 'reservedConcurrency'>;

/**
 * Planners, pollers, alerts and reports: small and quick. Everything else moves
 * or checks data (plan-partitions lists a whole source prefix: a data mover).
 */
const LIGHT = /^(plan-(?!partitions$)|check-|send-|finish-|report-|validate-restore-input$|snapshot-poll$|snapshot-start$)/;
/** Handlers that stage copies in /tmp (exports, restores, validations of restored data). */
const SCRATCH = /^(export-|restore-|promote-restore$|validate-restore$)/;
/**
 * Handlers that reach databases over the network (drivers' exports, restores,
 * validations). The snapshot handlers (snapshot-start, snapshot-poll) only call
 * the RDS API, which needs no VPC: outside it they need neither a NAT nor an
 * RDS endpoint.
 */
const DATABASE = /^(export-|restore-|promote-restore$|validate-restore$)/;

/** Sizing per job: data movers get 2 GB and 15 minutes, with 10 GB of /tmp when they stage copies; the rest is small. */
export function lambdaSizing(handler: string, aws: AwsConfig): ResolvedSizing {
  const heavy = !LIGHT.test(handler);
  const base: ResolvedSizing = {
    memoryMb: heavy ? 2048 : 256,
    timeoutSeconds: heavy ? 900 : 60,
    ephemeralStorageMb: SCRATCH.test(handler) ? 10240 : 512,
  };
  return { ...base, ...aws.lambda.default, ...aws.lambda.handlers[handler] };
}

/** Whether a handler runs in the VPC of that region (drivers that reach databases). */
export function runsInVpc(handler: string, aws: AwsConfig, role: RegionRole): boolean {
  const vpc = role === 'primary' ? aws.vpc : aws.drVpc;
  if (!vpc) return false;
  return vpc.handlers ? vpc.handlers.includes(handler) : DATABASE.test(handler);
}
