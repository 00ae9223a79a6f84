// Who may do what in the deployed two-region app, judged the way IAM does
// (@cloud-copilot/iam-simulate over the synthesized role, bucket, key and
// topic policies: conditions, wildcards, NotResource and explicit denies
// included). The example config plus an ssm-config component, an s3-prefix
// source under a customer KMS key, restore targets, a database secret and a
// VPC with endpoints. One synth for the file.
import { beforeAll, describe, expect, it } from 'vitest';
import { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { buildApp, exampleDoc } from './helpers.ts';
import { IamWorld } from './iam.ts';
import { FUNCTION_GROUPS, groupOf, groupRoleName, type FunctionGroup } from '../../infra/function-groups.ts';

const ACCOUNT = '111111111111';
const VAULT = { primary: `memvault-vault-${ACCOUNT}-eu-west-1`, dr: `memvault-vault-${ACCOUNT}-eu-central-1` };
const obj = (bucket: string, key: string) => `arn:aws:s3:::${bucket}/${key}`;
const SOURCE_KEY = `arn:aws:kms:eu-west-1:${ACCOUNT}:key/0a1b2c3d-0000-1111-2222-333344445555`;
const DB_SECRET = `arn:aws:secretsmanager:eu-west-1:${ACCOUNT}:secret:memory-db-backup-AbCdEf`;

const role = (r: 'primary' | 'dr', g: FunctionGroup) => groupRoleName('Memvault', r, g);
const ALL_GROUPS = Object.keys(FUNCTION_GROUPS) as FunctionGroup[];

function doc() {
  const d = exampleDoc();
  d.components['model-weights'].kmsKeyArn = SOURCE_KEY;
  d.components['platform-config'] = {
    kind: 'ssm-config', region: 'eu-west-1', parameterPaths: ['/memory-platform/prod'], secretPrefixes: ['prod/memory/'],
    schedule: '0 * * * *', rpo: '2h', retention: { days: 90 }, drill: { parameterPath: '/memvault-drill', secretPrefix: 'memvault-drill/' },
  };
  d.aws.databaseSecrets = { components: { 'memory-db': DB_SECRET } };
  d.aws.restoreTargets = {
    'model-weights': { bucket: `platform-restores-${ACCOUNT}`, prefix: 'model-weights/' },
    'platform-config': { parameterPaths: ['/memory-platform/restored'], secretPrefixes: ['restored/memory/'] },
  };
  d.aws.vpc = {
    subnetIds: ['subnet-0123456789abcdef0', 'subnet-0123456789abcdef1'], securityGroupIds: ['sg-0123456789abcdef0'],
    endpoints: true, vpcId: 'vpc-0123456789abcdef0', routeTableIds: ['rtb-0123456789abcdef0'],
  };
  return d;
}

describe('function roles, vault, key and topic policies (IAM evaluation of the templates)', () => {
  let primary: Template;
  let dr: Template;
  let w: IamWorld;
  const existing: { primary: FunctionGroup[]; dr: FunctionGroup[] } = { primary: [], dr: [] };
  let violations: { ruleName: string; violatingResources: { constructPath: string; findingId?: string }[] }[] = [];

  beforeAll(() => {
    const built = buildApp(doc());
    built.app.synth();
    primary = Template.fromStack(built.primary);
    dr = Template.fromStack(built.dr);
    violations = new AwsSolutionsChecks(built.app).validateScope(built.app).violations as never;
    w = new IamWorld([
      { name: 'Memvault-Primary', region: 'eu-west-1', account: ACCOUNT, template: primary },
      { name: 'Memvault-Dr', region: 'eu-central-1', account: ACCOUNT, template: dr },
    ]);
    for (const r of ['primary', 'dr'] as const) {
      const stack = r === 'primary' ? 'Memvault-Primary' : 'Memvault-Dr';
      existing[r] = [...new Set(w.handlers(stack).map((h) => groupOf(h)!))];
    }
  });

  const keyOf = (region: 'primary' | 'dr') => w.keyByAlias(region === 'primary' ? 'eu-west-1' : 'eu-central-1', 'alias/memvault-vault').arn;
  const alertTopic = (region: string) => `arn:aws:sns:${region}:${ACCOUNT}:memvault-alerts`;

  it('runs every function as the role of its group, one role per group', () => {
    for (const [stack, r] of [['Memvault-Primary', 'primary'], ['Memvault-Dr', 'dr']] as const) {
      for (const h of w.handlers(stack)) expect(w.functionRole(stack, h), h).toBe(role(r, groupOf(h)!));
    }
    expect(existing.primary.sort()).toEqual([...ALL_GROUPS].sort());
    expect(existing.dr.sort()).toEqual(['alerting', 'backup', 'planning', 'reporting', 'restore']);
  });

  it('has no unacknowledged cdk-nag AwsSolutions findings with sources, restore targets and VPC endpoints', () => {
    expect(violations.map((v) => `${v.ruleName} at ${v.violatingResources.map((r) => `${r.constructPath} ${r.findingId ?? ''}`).join(', ')}`)).toEqual([]);
  });

  it('send-alert publishes alerts and can read, write or delete nothing else', async () => {
    const alerting = role('primary', 'alerting');
    expect(await w.decide(alerting, 'sns:Publish', alertTopic('eu-west-1'))).toBe('Allowed');
    for (const [action, resource] of [
      ['s3:GetObject', obj(VAULT.primary, 'vault/manifests/memory-db/x')],
      ['s3:DeleteObject', obj(VAULT.primary, 'vault/packs/ab/abcd')],
      ['s3:PutObject', obj(VAULT.dr, 'vault/packs/ab/abcd')],
      ['kms:Decrypt', keyOf('primary')],
      ['secretsmanager:GetSecretValue', DB_SECRET],
      ['ssm:GetParametersByPath', `arn:aws:ssm:eu-west-1:${ACCOUNT}:parameter/memory-platform/prod`],
      ['rds:DeleteDBSnapshot', `arn:aws:rds:eu-west-1:${ACCOUNT}:snapshot:memvault-memory-db-1`],
    ] as const) {
      expect(await w.decide(alerting, action, resource), `${action} ${resource}`).not.toBe('Allowed');
    }
  });

  it('planners and rpo-watch read and list the vaults and write nothing', async () => {
    for (const g of ['planning', 'rpo', 'verify'] as const) {
      const r = role('primary', g);
      expect(await w.decide(r, 's3:GetObject', obj(VAULT.primary, 'vault/manifests/memory-db/x')), g).toBe('Allowed');
      expect(await w.decide(r, 's3:ListBucket', `arn:aws:s3:::${VAULT.primary}`, { 's3:prefix': 'vault/manifests/' }), g).toBe('Allowed');
      expect(await w.decide(r, 'kms:Decrypt', keyOf('primary')), g).toBe('Allowed');
      for (const v of [VAULT.primary, VAULT.dr]) {
        expect(await w.decide(r, 's3:PutObject', obj(v, 'vault/manifests/memory-db/x')), `${g} ${v}`).not.toBe('Allowed');
        expect(await w.decide(r, 's3:PutObject', obj(v, 'vault/locks/x')), `${g} ${v}`).not.toBe('Allowed');
      }
      // verify appends its audit record (an SSE-KMS write); the others write nothing at all.
      expect(await w.decide(r, 'kms:GenerateDataKey', keyOf('primary')), g).toBe(g === 'verify' ? 'Allowed' : 'ImplicitlyDenied');
      expect(await w.decide(r, 's3:PutObject', obj(VAULT.primary, 'vault/audit/20261207T120000000Z-0a1b2c3d')), g).toBe(g === 'verify' ? 'Allowed' : 'ImplicitlyDenied');
      expect(await w.decide(r, 'sns:Publish', alertTopic('eu-west-1')), g).toBe(g === 'rpo' ? 'Allowed' : 'ImplicitlyDenied');
    }
    expect(await w.decide(role('primary', 'planning'), 's3:GetObject', obj(VAULT.dr, 'vault/manifests/memory-db/x'))).toBe('Allowed');
  });

  it('the ends of runs, restores and drills append audit records to either vault and write nothing else', async () => {
    const r = role('primary', 'reporting');
    for (const v of [VAULT.primary, VAULT.dr]) {
      expect(await w.decide(r, 's3:PutObject', obj(v, 'vault/audit/20261207T120000000Z-0a1b2c3d')), v).toBe('Allowed');
      for (const key of ['vault/chunks/ab/abcd', 'vault/manifests/memory-db/x', 'vault/locks/x', 'vault/vault.json', 'vault/auditx']) {
        expect(await w.decide(r, 's3:PutObject', obj(v, key)), `${v}/${key}`).not.toBe('Allowed');
      }
      expect(await w.decide(r, 's3:DeleteObject', obj(v, 'vault/audit/20261207T120000000Z-0a1b2c3d')), v).not.toBe('Allowed');
    }
    expect(await w.decide(r, 'kms:GenerateDataKey', keyOf('primary'))).toBe('Allowed');
    expect(await w.decide(r, 'sns:Publish', alertTopic('eu-west-1'))).toBe('Allowed');
    expect(await w.decide(r, 'secretsmanager:GetSecretValue', DB_SECRET)).not.toBe('Allowed');
  });

  it('no one deletes an audit record, the retention role and an administrator included', async () => {
    const admin = { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 's3:*', Resource: '*' }] };
    for (const v of [VAULT.primary, VAULT.dr]) {
      for (const principal of [`arn:aws:iam::${ACCOUNT}:role/Admin`, `arn:aws:iam::${ACCOUNT}:role/${role('primary', 'retention')}`]) {
        expect(await w.decide('admin', 's3:DeleteObject', obj(v, 'vault/audit/20261207T120000000Z-0a1b2c3d'), {}, { identity: admin, principalArn: principal }), principal).toBe('ExplicitlyDenied');
      }
      expect(await w.decide(role('primary', 'retention'), 's3:DeleteObject', obj(v, 'vault/audit/20261207T120000000Z-0a1b2c3d'))).toBe('ExplicitlyDenied');
    }
  });

  it('only the primary retention role deletes vault objects or service snapshots, in either region', async () => {
    const snapshot = (region: string) => `arn:aws:rds:${region}:${ACCOUNT}:snapshot:memvault-memory-db-20260101`;
    for (const r of ['primary', 'dr'] as const) {
      for (const g of existing[r]) {
        const name = role(r, g);
        const expected = name === role('primary', 'retention') ? 'Allowed' : 'not';
        for (const v of [VAULT.primary, VAULT.dr]) {
          for (const key of ['vault/packs/ab/abcd', 'vault/manifests/memory-db/x', 'vault/heads/memory-db/1.x', 'vault/vault.json']) {
            const d = await w.decide(name, 's3:DeleteObject', obj(v, key));
            if (expected === 'Allowed') expect(d, `${name} ${v}/${key}`).toBe('Allowed');
            else expect(d, `${name} ${v}/${key}`).not.toBe('Allowed');
          }
          expect(await w.decide(name, 's3:DeleteObjectVersion', obj(v, 'vault/packs/ab/abcd')), name).not.toBe('Allowed');
        }
        for (const region of ['eu-west-1', 'eu-central-1']) {
          const d = await w.decide(name, 'rds:DeleteDBSnapshot', snapshot(region), { 'aws:ResourceTag/memvault:managed': 'true' });
          if (expected === 'Allowed') expect(d, `${name} ${region}`).toBe('Allowed');
          else expect(d, `${name} ${region}`).not.toBe('Allowed');
        }
      }
    }
    // Retention deletes only snapshots memvault made (tagged).
    expect(await w.decide(role('primary', 'retention'), 'rds:DeleteDBSnapshot', snapshot('eu-west-1'), { 'aws:ResourceTag/memvault:managed': 'false' })).not.toBe('Allowed');
  });

  it('the vault bucket policies deny deletes to anyone but retention, whatever IAM allows', async () => {
    const admin = { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 's3:*', Resource: '*' }] };
    for (const v of [VAULT.primary, VAULT.dr]) {
      const asAdmin = (action: string, key: string) => w.decide('admin', action, obj(v, key), {}, { identity: admin, principalArn: `arn:aws:iam::${ACCOUNT}:role/Admin` });
      expect(await asAdmin('s3:DeleteObject', 'vault/packs/ab/abcd')).toBe('ExplicitlyDenied');
      expect(await asAdmin('s3:DeleteObjectVersion', 'vault/manifests/memory-db/x')).toBe('ExplicitlyDenied');
      expect(await asAdmin('s3:DeleteObject', 'vault/locks/x')).toBe('Allowed');
      expect(await asAdmin('s3:GetObject', 'vault/packs/ab/abcd')).toBe('Allowed');
      // The retention role itself, with s3:* on the bucket, still cannot delete versions.
      expect(await w.decide('admin', 's3:DeleteObject', obj(v, 'vault/packs/ab/abcd'), {}, { identity: admin, principalArn: `arn:aws:iam::${ACCOUNT}:role/${role('primary', 'retention')}` })).toBe('Allowed');
      expect(await w.decide('admin', 's3:DeleteObjectVersion', obj(v, 'vault/packs/ab/abcd'), {}, { identity: admin, principalArn: `arn:aws:iam::${ACCOUNT}:role/${role('primary', 'retention')}` })).toBe('ExplicitlyDenied');
    }
  });

  it('backup writers write the primary vault, delete only their locks and staging, never touch the DR vault', async () => {
    const r = role('primary', 'backup');
    expect(await w.decide(r, 's3:PutObject', obj(VAULT.primary, 'vault/packs/ab/abcd'))).toBe('Allowed');
    expect(await w.decide(r, 'kms:GenerateDataKey', keyOf('primary'))).toBe('Allowed');
    expect(await w.decide(r, 's3:DeleteObject', obj(VAULT.primary, 'vault/locks/backup-1'))).toBe('Allowed');
    expect(await w.decide(r, 's3:DeleteObject', obj(VAULT.primary, 'vault/staging/run/model-weights/0'))).toBe('Allowed');
    expect(await w.decide(r, 's3:DeleteObject', obj(VAULT.primary, 'vault/packs/ab/abcd'))).not.toBe('Allowed');
    expect(await w.decide(r, 's3:PutObject', obj(VAULT.dr, 'vault/packs/ab/abcd'))).not.toBe('Allowed');
    expect(await w.decide(r, 's3:GetObject', obj(VAULT.dr, 'vault/packs/ab/abcd'))).not.toBe('Allowed');
  });

  it('replicate reads the primary (locking it) and writes the DR vault; only replicate and retention write the DR vault', async () => {
    const r = role('primary', 'replicate');
    expect(await w.decide(r, 's3:GetObject', obj(VAULT.primary, 'vault/packs/ab/abcd'))).toBe('Allowed');
    expect(await w.decide(r, 's3:PutObject', obj(VAULT.primary, 'vault/locks/replicate-1'))).toBe('Allowed');
    expect(await w.decide(r, 's3:PutObject', obj(VAULT.primary, 'vault/packs/ab/abcd'))).not.toBe('Allowed');
    expect(await w.decide(r, 's3:PutObject', obj(VAULT.dr, 'vault/packs/ab/abcd'))).toBe('Allowed');
    expect(await w.decide(r, 'kms:GenerateDataKey', keyOf('dr'))).toBe('Allowed');
    const drWriters: string[] = [];
    for (const rr of ['primary', 'dr'] as const) {
      for (const g of existing[rr]) {
        if (await w.decide(role(rr, g), 's3:PutObject', obj(VAULT.dr, 'vault/manifests/memory-db/x')) === 'Allowed') drWriters.push(role(rr, g));
      }
    }
    expect(drWriters.sort()).toEqual([role('primary', 'replicate'), role('primary', 'retention')]);
  });

  it('the DR region\'s roles read the vaults and write neither, not even locks', async () => {
    for (const g of existing.dr) {
      for (const v of [VAULT.primary, VAULT.dr]) {
        for (const key of ['vault/packs/ab/abcd', 'vault/locks/x', 'vault/staging/x']) {
          expect(await w.decide(role('dr', g), 's3:PutObject', obj(v, key)), `${g} ${v}/${key}`).not.toBe('Allowed');
        }
      }
      expect(await w.decide(role('dr', g), 'kms:GenerateDataKey', keyOf('dr')), g).not.toBe('Allowed');
    }
    expect(await w.decide(role('dr', 'restore'), 's3:GetObject', obj(VAULT.dr, 'vault/packs/ab/abcd'))).toBe('Allowed');
    expect(await w.decide(role('dr', 'restore'), 'kms:Decrypt', keyOf('dr'))).toBe('Allowed');
  });

  it('snapshot handlers create and copy memvault snapshots and cannot delete them or write the vault', async () => {
    const r = role('primary', 'snapshot');
    expect(await w.decide(r, 'rds:CreateDBSnapshot', `arn:aws:rds:eu-west-1:${ACCOUNT}:db:memory-db`)).toBe('Allowed');
    expect(await w.decide(r, 'rds:CreateDBSnapshot', `arn:aws:rds:eu-west-1:${ACCOUNT}:db:other-db`)).not.toBe('Allowed');
    expect(await w.decide(r, 'rds:CopyDBSnapshot', `arn:aws:rds:eu-central-1:${ACCOUNT}:snapshot:memvault-memory-db-1`)).toBe('Allowed');
    expect(await w.decide(r, 'rds:DeleteDBSnapshot', `arn:aws:rds:eu-west-1:${ACCOUNT}:snapshot:memvault-memory-db-1`, { 'aws:ResourceTag/memvault:managed': 'true' })).not.toBe('Allowed');
    expect(await w.decide(r, 's3:PutObject', obj(VAULT.primary, 'vault/packs/ab/abcd'))).not.toBe('Allowed');
  });

  describe('sources and restore targets (item 4)', () => {
    it('backup writers read exactly the configured parameter paths and secret prefixes', async () => {
      const r = role('primary', 'backup');
      const param = (p: string) => `arn:aws:ssm:eu-west-1:${ACCOUNT}:parameter/${p}`;
      const secret = (n: string) => `arn:aws:secretsmanager:eu-west-1:${ACCOUNT}:secret:${n}`;
      expect(await w.decide(r, 'ssm:GetParametersByPath', param('memory-platform/prod'))).toBe('Allowed');
      expect(await w.decide(r, 'ssm:GetParameters', param('memory-platform/prod/db/host'))).toBe('Allowed');
      expect(await w.decide(r, 'ssm:GetParametersByPath', param('memory-platform/staging'))).not.toBe('Allowed');
      expect(await w.decide(r, 'ssm:GetParameter', param('memory-platform/production'))).not.toBe('Allowed');
      expect(await w.decide(r, 'ssm:DescribeParameters', '*')).toBe('Allowed');
      expect(await w.decide(r, 'secretsmanager:GetSecretValue', secret('prod/memory/openai-AbCdEf'))).toBe('Allowed');
      expect(await w.decide(r, 'secretsmanager:GetSecretValue', secret('prod/billing/stripe-AbCdEf'))).not.toBe('Allowed');
      expect(await w.decide(r, 'secretsmanager:ListSecrets', '*')).toBe('Allowed');
      expect(await w.decide(r, 'secretsmanager:GetSecretValue', DB_SECRET)).toBe('Allowed');
      expect(await w.decide(r, 'ssm:PutParameter', param('memory-platform/prod/x'))).not.toBe('Allowed');
    });

    it('s3-prefix sources under a customer key decrypt through S3 only', async () => {
      const r = role('primary', 'backup');
      expect(await w.decide(r, 'kms:Decrypt', SOURCE_KEY, { 'kms:ViaService': 's3.eu-west-1.amazonaws.com' })).toBe('Allowed');
      expect(await w.decide(r, 'kms:Decrypt', SOURCE_KEY, { 'kms:ViaService': 'ssm.eu-west-1.amazonaws.com' })).not.toBe('Allowed');
      expect(await w.decide(r, 's3:GetObject', obj(`platform-models-${ACCOUNT}`, 'weights/model.bin'))).toBe('Allowed');
      expect(await w.decide(r, 's3:GetObject', obj(`platform-models-${ACCOUNT}`, 'private/keys'))).not.toBe('Allowed');
    });

    it('restores write only the configured restore bucket/prefix, parameter paths and secret prefixes', async () => {
      const r = role('primary', 'restore');
      expect(await w.decide(r, 's3:PutObject', obj(`platform-restores-${ACCOUNT}`, 'model-weights/weights/model.bin'))).toBe('Allowed');
      expect(await w.decide(r, 's3:PutObject', obj(`platform-restores-${ACCOUNT}`, 'elsewhere/model.bin'))).not.toBe('Allowed');
      expect(await w.decide(r, 's3:PutObject', obj(`platform-models-${ACCOUNT}`, 'weights/model.bin'))).not.toBe('Allowed');
      expect(await w.decide(r, 'ssm:PutParameter', `arn:aws:ssm:eu-west-1:${ACCOUNT}:parameter/memory-platform/restored/db/host`)).toBe('Allowed');
      expect(await w.decide(r, 'ssm:PutParameter', `arn:aws:ssm:eu-west-1:${ACCOUNT}:parameter/memory-platform/prod/db/host`)).not.toBe('Allowed');
      expect(await w.decide(r, 'secretsmanager:CreateSecret', `arn:aws:secretsmanager:eu-west-1:${ACCOUNT}:secret:restored/memory/openai-AbCdEf`)).toBe('Allowed');
      expect(await w.decide(r, 'secretsmanager:PutSecretValue', `arn:aws:secretsmanager:eu-west-1:${ACCOUNT}:secret:prod/memory/openai-AbCdEf`)).not.toBe('Allowed');
      expect(await w.decide(r, 'secretsmanager:GetSecretValue', DB_SECRET)).toBe('Allowed');
    });
  });

  describe('alert topic and keys', () => {
    const ruleArn = (t: Template, stack: string) => {
      const ids = Object.keys(t.findResources('AWS::Events::Rule'));
      expect(ids).toHaveLength(1);
      return `arn:aws:events:${stack === 'Memvault-Primary' ? 'eu-west-1' : 'eu-central-1'}:${ACCOUNT}:rule/${stack}-${ids[0]}-GENERATED`;
    };
    const alertsKey = (region: string) => w.keyByAlias(region, 'alias/memvault-alerts').arn;

    it('EventBridge publishes only for the failed-execution rule of this account', async () => {
      const rule = ruleArn(primary, 'Memvault-Primary');
      const ok = { 'aws:SourceAccount': ACCOUNT, 'aws:SourceArn': rule };
      expect(await w.decide('events.amazonaws.com', 'sns:Publish', alertTopic('eu-west-1'), ok)).toBe('Allowed');
      expect(await w.decide('events.amazonaws.com', 'kms:GenerateDataKey', alertsKey('eu-west-1'), ok)).toBe('Allowed');
      expect(await w.decide('events.amazonaws.com', 'sns:Publish', alertTopic('eu-west-1'), { ...ok, 'aws:SourceArn': `arn:aws:events:eu-west-1:${ACCOUNT}:rule/someone-elses` })).not.toBe('Allowed');
      expect(await w.decide('events.amazonaws.com', 'sns:Publish', alertTopic('eu-west-1'), { ...ok, 'aws:SourceAccount': '222222222222' })).not.toBe('Allowed');
      expect(await w.decide('events.amazonaws.com', 'kms:GenerateDataKey', alertsKey('eu-west-1'), { ...ok, 'aws:SourceAccount': '222222222222' })).not.toBe('Allowed');
      expect(await w.decide('events.amazonaws.com', 'sns:Publish', alertTopic('eu-west-1'), {})).not.toBe('Allowed');
    });

    it('CloudWatch cannot publish (the alarms notify nobody: one alert per failure); EventBridge only for this account\'s rule', async () => {
      const alarm = `arn:aws:cloudwatch:eu-west-1:${ACCOUNT}:alarm:memvault-backup-run-failed`;
      const ok = { 'aws:SourceAccount': ACCOUNT, 'aws:SourceArn': alarm };
      expect(await w.decide('cloudwatch.amazonaws.com', 'sns:Publish', alertTopic('eu-west-1'), ok)).not.toBe('Allowed');
      expect(await w.decide('cloudwatch.amazonaws.com', 'kms:Decrypt', alertsKey('eu-west-1'), ok)).not.toBe('Allowed');
      const rule = ruleArn(dr, 'Memvault-Dr');
      expect(await w.decide('events.amazonaws.com', 'sns:Publish', alertTopic('eu-central-1'), { 'aws:SourceAccount': ACCOUNT, 'aws:SourceArn': rule })).toBe('Allowed');
      expect(await w.decide('events.amazonaws.com', 'sns:Publish', alertTopic('eu-central-1'), { 'aws:SourceAccount': ACCOUNT, 'aws:SourceArn': `arn:aws:events:eu-central-1:${ACCOUNT}:rule/other` })).not.toBe('Allowed');
      expect(await w.decide('events.amazonaws.com', 'sns:Publish', alertTopic('eu-central-1'), { 'aws:SourceArn': rule })).not.toBe('Allowed');
    });

    it('no one but the account root and the deployment role deletes, disables or re-policies a key', async () => {
      const admin = { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 'kms:*', Resource: '*' }] };
      const as = (name: string) => ({ identity: admin, principalArn: `arn:aws:iam::${ACCOUNT}:role/${name}` });
      for (const key of [keyOf('primary'), keyOf('dr'), alertsKey('eu-west-1')]) {
        for (const action of ['kms:ScheduleKeyDeletion', 'kms:PutKeyPolicy', 'kms:DisableKey']) {
          for (const who of ['Memvault-RecoveryTeam', 'Memvault-Auditors', 'Admin', role('primary', 'retention')]) {
            expect(await w.decide('x', action, key, {}, as(who)), `${who} ${action}`).toBe('ExplicitlyDenied');
          }
          const region = key.split(':')[3];
          expect(await w.decide('x', action, key, {}, as(`cdk-hnb659fds-cfn-exec-role-${ACCOUNT}-${region}`)), action).toBe('Allowed');
        }
        expect(await w.decide('x', 'kms:Decrypt', key, {}, as('Admin'))).toBe('Allowed');
      }
    });
  });

  describe('VPC (item 10)', () => {
    it('keeps the snapshot handlers out of the VPC and puts the database handlers in it', () => {
      for (const h of ['snapshot-start', 'snapshot-poll', 'send-alert', 'plan-backup']) {
        const fn = Object.values(primary.findResources('AWS::Lambda::Function', { Properties: { Description: `memvault ${h}` } }))[0] as any;
        expect(fn.Properties.VpcConfig, h).toBeUndefined();
      }
      for (const h of ['export-stream', 'restore-component', 'validate-restore']) {
        const fn = Object.values(primary.findResources('AWS::Lambda::Function', { Properties: { Description: `memvault ${h}` } }))[0] as any;
        expect(fn.Properties.VpcConfig, h).toEqual({ SubnetIds: ['subnet-0123456789abcdef0', 'subnet-0123456789abcdef1'], SecurityGroupIds: ['sg-0123456789abcdef0'] });
      }
    });

    it('creates the S3 gateway and the interface endpoints the in-VPC handlers call, reachable on 443 from their security group', () => {
      primary.hasResourceProperties('AWS::EC2::VPCEndpoint', {
        ServiceName: 'com.amazonaws.eu-west-1.s3', VpcEndpointType: 'Gateway', VpcId: 'vpc-0123456789abcdef0', RouteTableIds: ['rtb-0123456789abcdef0'],
      });
      const interfaces = Object.values(primary.findResources('AWS::EC2::VPCEndpoint', { Properties: { VpcEndpointType: 'Interface' } })) as any[];
      expect(interfaces.map((e) => e.Properties.ServiceName).sort()).toEqual(
        ['kms', 'rds', 'secretsmanager', 'sns', 'ssm', 'sts'].map((s) => `com.amazonaws.eu-west-1.${s}`),
      );
      for (const e of interfaces) expect(e.Properties).toMatchObject({ PrivateDnsEnabled: true, SubnetIds: ['subnet-0123456789abcdef0', 'subnet-0123456789abcdef1'] });
      primary.hasResourceProperties('AWS::EC2::SecurityGroup', {
        VpcId: 'vpc-0123456789abcdef0',
        SecurityGroupIngress: [{ IpProtocol: 'tcp', FromPort: 443, ToPort: 443, SourceSecurityGroupId: 'sg-0123456789abcdef0', Description: 'memvault functions (sg-0123456789abcdef0)' }],
      });
      // No drVpc configured: the DR stack creates none.
      dr.resourceCountIs('AWS::EC2::VPCEndpoint', 0);
    });
  });
});

describe('bad IAM-related config fails at synth naming the field', () => {
  it.each([
    ['aws.vpc.vpcId', { subnetIds: ['subnet-0123456789abcdef0'], securityGroupIds: ['sg-0123456789abcdef0'], endpoints: true, routeTableIds: ['rtb-0123456789abcdef0'] }],
    ['aws.vpc.routeTableIds', { subnetIds: ['subnet-0123456789abcdef0'], securityGroupIds: ['sg-0123456789abcdef0'], endpoints: true, vpcId: 'vpc-0123456789abcdef0' }],
  ])('%s', (field, vpc) => {
    const d = exampleDoc();
    d.aws.vpc = vpc;
    expect(() => buildApp(d)).toThrow(field);
  });

  it.each([
    ['aws.restoreTargets.nope', { nope: { bucket: 'b-restores' } }, 'no component named "nope"'],
    ['aws.restoreTargets.memory-db', { 'memory-db': { bucket: 'b-restores' } }, 'memory-db is rds-snapshot'],
    ['aws.restoreTargets.model-weights.bucket', { 'model-weights': { prefix: 'x/' } }, 'name the bucket'],
  ])('%s', (field, targets, why) => {
    const d = exampleDoc();
    d.aws.restoreTargets = targets;
    expect(() => buildApp(d)).toThrow(new RegExp(`${field.replace(/[.]/g, '\\.')}.*${why}`));
  });

  it('components.model-weights.kmsKeyArn that is not a key ARN', () => {
    const d = exampleDoc();
    d.components['model-weights'].kmsKeyArn = 'alias/models';
    expect(() => buildApp(d)).toThrow('components.model-weights.kmsKeyArn');
  });
});
