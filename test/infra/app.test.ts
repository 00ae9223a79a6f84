// The CDK app synthesized from infra/memvault.example.yaml with the real
// statemachines/*.asl.json and functions/handlers, code inline instead of
// bundled (tests/infra/synth.test.ts bundles for real). One synth is shared
// by the assertions of each describe block; config errors each get a fresh app.
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { Match, Template, Capture } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { App, Stack } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { MemvaultStateMachine } from '../../infra/constructs/state-machine.ts';
import { AWS_SUBSTITUTIONS } from '../../infra/substitutions.ts';
import { parseConfig } from '../../functions/core/config.ts';
import { kindSchemas } from '../../functions/components/registry.ts';
import { bind, loadDefinition, loadLocalSubstitutions, placeholdersOf, pascalToKebab } from '../../infra/asl.ts';
import { STATE_MACHINES, METRIC_NAMESPACE, METRICS, METRIC_DIMENSION } from '../../infra/deploy-config.ts';
import { PolicyEvaluator } from '../../rehearsal/iam.ts';
import { buildApp, configObjectOf, decision, exampleDoc, logicalId, roleStatements, ROOT } from './helpers.ts';

const VAULT_EU_WEST = 'memvault-vault-111111111111-eu-west-1';
const VAULT_EU_CENTRAL = 'memvault-vault-111111111111-eu-central-1';

describe('two-region deployment of the example config', () => {
  let primary: Template;
  let dr: Template;
  let violations: { ruleName: string; violatingResources: { constructPath: string }[] }[];
  let assemblyDir: string;

  beforeAll(() => {
    const built = buildApp(exampleDoc());
    assemblyDir = built.app.synth().directory;
    primary = Template.fromStack(built.primary);
    dr = Template.fromStack(built.dr);
    violations = new AwsSolutionsChecks(built.app).validateScope(built.app).violations as never;
  });

  it('creates a vault bucket per region with the region key, versioning, no public access, access logs and Object Lock', () => {
    for (const [t, name] of [[primary, VAULT_EU_WEST], [dr, VAULT_EU_CENTRAL]] as const) {
      const key = new Capture();
      t.hasResourceProperties('AWS::S3::Bucket', {
        BucketName: name,
        BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'aws:kms', KMSMasterKeyID: { 'Fn::GetAtt': [key, 'Arn'] } }, BucketKeyEnabled: true }] },
        VersioningConfiguration: { Status: 'Enabled' },
        PublicAccessBlockConfiguration: { BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true },
        LoggingConfiguration: { DestinationBucketName: Match.anyValue(), LogFilePrefix: `${name}/` },
        ObjectLockEnabled: true,
        ObjectLockConfiguration: { ObjectLockEnabled: 'Enabled', Rule: { DefaultRetention: { Mode: 'GOVERNANCE', Days: 30 } } },
      });
      expect(t.toJSON().Resources[key.asString()].Properties).toMatchObject({ EnableKeyRotation: true });
      t.hasResourceProperties('AWS::KMS::Alias', { AliasName: 'alias/memvault-vault' });
      t.hasResource('AWS::S3::Bucket', { Properties: { BucketName: name }, DeletionPolicy: 'Retain', UpdateReplacePolicy: 'Retain' });
      t.hasResource('AWS::KMS::Key', { DeletionPolicy: 'Retain' });
    }
  });

  it('denies any non-TLS request to the vault bucket', () => {
    primary.hasResourceProperties('AWS::S3::BucketPolicy', {
      Bucket: { Ref: logicalId(primary, 'AWS::S3::Bucket', { BucketName: VAULT_EU_WEST }) },
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Effect: 'Deny', Action: 's3:*', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]) },
    });
  });

  it('never expires current vault objects; moves chunks to instant-read colder classes; cleans up versions and uploads', () => {
    const bucket = Object.values(primary.findResources('AWS::S3::Bucket', { Properties: { BucketName: VAULT_EU_WEST } }))[0] as any;
    const rules = bucket.Properties.LifecycleConfiguration.Rules as any[];
    for (const r of rules) {
      expect(r.ExpirationInDays).toBeUndefined();
      expect(r.ExpirationDate).toBeUndefined();
    }
    expect(rules).toContainEqual(expect.objectContaining({
      NoncurrentVersionExpiration: { NoncurrentDays: 30 },
      AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 },
      ExpiredObjectDeleteMarker: true,
    }));
    // The longest retention is 180 days (model-weights), so both transitions pay off.
    expect(rules).toContainEqual(expect.objectContaining({
      Prefix: 'vault/packs/',
      Transitions: [{ StorageClass: 'STANDARD_IA', TransitionInDays: 30 }, { StorageClass: 'GLACIER_IR', TransitionInDays: 90 }],
    }));
    expect(JSON.stringify(rules)).not.toMatch(/GLACIER"|DEEP_ARCHIVE/);
  });

  it('creates one arm64 Node 24 function per handler the state machines reference, each with its own log group', () => {
    const expected = new Set<string>();
    for (const name of STATE_MACHINES) {
      for (const ph of placeholdersOf(readFileSync(path.join(ROOT, 'statemachines', `${name}.asl.json`), 'utf8'))) {
        const m = /^(.*)FunctionArn$/.exec(ph);
        if (m) expected.add(pascalToKebab(m[1]));
      }
    }
    const fns = Object.values(primary.findResources('AWS::Lambda::Function')) as any[];
    expect(new Set(fns.map((f) => f.Properties.Description.replace('memvault ', '')))).toEqual(expected);
    for (const f of fns) {
      expect(f.Properties).toMatchObject({ Runtime: 'nodejs24.x', Architectures: ['arm64'], LoggingConfig: { LogGroup: { Ref: expect.any(String) } } });
    }
    primary.resourceCountIs('AWS::Logs::LogGroup', expected.size + STATE_MACHINES.length);
    primary.hasResourceProperties('AWS::Logs::LogGroup', { RetentionInDays: 90 });
  });

  it('sizes data movers bigger than planners', () => {
    primary.hasResourceProperties('AWS::Lambda::Function', { Description: 'memvault export-stream', MemorySize: 2048, Timeout: 900, EphemeralStorage: { Size: 10240 } });
    primary.hasResourceProperties('AWS::Lambda::Function', { Description: 'memvault plan-backup', MemorySize: 256, Timeout: 60 });
  });

  it('gives handlers the config with vaults in the created buckets, KMS keys and the region topic, and it validates', () => {
    const fn = Object.values(primary.findResources('AWS::Lambda::Function', { Properties: { Description: 'memvault plan-backup' } }))[0] as any;
    // The config object `cdk deploy` uploads, which the function names in MEMVAULT_CONFIG_S3.
    const json = configObjectOf(assemblyDir, 'Memvault-Primary', fn.Properties.Environment.Variables).body.toString('utf8');
    const cfg = parseConfig(JSON.parse(json), kindSchemas, '/var/task');
    expect(cfg.vault.primary).toEqual({ url: `s3://${VAULT_EU_WEST}/vault`, region: 'eu-west-1' });
    expect(cfg.vault.secondary).toEqual({ url: `s3://${VAULT_EU_CENTRAL}/vault`, region: 'eu-central-1' });
    expect(cfg.encryption).toEqual({ kms: {
      primary: 'arn:aws:kms:eu-west-1:111111111111:alias/memvault-vault',
      secondary: 'arn:aws:kms:eu-central-1:111111111111:alias/memvault-vault',
      region: 'eu-west-1', secondaryRegion: 'eu-central-1',
    } });
    expect(cfg.alerts).toEqual([{ type: 'sns', topicArn: 'arn:aws:sns:eu-west-1:111111111111:memvault-alerts', region: 'eu-west-1' }]);
    expect(Object.keys(cfg.components).sort()).toEqual(['concept-graph', 'config', 'memory-db', 'model-weights']);
    const drFn = Object.values(dr.findResources('AWS::Lambda::Function', { Properties: { Description: 'memvault plan-restore' } }))[0] as any;
    const drJson = configObjectOf(assemblyDir, 'Memvault-Dr', drFn.Properties.Environment.Variables).body.toString('utf8');
    expect(JSON.parse(drJson).alerts[0].topicArn).toBe('arn:aws:sns:eu-central-1:111111111111:memvault-alerts');
  });

  it('creates every state machine with each placeholder bound to its handler, logging ALL and tracing', () => {
    for (const [t, names] of [[primary, STATE_MACHINES], [dr, ['restore']]] as const) {
      t.resourceCountIs('AWS::StepFunctions::StateMachine', names.length);
      for (const name of names) {
        const text = readFileSync(path.join(ROOT, 'statemachines', `${name}.asl.json`), 'utf8');
        const subs = new Capture();
        t.hasResourceProperties('AWS::StepFunctions::StateMachine', {
          StateMachineName: `memvault-${name}`,
          DefinitionString: text,
          DefinitionSubstitutions: subs,
          TracingConfiguration: { Enabled: true },
          LoggingConfiguration: { Level: 'ALL', Destinations: [{ CloudWatchLogsLogGroup: { LogGroupArn: Match.anyValue() } }] },
        });
        const bound = subs.asObject();
        for (const ph of placeholdersOf(text)) {
          expect(bound[ph], `${name}: \${${ph}}`).toEqual({ 'Fn::GetAtt': [expect.stringMatching(/^Handlers/), 'Arn'] });
        }
      }
    }
  });

  it('alarms on failed, timed-out and aborted executions of each state machine, for the dashboard only (each failure is alerted once elsewhere)', () => {
    for (const metric of ['ExecutionsFailed', 'ExecutionsTimedOut', 'ExecutionsAborted']) {
      const alarms = primary.findResources('AWS::CloudWatch::Alarm', { Properties: { MetricName: metric, Namespace: 'AWS/States' } });
      expect(Object.keys(alarms)).toHaveLength(STATE_MACHINES.length);
      for (const a of Object.values(alarms) as any[]) expect(a.Properties.AlarmActions ?? []).toEqual([]);
    }
    dr.resourceCountIs('AWS::CloudWatch::Alarm', 3);
  });

  it('publishes alerts to a KMS-encrypted, TLS-only topic with the configured subscriptions', () => {
    primary.hasResourceProperties('AWS::SNS::Topic', { TopicName: 'memvault-alerts', KmsMasterKeyId: Match.anyValue() });
    primary.hasResourceProperties('AWS::SNS::Subscription', { Protocol: 'email', Endpoint: 'oncall@example.com' });
    primary.hasResourceProperties('AWS::SNS::Subscription', { Protocol: 'https', Endpoint: 'https://hooks.example.com/memvault' });
    primary.hasResourceProperties('AWS::SNS::TopicPolicy', {
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]) },
    });
    dr.hasResourceProperties('AWS::SNS::Subscription', { Protocol: 'email', Endpoint: 'oncall@example.com' });
  });

  it('alerts through EventBridge on executions that timed out, were aborted, or failed without alerting', () => {
    const topic = logicalId(primary, 'AWS::SNS::Topic', { TopicName: 'memvault-alerts' });
    primary.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['aws.states'],
        'detail-type': ['Step Functions Execution Status Change'],
        detail: {
          stateMachineArn: Match.arrayWith([{ Ref: Match.stringLikeRegexp('^BackupRun') }]),
          $or: Match.arrayWith([{ status: ['TIMED_OUT', 'ABORTED'] }, { status: ['FAILED'], cause: [{ 'anything-but': { prefix: '[alerted] ' } }] }]),
        },
      },
      Targets: [Match.objectLike({ Arn: { Ref: topic } })],
    });
  });

  it('schedules one backup-run per cron and time zone, plus the drill, retention and rpo-watch jobs', () => {
    const schedules = Object.values(primary.findResources('AWS::Scheduler::Schedule')) as any[];
    const byInput = schedules.map((s) => ({ expr: s.Properties.ScheduleExpression, tz: s.Properties.ScheduleExpressionTimezone, input: JSON.parse(s.Properties.Target.Input) }));
    expect(byInput).toEqual(expect.arrayContaining([
      // memory-db and concept-graph share 0 2 * * * in Europe/Paris: one execution.
      { expr: 'cron(0 2 * * ? *)', tz: 'Europe/Paris', input: { schedule: '0 2 * * *', timezone: 'Europe/Paris' } },
      { expr: 'cron(30 2 * * ? *)', tz: 'UTC', input: { schedule: '30 2 * * *', timezone: 'UTC' } },
      { expr: 'cron(0 3 ? * SUN *)', tz: 'UTC', input: { schedule: '0 3 * * 0', timezone: 'UTC' } },
      { expr: 'cron(0 4 * * ? *)', tz: 'UTC', input: {} },
      { expr: 'cron(30 5 * * ? *)', tz: 'UTC', input: {} },
      { expr: 'cron(0/15 * * * ? *)', tz: 'UTC', input: {} },
    ]));
    expect(schedules).toHaveLength(6);
    const rpo = schedules.find((s) => s.Properties.ScheduleExpression === 'cron(0/15 * * * ? *)');
    expect(rpo.Properties.Target.Arn).toEqual({ Ref: expect.stringMatching(/^RpoWatch/) });
  });

  it('draws the dashboard from the Memvault metrics of every component', () => {
    const dash = Object.values(primary.findResources('AWS::CloudWatch::Dashboard'))[0] as any;
    const body = JSON.stringify(dash.Properties.DashboardBody);
    for (const m of ['LastBackupAgeSeconds', 'BytesStored', 'NewBytes', 'BackupDurationSeconds', 'BackupFailures', 'DrillResult']) {
      expect(body).toContain(m);
    }
    for (const c of ['memory-db', 'concept-graph', 'model-weights', 'config']) expect(body).toContain(c);
    expect(body).toContain(METRIC_NAMESPACE);
    // Exactly the names and dimensions the handlers emit (functions/handlers/metrics.ts).
    const text = (dash.Properties.DashboardBody['Fn::Join']?.[1] ?? [dash.Properties.DashboardBody]).filter((p: unknown) => typeof p === 'string').join('');
    const drawn = new Set([...text.matchAll(/\["Memvault","([A-Za-z]+)","([A-Za-z]+)"/g)].map((m) => `${m[1]}/${m[2]}`));
    expect([...drawn].sort()).toEqual(Object.values(METRICS).map((n) => `${n}/${METRIC_DIMENSION[n]}`).sort());
  });

  describe('roles', () => {
    it('recovery team: reads both vaults and starts and watches restores, never deletes or rewrites', () => {
      const s = roleStatements(primary, 'Memvault-RecoveryTeam');
      const vault = logicalId(primary, 'AWS::S3::Bucket', { BucketName: VAULT_EU_WEST });
      expect(decision(s, 's3:GetObject', vault)).toBe('allow');
      expect(decision(s, 's3:GetObject', VAULT_EU_CENTRAL)).toBe('allow');
      expect(decision(s, 's3:ListBucket', vault)).toBe('allow');
      expect(decision(s, 'kms:Decrypt', 'kms:eu-central-1')).toBe('allow');
      expect(decision(s, 'states:StartExecution', 'RestoreStateMachine')).toBe('allow');
      expect(decision(s, 'states:StartExecution', 'stateMachine:memvault-restore')).toBe('allow');
      expect(decision(s, 'states:GetExecutionHistory', 'eu-central-1:111111111111:execution:memvault-restore')).toBe('allow');
      expect(decision(s, 'states:StartExecution', 'BackupRunStateMachine')).toBe('implicit-deny');
      for (const a of ['s3:DeleteObject', 's3:DeleteObjectVersion', 's3:PutObject', 's3:BypassGovernanceRetention', 's3:PutLifecycleConfiguration']) {
        expect(decision(s, a, vault), a).toBe('deny');
        expect(decision(s, a, VAULT_EU_CENTRAL), a).toBe('deny');
      }
    });

    it('auditors: list the vaults and read execution history, never read objects or decrypt', () => {
      const s = roleStatements(primary, 'Memvault-Auditors');
      const vault = logicalId(primary, 'AWS::S3::Bucket', { BucketName: VAULT_EU_WEST });
      expect(decision(s, 's3:ListBucket', vault)).toBe('allow');
      expect(decision(s, 's3:ListBucket', VAULT_EU_CENTRAL)).toBe('allow');
      expect(decision(s, 's3:GetBucketObjectLockConfiguration', vault)).toBe('allow');
      expect(decision(s, 'states:GetExecutionHistory', 'BackupRunStateMachine')).toBe('allow');
      expect(decision(s, 'states:DescribeExecution', 'eu-central-1:111111111111:execution:memvault-restore')).toBe('allow');
      expect(decision(s, 'states:StartExecution', 'RestoreStateMachine')).toBe('implicit-deny');
      expect(decision(s, 's3:GetObject', vault)).toBe('deny');
      expect(decision(s, 's3:GetObject', VAULT_EU_CENTRAL)).toBe('deny');
      expect(decision(s, 's3:DeleteObject', vault)).toBe('deny');
      expect(decision(s, 'kms:Decrypt', 'kms:eu-west-1')).toBe('deny');
    });

    it('are assumable only by the configured principals', () => {
      primary.hasResourceProperties('AWS::IAM::Role', {
        RoleName: 'Memvault-RecoveryTeam',
        AssumeRolePolicyDocument: { Statement: [Match.objectLike({ Principal: { AWS: 'arn:aws:iam::111111111111:role/Oncall' } })] },
      });
    });

    it('are assumable only with MFA: AssumeRole without it is denied by the trust policy, with it allowed', async () => {
      const trust = (name: string) => (Object.values(primary.findResources('AWS::IAM::Role', { Properties: { RoleName: name } }))[0] as any)
        .Properties.AssumeRolePolicyDocument;
      const who = { 'Memvault-RecoveryTeam': 'arn:aws:iam::111111111111:role/Oncall', 'Memvault-Auditors': 'arn:aws:iam::111111111111:role/Audit' };
      for (const [role, principal] of Object.entries(who)) {
        for (const st of trust(role).Statement) expect(st.Condition, `${role} trust statement`).toEqual({ Bool: { 'aws:MultiFactorAuthPresent': 'true' } });
        // The caller's own policy allows any AssumeRole: only the trust policy can refuse.
        const evaluator = await PolicyEvaluator.create({
          account: '111111111111',
          principals: [{ roleArn: principal, policies: [{ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 'sts:AssumeRole', Resource: '*' }] }] }],
          resourcePolicies: [{ resourceArn: `arn:aws:iam::111111111111:role/${role}`, policy: trust(role) }],
        });
        const assume = (mfa?: string) => evaluator.decide({
          principal, action: 'sts:AssumeRole', resource: `arn:aws:iam::111111111111:role/${role}`,
          context: mfa === undefined ? {} : { 'aws:MultiFactorAuthPresent': mfa },
        }).allowed;
        expect({ role, withoutFlag: assume(), withoutMfa: assume('false'), withMfa: assume('true') })
          .toEqual({ role, withoutFlag: false, withoutMfa: false, withMfa: true });
      }
      // Where an identity provider enforces MFA (aws.roles.requireMfa: false), the trust has no such condition.
      const doc = exampleDoc();
      doc.aws.roles.requireMfa = false;
      const t = Template.fromStack(buildApp(doc).primary);
      const st = (Object.values(t.findResources('AWS::IAM::Role', { Properties: { RoleName: 'Memvault-RecoveryTeam' } }))[0] as any).Properties.AssumeRolePolicyDocument.Statement;
      expect(st.map((x: any) => x.Condition)).toEqual([undefined]);
    });

    it('function roles: retention prunes both vaults, backups write the primary only, the DR ones only read; alerting publishes', () => {
      const vault = logicalId(primary, 'AWS::S3::Bucket', { BucketName: VAULT_EU_WEST });
      const s = roleStatements(primary, 'Memvault-Primary-Retention');
      for (const a of ['s3:GetObject', 's3:PutObject', 's3:DeleteObject']) {
        expect(decision(s, a, vault), a).toBe('allow');
        expect(decision(s, a, VAULT_EU_CENTRAL), a).toBe('allow');
      }
      expect(decision(s, 's3:PutBucketPolicy', vault)).toBe('implicit-deny');
      expect(decision(s, 's3:BypassGovernanceRetention', vault)).toBe('implicit-deny');
      const b = roleStatements(primary, 'Memvault-Primary-Backup');
      expect(decision(b, 's3:PutObject', vault)).toBe('allow');
      expect(decision(b, 's3:PutObject', VAULT_EU_CENTRAL)).toBe('implicit-deny');
      expect(decision(roleStatements(primary, 'Memvault-Primary-Alerting'), 'sns:Publish', 'AlertsTopic')).toBe('allow');
      expect(decision(roleStatements(primary, 'Memvault-Primary-Alerting'), 's3:GetObject', vault)).toBe('implicit-deny');
      const d = roleStatements(dr, 'Memvault-Dr-Restore');
      expect(decision(d, 's3:GetObject', VAULT_EU_WEST)).toBe('allow');
      expect(decision(d, 's3:PutObject', VAULT_EU_WEST)).toBe('implicit-deny');
      expect(decision(d, 's3:DeleteObject', VAULT_EU_WEST)).toBe('implicit-deny');
    });
  });

  describe('access to the sources (rds-snapshot memory-db, aurora-snapshot concept-graph, s3-prefix model-weights and config)', () => {
    const groupRole = (t: Template, name: string) => roleStatements(t, name);
    const arn = (region: string, rest: string) => ({ 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, `:rds:${region}:111111111111:${rest}`]] });
    const sid = (statements: any[], name: string) => {
      const found = statements.filter((x) => x.Sid === name);
      expect(found, name).toHaveLength(1);
      return found[0];
    };

    it('creates snapshots of the configured instance and cluster only, named memvault-*', () => {
      const s = groupRole(primary, 'Memvault-Primary-Snapshot');
      expect(sid(s, 'CreateInstanceSnapshots')).toMatchObject({ Effect: 'Allow', Action: 'rds:CreateDBSnapshot' });
      expect(sid(s, 'CreateInstanceSnapshots').Resource).toEqual(expect.arrayContaining([arn('eu-west-1', 'db:memory-db'), arn('eu-west-1', 'snapshot:memvault-*')]));
      expect(sid(s, 'CreateInstanceSnapshots').Resource).toHaveLength(2);
      expect(sid(s, 'CreateClusterSnapshots').Resource).toEqual(expect.arrayContaining([arn('eu-west-1', 'cluster:concept-graph'), arn('eu-west-1', 'cluster-snapshot:memvault-*')]));
      expect(sid(s, 'CopyInstanceSnapshotsToDr')).toMatchObject({ Action: 'rds:CopyDBSnapshot' });
      expect(sid(s, 'CopyInstanceSnapshotsToDr').Resource).toEqual(expect.arrayContaining([arn('eu-west-1', 'snapshot:memvault-*'), arn('eu-central-1', 'snapshot:memvault-*')]));
      expect(sid(s, 'CopyClusterSnapshotsToDr')).toMatchObject({ Action: 'rds:CopyDBClusterSnapshot' });
      expect(sid(s, 'TagInstanceSnapshots')).toMatchObject({ Action: 'rds:AddTagsToResource', Condition: { StringEquals: { 'aws:RequestTag/memvault:managed': 'true' } } });
      expect(sid(s, 'DescribeDatabasesAndSnapshots')).toMatchObject({ Resource: '*' });
      expect([sid(s, 'DescribeDatabasesAndSnapshots').Action].flat().every((a: string) => a.startsWith('rds:Describe'))).toBe(true);
      expect(decision(s, 'rds:CreateDBSnapshot', ':db:other-db')).toBe('implicit-deny');
      expect(decision(s, 'rds:ModifyDBInstance', ':db:memory-db')).toBe('implicit-deny');
      expect(decision(s, 'rds:DeleteDBInstance', ':db:')).toBe('implicit-deny');
    });

    it('deletes only memvault-* snapshots tagged memvault:managed=true, in both regions', () => {
      const s = groupRole(primary, 'Memvault-Primary-Retention');
      for (const [name, action, type] of [['DeleteOwnInstanceSnapshots', 'rds:DeleteDBSnapshot', 'snapshot'], ['DeleteOwnClusterSnapshots', 'rds:DeleteDBClusterSnapshot', 'cluster-snapshot']] as const) {
        const st = sid(s, name);
        expect(st).toMatchObject({ Effect: 'Allow', Action: action, Condition: { StringEquals: { 'aws:ResourceTag/memvault:managed': 'true' } } });
        expect(st.Resource).toEqual([arn('eu-central-1', `${type}:memvault-*`), arn('eu-west-1', `${type}:memvault-*`)]);
      }
    });

    it('uses the DR key for the copies only through RDS in the DR region, by ARN or by alias', () => {
      const s = groupRole(primary, 'Memvault-Primary-Snapshot');
      expect(sid(s, 'DrSnapshotKeyEuCentral1')).toMatchObject({
        Action: 'kms:CreateGrant',
        Resource: 'arn:aws:kms:eu-central-1:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab',
        Condition: { StringEquals: { 'kms:ViaService': 'rds.eu-central-1.amazonaws.com' }, Bool: { 'kms:GrantIsForAWSResource': 'true' } },
      });
      // kms:GrantIsForAWSResource is in CreateGrant requests only: DescribeKey (which RDS also calls) has no such condition.
      expect(sid(s, 'DrSnapshotKeyDescribeEuCentral1')).toMatchObject({
        Action: 'kms:DescribeKey',
        Resource: 'arn:aws:kms:eu-central-1:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab',
        Condition: { StringEquals: { 'kms:ViaService': 'rds.eu-central-1.amazonaws.com' } },
      });
      expect(sid(s, 'DrSnapshotKeyByAliasEuCentral1')).toMatchObject({
        Condition: { 'ForAnyValue:StringEquals': { 'kms:ResourceAliases': ['alias/memvault-dr-snapshots'] } },
      });
    });

    it('restores only into new databases tagged memvault:managed=true; the DR role only in the DR region and never snapshots or deletes', () => {
      const s = groupRole(primary, 'Memvault-Primary-Restore');
      const r = sid(s, 'RestoreIntoNewTaggedDatabases');
      expect(r.Action).toEqual(['rds:CreateDBInstance', 'rds:RestoreDBClusterFromSnapshot', 'rds:RestoreDBClusterToPointInTime', 'rds:RestoreDBInstanceFromDBSnapshot', 'rds:RestoreDBInstanceToPointInTime']);
      expect(r.Condition).toEqual({ StringEquals: { 'aws:RequestTag/memvault:managed': 'true' } });
      expect(r.Resource).toEqual(expect.arrayContaining([arn('eu-west-1', 'db:*'), arn('eu-central-1', 'cluster:*'), arn('eu-central-1', 'snapshot:memvault-*')]));
      const d = groupRole(dr, 'Memvault-Dr-Restore');
      const dRestore = sid(d, 'RestoreIntoNewTaggedDatabases');
      expect(JSON.stringify(dRestore.Resource)).not.toContain('eu-west-1');
      for (const a of ['rds:CreateDBSnapshot', 'rds:CopyDBSnapshot', 'rds:DeleteDBSnapshot', 'rds:DeleteDBClusterSnapshot']) expect(decision(d, a, 'memvault-'), a).toBe('implicit-deny');
      expect(sid(d, 'DrSnapshotKeyEuCentral1')).toBeDefined();
    });

    it('reads the s3-prefix sources under their prefix only', () => {
      const s = groupRole(primary, 'Memvault-Primary-Backup');
      expect(sid(s, 'ReadS3SourceModelWeights')).toMatchObject({ Action: 's3:GetObject', Resource: { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':s3:::platform-models-111111111111/weights/*']] } });
      expect(sid(s, 'ListS3SourceModelWeights')).toMatchObject({ Action: 's3:ListBucket', Condition: { StringLike: { 's3:prefix': ['weights/*'] } } });
      expect(decision(s, 's3:PutObject', 'platform-models-111111111111')).toBe('implicit-deny');
    });
  });

  it('has no unacknowledged cdk-nag AwsSolutions findings', () => {
    expect(violations.map((v) => `${v.ruleName} at ${v.violatingResources.map((r) => r.constructPath).join(', ')}`)).toEqual([]);
  });
});

describe('bad config fails at synth naming the field', () => {
  const withAws = (patch: Record<string, unknown>) => {
    const doc = exampleDoc();
    doc.aws = { ...doc.aws, ...patch };
    return doc;
  };

  it.each([
    ['aws.objectLock.mode', { objectLock: { mode: 'strict', days: 30 } }],
    ['aws.account', { account: '1234' }],
    ['aws.drRegion', { drRegion: 'eu-west-1' }],
    ['aws.alerts.https.0', { alerts: { https: ['http://insecure.example.com'] } }],
    ['aws.logRetentionDays', { logRetentionDays: 8 }],
    ['aws.vpc.subnetIds.0', { vpc: { subnetIds: ['vpc-123'], securityGroupIds: ['sg-0123456789abcdef0'] } }],
    ['aws.databaseSecrets.components.nope', { databaseSecrets: { components: { nope: 'arn:aws:secretsmanager:eu-west-1:111111111111:secret:db' } } }],
    ['aws.lambda.handlers.not-a-handler', { lambda: { handlers: { 'not-a-handler': { memoryMb: 512 } } } }],
    ['aws.lambda.handlers.export-stream.timeoutSeconds', { lambda: { handlers: { 'export-stream': { timeoutSeconds: 3600 } } } }],
    ['aws.stackPrefix', { stackPrefix: 'has space' }],
  ])('%s', (field, patch) => {
    expect(() => buildApp(withAws(patch))).toThrow(field);
  });

  it.each(['files', 'sqlite'])('a component of kind %s (a local path Lambda cannot reach)', (kind) => {
    const doc = exampleDoc();
    doc.components['graph-files'] = { kind, path: '/mnt/platform/graph' + (kind === 'sqlite' ? '.db' : '') };
    expect(() => buildApp(doc)).toThrow(new RegExp(`components\\.graph-files\\.kind: "${kind}" reads a local path \\(/mnt/platform/graph.*\\).*cannot reach.*s3-prefix`));
  });

  it('a physical / continuous postgres component (pg_basebackup and a recovery server cannot run in Lambda)', () => {
    const doc = exampleDoc();
    doc.components['self-managed-db'] = { kind: 'postgres', host: 'db.internal', database: 'memory', secretArn: 'arn:aws:secretsmanager:eu-west-1:111111111111:secret:db-AbCdEf', method: 'physical', continuous: {} };
    expect(() => buildApp(doc)).toThrow(/components\.self-managed-db: physical base backups and point-in-time restore .* self-managed PostgreSQL with the local runtime.*rds-snapshot or aurora-snapshot/);
  });

  it('a command recovery check or hook (Lambda has no shell to run it); http checks and hooks deploy', () => {
    const doc = exampleDoc();
    doc.components['memory-db'].checks = [
      { name: 'api answers', http: { url: 'https://api.example.com/health' } },
      { name: 'model loads', command: { argv: ['python', 'load.py'] } },
    ];
    expect(() => buildApp(doc)).toThrow(/components\.memory-db\.checks\.1 \(model loads\): a command check runs on the host that restores/);
    doc.components['memory-db'].checks = [{ name: 'api answers', http: { url: 'https://api.example.com/health' } }];
    doc.components['memory-db'].hooks = { beforeRestore: [{ name: 'stop', command: { argv: ['systemctl', 'stop', 'memory-api'] } }] };
    expect(() => buildApp(doc)).toThrow(/components\.memory-db\.hooks\.beforeRestore\.0 \(stop\): a command hook runs on the host/);
    doc.components['memory-db'].hooks = { beforeRestore: [{ name: 'stop', http: { url: 'https://api.example.com/admin/stop' } }] };
    expect(() => buildApp(doc)).not.toThrow();
  });

  it('lambda hooks: the restore role may invoke exactly the restore hooks\' functions, the backup role the backup hooks\'; no other role any', () => {
    const doc = exampleDoc();
    const stop = 'arn:aws:lambda:eu-west-1:111111111111:function:memory-api-stop';
    const start = 'arn:aws:lambda:eu-west-1:111111111111:function:memory-api-start:live';
    const drain = 'arn:aws:lambda:eu-west-1:111111111111:function:drain-queue';
    doc.components['memory-db'].hooks = {
      beforeRestore: [{ name: 'stop', lambda: { functionArn: stop } }],
      afterRestore: [{ name: 'start', lambda: { functionArn: start, payload: { warm: true } } }],
      beforeBackup: [{ name: 'drain', lambda: { functionArn: drain } }],
    };
    const t = Template.fromStack(buildApp(doc).primary);
    const restore = roleStatements(t, 'Memvault-Primary-Restore');
    for (const f of [stop, start]) expect(decision(restore, 'lambda:InvokeFunction', f), f).toBe('allow');
    expect(decision(restore, 'lambda:InvokeFunction', drain)).toBe('implicit-deny');
    expect(decision(restore, 'lambda:InvokeFunction', 'arn:aws:lambda:eu-west-1:111111111111:function:other')).toBe('implicit-deny');
    const backup = roleStatements(t, 'Memvault-Primary-Backup');
    expect(decision(backup, 'lambda:InvokeFunction', drain)).toBe('allow');
    expect(decision(backup, 'lambda:InvokeFunction', stop)).toBe('implicit-deny');
    for (const other of ['Memvault-Primary-Planning', 'Memvault-Primary-Alerting', 'Memvault-Primary-Retention', 'Memvault-Primary-Reporting']) {
      expect(decision(roleStatements(t, other), 'lambda:InvokeFunction', stop), other).toBe('implicit-deny');
    }
    doc.components['memory-db'].hooks = { beforeRestore: [{ name: 'stop', lambda: { functionArn: 'memory-api-stop' } }] };
    expect(() => buildApp(doc)).toThrow(/hooks\.beforeRestore\.0\.lambda\.functionArn.*arn:aws:lambda/);
  });

  it('a snapshot component without a DR region while copying to DR', () => {
    const doc = exampleDoc();
    delete doc.components['memory-db'].drRegion;
    expect(() => buildApp(doc)).toThrow('components.memory-db.drRegion');
  });

  it('a missing aws section', () => {
    const doc = exampleDoc();
    delete doc.aws;
    expect(() => buildApp(doc)).toThrow(/^aws: this config has no aws section/);
  });

  it('not a handler config over the Lambda environment limit: the config is an S3 object', () => {
    const doc = exampleDoc();
    doc.components['memory-db'].description = 'x'.repeat(5000);
    expect(() => buildApp(doc)).not.toThrow();
  });

  it('an unknown time zone', () => {
    const doc = exampleDoc();
    doc.components.config.timezone = 'Mars/Olympus';
    expect(() => buildApp(doc)).toThrow('components.config.timezone: unknown time zone "Mars/Olympus"');
  });
});

it('every state machine file the app loads exists', () => {
  const files = readdirSync(path.join(ROOT, 'statemachines')).filter((f) => f.endsWith('.asl.json')).map((f) => f.replace('.asl.json', ''));
  expect(files.sort()).toEqual([...STATE_MACHINES].sort());
});

describe('state machine bindings (fixture ASL)', () => {
  const fixtures = path.join(ROOT, 'test', 'infra', 'fixtures', 'statemachines');
  const handlersDir = path.join(ROOT, 'functions', 'handlers');

  it('binds handler ARNs and AWS values, and lets a DISTRIBUTED Map start child executions of itself', () => {
    const stack = new Stack(new App(), 'T', { env: { account: '111111111111', region: 'eu-west-1' } });
    const def = loadDefinition(fixtures, 'fanout');
    const b = bind([def], { handlersDir, local: loadLocalSubstitutions(fixtures), aws: AWS_SUBSTITUTIONS });
    expect([...b.functions.values()].sort()).toEqual(['export-stream', 'plan-backup']);
    const functions = new Map<string, lambda.IFunction>();
    for (const [ph, h] of b.functions) {
      functions.set(ph, new lambda.Function(stack, h, { runtime: lambda.Runtime.NODEJS_24_X, handler: 'index.handler', code: lambda.Code.fromInline('exports.handler=async()=>1') }));
    }
    const m = new MemvaultStateMachine(stack, 'Fanout', {
      definition: def, stateMachineName: 'memvault-fanout', functions, values: b.values,
    });
    expect(m.distributed).toBe(true);
    const t = Template.fromStack(stack);
    t.hasResourceProperties('AWS::StepFunctions::StateMachine', {
      DefinitionSubstitutions: Match.objectLike({ MapMode: 'DISTRIBUTED', MapExecutionType: 'STANDARD', PlanBackupFunctionArn: Match.anyValue() }),
    });
    t.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: { Statement: Match.arrayWith([
        Match.objectLike({ Action: 'states:StartExecution', Resource: { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':states:eu-west-1:111111111111:stateMachine:memvault-fanout']] } }),
        Match.objectLike({ Action: ['states:DescribeExecution', 'states:StopExecution'], Resource: { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':states:eu-west-1:111111111111:execution:memvault-fanout/*']] } }),
      ]) },
    });
  });

  it('fails naming every placeholder without a binding', () => {
    const def = loadDefinition(fixtures, 'unbound');
    let message = '';
    try {
      bind([def], { handlersDir, local: loadLocalSubstitutions(fixtures), aws: AWS_SUBSTITUTIONS });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain('${NoSuchHandlerFunctionArn} has no binding: expected the handler');
    expect(message).toContain('no-such-handler.ts');
    expect(message).toContain('${Mystery} has a local value (1) but no AWS value: add it to infra/substitutions.ts or aws.substitutions.Mystery');
  });
});

describe('VPC for the handlers that reach databases', () => {
  it('attaches the configured subnets and security groups to database handlers only', () => {
    const doc = exampleDoc();
    doc.aws.vpc = { subnetIds: ['subnet-0123456789abcdef0', 'subnet-0123456789abcdef1'], securityGroupIds: ['sg-0123456789abcdef0'] };
    doc.aws.databaseSecrets = { components: { 'memory-db': 'arn:aws:secretsmanager:eu-west-1:111111111111:secret:memory-db' } };
    const built = buildApp(doc);
    const t = Template.fromStack(built.primary);
    const vpcConfig = { SubnetIds: ['subnet-0123456789abcdef0', 'subnet-0123456789abcdef1'], SecurityGroupIds: ['sg-0123456789abcdef0'] };
    t.hasResourceProperties('AWS::Lambda::Function', { Description: 'memvault export-stream', VpcConfig: vpcConfig });
    t.hasResourceProperties('AWS::Lambda::Function', { Description: 'memvault restore-component', VpcConfig: vpcConfig });
    t.hasResourceProperties('AWS::Lambda::Function', { Description: 'memvault plan-backup', VpcConfig: Match.absent() });
    t.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({
        Action: ['secretsmanager:GetSecretValue', 'secretsmanager:DescribeSecret'],
        Resource: 'arn:aws:secretsmanager:eu-west-1:111111111111:secret:memory-db-??????',
      })]) },
    });
  });
});

describe('CloudTrail data events of the vault buckets', () => {
  it('each region records every read, write and delete of its vault objects, with log file validation, into its access-log bucket', () => {
    const built = buildApp(exampleDoc());
    for (const [stack, region] of [[built.primary, 'eu-west-1'], [built.dr, 'eu-central-1']] as const) {
      const t = Template.fromStack(stack);
      const trails = Object.values(t.findResources('AWS::CloudTrail::Trail')) as any[];
      expect(trails, region).toHaveLength(1);
      const p = trails[0].Properties;
      expect(p.EnableLogFileValidation).toBe(true);
      expect(p.IsMultiRegionTrail).toBe(false);
      expect(p.S3KeyPrefix).toBe('cloudtrail');
      expect(JSON.stringify(p.S3BucketName)).toContain(logicalId(t, 'AWS::S3::Bucket', { BucketName: `memvault-access-logs-111111111111-${region}` }));
      expect(p.EventSelectors).toHaveLength(1);
      const sel = p.EventSelectors[0];
      expect({ rw: sel.ReadWriteType, mgmt: sel.IncludeManagementEvents, type: sel.DataResources[0].Type }).toEqual({ rw: 'All', mgmt: false, type: 'AWS::S3::Object' });
      const values = JSON.stringify(sel.DataResources[0].Values);
      expect(values).toContain(logicalId(t, 'AWS::S3::Bucket', { BucketName: `memvault-vault-111111111111-${region}` }));
      expect(values).toContain('/vault/');
      // CloudTrail may deliver into the log bucket (the bucket policy says so, for this trail's prefix).
      const policies = JSON.stringify(t.findResources('AWS::S3::BucketPolicy'));
      expect(policies).toContain('cloudtrail.amazonaws.com');
    }
    const off = exampleDoc();
    off.aws.cloudTrailDataEvents = false;
    expect(Template.fromStack(buildApp(off).primary).findResources('AWS::CloudTrail::Trail')).toEqual({});
  });
});
