// The optional `aws` section of memvault.yaml: what `cdk deploy` needs beyond
// the vault engine's own settings (account and regions, alert subscriptions,
// Object Lock, VPC, database secrets, Lambda sizing). Only the CDK app
// (infra/app.ts) reads it; the local runtime ignores it. Every field is
// validated here so a bad value fails `cdk synth` with its path, e.g.
// `aws.objectLock.mode: expected "governance" or "compliance", got "strict"`.
import { z } from 'zod';

const got = (i: { input: unknown }) => JSON.stringify(i.input);

const positiveInt = z.number({ error: (i) => `expected a positive integer, got ${got(i)}` })
  .int({ error: (i) => `expected a positive integer, got ${got(i)}` })
  .positive({ error: (i) => `expected a positive integer, got ${got(i)}` });

const intIn = (min: number, max: number, unit: string) =>
  z.number({ error: (i) => `expected ${unit} between ${min} and ${max}, got ${got(i)}` })
    .int({ error: (i) => `expected ${unit} between ${min} and ${max}, got ${got(i)}` })
    .min(min, { error: (i) => `expected ${unit} between ${min} and ${max}, got ${got(i)}` })
    .max(max, { error: (i) => `expected ${unit} between ${min} and ${max}, got ${got(i)}` });

export const AWS_ACCOUNT = /^\d{12}$/;
export const AWS_REGION = /^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$/;

const account = z.string({ error: (i) => `expected a 12-digit AWS account id, got ${got(i)}` })
  .regex(AWS_ACCOUNT, { error: (i) => `expected a 12-digit AWS account id, got ${got(i)}` });
const region = z.string({ error: (i) => `expected an AWS region like eu-west-1, got ${got(i)}` })
  .regex(AWS_REGION, { error: (i) => `expected an AWS region like eu-west-1, got ${got(i)}` });

const secretArn = z.string().regex(
  /^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+$/,
  { error: (i) => `expected a Secrets Manager secret ARN (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME), got ${got(i)}` },
);
const principalArn = z.string().regex(
  /^arn:aws[a-z-]*:(iam::\d{12}:(root|role\/[\w+=,.@/-]+|user\/[\w+=,.@/-]+)|sts::\d{12}:assumed-role\/[\w+=,.@/-]+)$/,
  { error: (i) => `expected an IAM role, user or account root ARN, got ${got(i)}` },
);

/** CloudWatch Logs accepts only these retention periods. */
export const LOG_RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653] as const;
const logRetention = z.number().refine((n) => (LOG_RETENTION_DAYS as readonly number[]).includes(n), {
  error: (i) => `expected one of the CloudWatch Logs retention periods (${LOG_RETENTION_DAYS.join(', ')}), got ${got(i)}`,
});

export const lambdaSizingSchema = z.object({
  /** Memory in MB (CPU scales with it). */
  memoryMb: intIn(128, 10240, 'a memory size in MB').optional(),
  /** Timeout in seconds; Lambda's maximum is 900. */
  timeoutSeconds: intIn(1, 900, 'a timeout in seconds').optional(),
  /** /tmp size in MB (scratch copies of databases). */
  ephemeralStorageMb: intIn(512, 10240, 'an ephemeral storage size in MB').optional(),
  /** Reserved concurrency (caps parallel exports against one database). */
  reservedConcurrency: intIn(1, 1000, 'a reserved concurrency').optional(),
}).strict();
export type LambdaSizing = z.infer<typeof lambdaSizingSchema>;

const vpcSchema = z.object({
  subnetIds: z.array(z.string().regex(/^subnet-[0-9a-f]{8,17}$/, { error: (i) => `expected a subnet id (subnet-...), got ${got(i)}` }))
    .min(1, 'list at least one subnet id'),
  securityGroupIds: z.array(z.string().regex(/^sg-[0-9a-f]{8,17}$/, { error: (i) => `expected a security group id (sg-...), got ${got(i)}` }))
    .min(1, 'list at least one security group id'),
  /**
   * Handlers (kebab-case file names under functions/handlers) that run in the VPC.
   * @default the handlers that reach databases: export-*, restore-*, promote-restore, validate-restore (not the snapshot handlers: they only call the RDS API)
   */
  handlers: z.array(z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'expected a handler file name in kebab-case, e.g. export-postgres')).optional(),
  /**
   * Create the VPC endpoints the in-VPC handlers need to reach AWS without a
   * NAT gateway: an S3 gateway endpoint on routeTableIds, interface endpoints
   * (KMS, Secrets Manager, SNS, STS; SSM and RDS when an in-VPC handler calls
   * them) in subnetIds, and a security group admitting 443 from securityGroupIds.
   * @default false (the subnets reach AWS through a NAT gateway or existing endpoints)
   */
  endpoints: z.boolean().default(false),
  /** The VPC of subnetIds (needed with endpoints: true; synth makes no lookups). */
  vpcId: z.string().regex(/^vpc-[0-9a-f]{8,17}$/, { error: (i) => `expected a VPC id (vpc-...), got ${got(i)}` }).optional(),
  /** Route tables of subnetIds, for the S3 gateway endpoint (needed with endpoints: true). */
  routeTableIds: z.array(z.string().regex(/^rtb-[0-9a-f]{8,17}$/, { error: (i) => `expected a route table id (rtb-...), got ${got(i)}` })).optional(),
}).strict().superRefine((v, ctx) => {
  if (!v.endpoints) return;
  if (!v.vpcId) ctx.addIssue({ code: 'custom', path: ['vpcId'], message: 'endpoints: true needs the id of the VPC of subnetIds (vpc-...): synth looks nothing up' });
  if (!v.routeTableIds?.length) ctx.addIssue({ code: 'custom', path: ['routeTableIds'], message: 'endpoints: true needs the route tables of subnetIds for the S3 gateway endpoint (rtb-...)' });
});
export type AwsVpc = z.infer<typeof vpcSchema>;

const kmsKeyArn = z.string().regex(
  /^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/[A-Za-z0-9-]+$/,
  { error: (i) => `expected a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID), got ${got(i)}` },
);

/**
 * Where the restore handlers may write a component's data on AWS (IAM grants
 * exactly these; a restore naming another bucket, path or secret is denied).
 */
export const restoreTargetSchema = z.object({
  /** s3-prefix: restores with the target option `bucket` may write this bucket... */
  bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, { error: (i) => `expected an S3 bucket name, got ${got(i)}` }).optional(),
  /** ...under this key prefix. @default the whole bucket */
  prefix: z.string().default(''),
  /** s3-prefix: the customer KMS key of that bucket's default encryption. */
  kmsKeyArn: kmsKeyArn.optional(),
  /** ssm-config with `to: aws`: parameter paths restores may write. @default the component's parameterPaths */
  parameterPaths: z.array(z.string().startsWith('/', 'expected a path starting with /')).optional(),
  /** ssm-config with `to: aws`: secret name prefixes restores may write. @default the component's secretPrefixes and secrets */
  secretPrefixes: z.array(z.string().min(1)).optional(),
}).strict();
export type RestoreTarget = z.infer<typeof restoreTargetSchema>;

export const DR_STATE_MACHINES = ['restore', 'verify-drill'] as const;

export const awsSchema = z.object({
  /** AWS account both stacks deploy to. */
  account,
  /** Primary region: vault, schedules, all state machines. */
  region,
  /** Disaster-recovery region: the secondary vault and the restore state machine. */
  drRegion: region,
  /**
   * Prefix of stack names (`<prefix>-Primary`, `<prefix>-Dr`) and, lowercased, of
   * bucket, key alias, topic and state machine names.
   * @default Memvault
   */
  stackPrefix: z.string().regex(/^[A-Za-z][A-Za-z0-9-]{0,19}$/, {
    error: (i) => `expected 1-20 letters, digits or -, starting with a letter, got ${got(i)}`,
  }).default('Memvault'),
  /** Who receives alerts (failed backups, drills, RPO breaches, failed executions). */
  alerts: z.object({
    emails: z.array(z.email({ error: (i) => `expected an email address, got ${got(i)}` })).default([]),
    https: z.array(z.url({ protocol: /^https$/, error: (i) => `expected an https:// URL, got ${got(i)}` })).default([]),
  }).strict().default({ emails: [], https: [] }),
  /** S3 Object Lock on both vault buckets (ransomware protection). Only settable when a bucket is created. */
  objectLock: z.object({
    mode: z.enum(['governance', 'compliance'], { error: (i) => `expected "governance" or "compliance", got ${got(i)}` }),
    days: intIn(1, 36500, 'a number of days'),
  }).strict().optional(),
  /** Subnets and security groups for the handlers that reach databases (primary region). */
  vpc: vpcSchema.optional(),
  /** The same for the DR region's handlers. */
  drVpc: vpcSchema.optional(),
  /**
   * Secrets Manager ARNs of database credentials, by component name or by kind
   * (postgres, vector, redis, mongodb): a component without its own secretArn
   * reads this one. `restoreTargets`: the secrets restore requests may name
   * as a target's secretArn (the restore functions may read only these and
   * the components' own).
   */
  databaseSecrets: z.object({
    components: z.record(z.string(), secretArn).default({}),
    kinds: z.record(z.string(), secretArn).default({}),
    restoreTargets: z.array(secretArn).default([]),
  }).strict().default({ components: {}, kinds: {}, restoreTargets: [] }),
  /**
   * Restore targets on AWS per component (s3-prefix: bucket, prefix; ssm-config:
   * parameterPaths, secretPrefixes). Without one, restores of that component
   * can write only files (and ssm-config `to: aws` only its own paths).
   */
  restoreTargets: z.record(z.string(), restoreTargetSchema).default({}),
  /** Lambda sizing overrides: for all handlers and per handler (kebab-case file name). */
  lambda: z.object({
    default: lambdaSizingSchema.optional(),
    handlers: z.record(z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'expected a handler file name in kebab-case'), lambdaSizingSchema).default({}),
  }).strict().default({ handlers: {} }),
  /** Retention of Lambda and state machine logs, in days. @default 90 */
  logRetentionDays: logRetention.default(90),
  /** Retention of the S3 server access logs, in days. @default 365 */
  accessLogRetentionDays: positiveInt.default(365),
  /**
   * Days a version replaced or deleted by the engine (prune, lock release) is kept
   * before lifecycle removes it. With Object Lock it is at least the lock period.
   * @default 30
   */
  noncurrentVersionDays: positiveInt.default(30),
  /**
   * Storage-class transitions of chunk objects. `false` disables one; a number of
   * days overrides the default derived from the components' retention.
   * @default STANDARD_IA after 30 days and GLACIER_IR after 90 days, each only
   *   when the longest retention keeps chunks long enough to pay off
   */
  lifecycle: z.object({
    infrequentAccessAfterDays: z.union([z.literal(false), intIn(30, 36500, 'a number of days (S3 needs at least 30)')]).optional(),
    glacierInstantRetrievalAfterDays: z.union([z.literal(false), intIn(1, 36500, 'a number of days')]).optional(),
  }).strict().default({}),
  /** Who may assume the recovery team and auditor roles. @default the account (IAM policies decide) */
  roles: z.object({
    recoveryTeam: z.array(principalArn).default([]),
    auditors: z.array(principalArn).default([]),
    /**
     * Both roles can be assumed only by a session signed in with MFA (the trust policy tests
     * aws:MultiFactorAuthPresent). Set false only where an identity provider enforces MFA and its
     * sessions do not carry that flag (IAM Identity Center, SAML): say so in a comment beside it.
     * @default true
     */
    requireMfa: z.boolean().default(true),
  }).strict().default({ recoveryTeam: [], auditors: [], requireMfa: true }),
  /**
   * A CloudTrail trail per region recording the data events (every read, write and delete of an
   * object) of the vault bucket, into the access-log bucket under cloudtrail/, with log file
   * validation. false where an organization trail already records the vault buckets' data events.
   * @default true
   */
  cloudTrailDataEvents: z.boolean().default(true),
  /** State machines also deployed in the DR region (they work from the secondary vault). @default ["restore"] */
  drStateMachines: z.array(z.enum(DR_STATE_MACHINES, {
    error: (i) => `expected one of ${DR_STATE_MACHINES.join(', ')}, got ${got(i)}`,
  })).default(['restore']),
  /** Overrides of the AWS values of non-Lambda ASL placeholders (see infra/substitutions.ts). */
  substitutions: z.record(z.string().regex(/^[A-Za-z][A-Za-z0-9]*$/, 'expected a placeholder name'), z.string()).default({}),
}).strict().superRefine((a, ctx) => {
  if (a.drRegion === a.region) {
    ctx.addIssue({ code: 'custom', path: ['drRegion'], message: `must differ from aws.region (both are ${a.region}): the DR copy needs another region` });
  }
});

export type AwsConfig = z.infer<typeof awsSchema>;
