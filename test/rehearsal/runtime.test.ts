// The rehearsal's own machinery, on small hand-made inputs (seconds): a cloud
// assembly's intrinsics resolved as CloudFormation would, a Lambda function run
// from an asset in its own process and /tmp with exactly its environment, its
// timeout and Lambda's error shape, and EventBridge's pattern matching and
// input transformer.
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { environmentSize, generatedName, loadDeployedModel, type FunctionInfo } from '../../rehearsal/template.ts';
import { LambdaCreateError, LambdaInvokeError, LambdaRuntime } from '../../rehearsal/lambda.ts';
import { eventMatches, targetInput } from '../../rehearsal/machines.ts';
import { trusts } from '../../rehearsal/schedules.ts';
import { deployableConfigs, overlay } from '../../rehearsal/configs.ts';

// Not under /tmp: every function instance gets its own /tmp, which hides the host's.
const base = '/var/tmp';

describe('template: a synthesized stack resolved as CloudFormation deploys it', () => {
  const dir = mkdtempSync(path.join(base, 'rehearsal-tpl-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  beforeAll(() => {
    mkdirSync(path.join(dir, 'asset.abc'));
    writeFileSync(path.join(dir, 'asset.abc', 'index.mjs'), 'export const handler = async () => 1;');
    writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify({
      version: '1', artifacts: {
        'S.assets': { type: 'cdk:asset-manifest', properties: { file: 'S.assets.json' } },
        S: { type: 'aws:cloudformation:stack', environment: 'aws://123456789012/eu-west-1', properties: { templateFile: 'S.template.json' } },
      },
    }));
    writeFileSync(path.join(dir, 'S.assets.json'), JSON.stringify({
      files: { abc: { source: { path: 'asset.abc', packaging: 'zip' }, destinations: { d: { bucketName: 'cdk-assets-123456789012-eu-west-1', objectKey: 'abc.zip', region: 'eu-west-1' } } } },
    }));
    writeFileSync(path.join(dir, 'S.template.json'), JSON.stringify({
      Conditions: { IsIreland: { 'Fn::Equals': [{ Ref: 'AWS::Region' }, 'eu-west-1'] } },
      Resources: {
        Role1: { Type: 'AWS::IAM::Role', Properties: { AssumeRolePolicyDocument: { Statement: [] } } },
        Pol: { Type: 'AWS::IAM::Policy', Properties: { PolicyName: 'p', Roles: [{ Ref: 'Role1' }], PolicyDocument: { Statement: [{ Effect: 'Allow', Action: 's3:GetObject', Resource: { 'Fn::Join': ['', [{ 'Fn::GetAtt': ['Bucket', 'Arn'] }, '/*']] } }] } } },
        Bucket: { Type: 'AWS::S3::Bucket', Properties: { BucketName: { 'Fn::Sub': 'data-${AWS::AccountId}-${AWS::Region}' } } },
        Fn: {
          Type: 'AWS::Lambda::Function',
          Properties: {
            Code: { S3Bucket: 'cdk-assets-123456789012-eu-west-1', S3Key: 'abc.zip' }, Handler: 'index.handler', Role: { 'Fn::GetAtt': ['Role1', 'Arn'] },
            MemorySize: 256, Timeout: 30,
            Environment: { Variables: {
              BUCKET: { Ref: 'Bucket' },
              PART: { 'Fn::Select': [1, { 'Fn::Split': ['-', 'a-b-c'] }] },
              WHERE: { 'Fn::If': ['IsIreland', 'ireland', 'elsewhere'] },
              GONE: { 'Fn::If': ['IsIreland', { Ref: 'AWS::NoValue' }, 'x'] },
            } },
          },
        },
        Machine: {
          Type: 'AWS::StepFunctions::StateMachine',
          Properties: {
            RoleArn: { 'Fn::GetAtt': ['Role1', 'Arn'] }, StateMachineName: 'm',
            DefinitionString: '{"StartAt":"A","States":{"A":{"Type":"Task","Resource":"${FnArn}","End":true}}}',
            DefinitionSubstitutions: { FnArn: { 'Fn::GetAtt': ['Fn', 'Arn'] } },
          },
        },
      },
    }));
  });

  it('resolves intrinsics, generates physical names and attaches policies to roles', () => {
    const m = loadDeployedModel(dir);
    const fn = m.functions[0];
    expect(fn.name).toBe(generatedName('S', 'Fn', 64));
    expect(fn.name).toMatch(/^S-Fn-[A-Z0-9]{12}$/);
    expect(fn.arn).toBe(`arn:aws:lambda:eu-west-1:123456789012:function:${fn.name}`);
    expect(fn.environment).toEqual({ BUCKET: 'data-123456789012-eu-west-1', PART: 'b', WHERE: 'ireland' });
    expect(fn.assetDir).toBe(path.join(dir, 'asset.abc'));
    const role = m.roles.find((r) => r.logicalId === 'Role1')!;
    expect(fn.roleArn).toBe(role.arn);
    expect(role.policies[0]).toMatchObject({ Statement: [{ Resource: 'arn:aws:s3:::data-123456789012-eu-west-1/*' }] });
    expect(m.stateMachines[0].definition.States.A.Resource).toBe(fn.arn);
    expect(m.stateMachines[0].arn).toBe('arn:aws:states:eu-west-1:123456789012:stateMachine:m');
  });

  it('counts a function environment as Lambda does: the JSON of the whole map, quotes escaped', () => {
    const vars = { CONFIG: JSON.stringify({ a: 'b' }) };
    expect(environmentSize(vars)).toBe(Buffer.byteLength('{"CONFIG":"{\\"a\\":\\"b\\"}"}'));
  });
});

describe('Lambda: a function from its asset, in its own process and /tmp', () => {
  const dir = mkdtempSync(path.join(base, 'rehearsal-fn-'));
  const asset = path.join(dir, 'asset');
  let rt: LambdaRuntime;
  const fn = (over: Partial<FunctionInfo> = {}): FunctionInfo => ({
    stack: 'S', logicalId: 'F', name: 'probe', arn: 'arn:aws:lambda:eu-west-1:123456789012:function:probe', region: 'eu-west-1',
    roleArn: 'arn:aws:iam::123456789012:role/probe-role', handler: 'index.handler', runtime: 'nodejs24.x', description: 'probe', assetDir: asset,
    environment: { MODE: 'probe' }, memorySize: 512, timeoutSeconds: 5, ephemeralStorageMb: 512, ...over,
  });
  beforeAll(() => {
    mkdirSync(asset);
    writeFileSync(path.join(asset, 'index.mjs'), `
      import { existsSync, readdirSync, writeFileSync } from 'node:fs';
      import v8 from 'node:v8';
      export const handler = async (event, context) => {
        if (event.op === 'env') return { env: process.env, heapMb: v8.getHeapStatistics().heap_size_limit / 1048576, fn: context.functionName };
        if (event.op === 'write') { writeFileSync('/tmp/' + event.name, 'x'); return readdirSync('/tmp'); }
        if (event.op === 'list') return readdirSync('/tmp');
        if (event.op === 'throw') { const e = new Error('source is busy'); e.name = 'SourceBusyError'; throw e; }
        if (event.op === 'sleep') { await new Promise((r) => setTimeout(r, event.ms)); return 'slept'; }
        if (event.op === 'sdk') { await import('@aws-sdk/client-s3'); return 'sdk resolved'; }
        return null;
      };`);
    rt = new LambdaRuntime({
      workDir: path.join(dir, 'work'),
      gateway: { url: 'http://127.0.0.1:9', credentialsFor: (role) => ({ accessKeyId: `AKIA-${role.split('/').pop()}`, secretAccessKey: 's', sessionToken: 't' }) },
      timeoutOverride: (f) => (f.name === 'sleepy' ? 1 : undefined),
    });
    rt.create(fn());
    rt.create(fn({ name: 'other', arn: 'arn:aws:lambda:eu-west-1:123456789012:function:other' }));
    rt.create(fn({ name: 'sleepy', arn: 'arn:aws:lambda:eu-west-1:123456789012:function:sleepy' }));
  });
  afterAll(async () => {
    await rt?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('has exactly the template environment plus what Lambda sets, and a heap limit from MemorySize', async () => {
    process.env.REHEARSAL_PARENT_ONLY = 'leak';
    const out = (await rt.invoke(fn().arn, { op: 'env' })) as { env: Record<string, string>; heapMb: number; fn: string };
    expect(out.fn).toBe('probe');
    expect(out.env).toMatchObject({
      MODE: 'probe', AWS_LAMBDA_FUNCTION_NAME: 'probe', AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '512', AWS_REGION: 'eu-west-1',
      AWS_ENDPOINT_URL: 'http://127.0.0.1:9', AWS_ACCESS_KEY_ID: 'AKIA-probe-role', AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs24.x',
    });
    expect(out.env.REHEARSAL_PARENT_ONLY).toBeUndefined();
    expect(out.env.HOME).toBeUndefined();
    // V8's limit is the old space (90% of MemorySize) plus the young generation.
    expect(out.heapMb).toBeGreaterThan(0.9 * 512);
    expect(out.heapMb).toBeLessThan(1.5 * 512);
  });

  it('gives every instance its own /tmp, hidden from other functions and from the host', async () => {
    const marker = `marker-${process.pid}`;
    expect(await rt.invoke(fn().arn, { op: 'write', name: marker })).toContain(marker);
    // The warm instance keeps its /tmp; another function does not see it; nor does the host.
    expect(await rt.invoke(fn().arn, { op: 'list' })).toContain(marker);
    expect(await rt.invoke('arn:aws:lambda:eu-west-1:123456789012:function:other', { op: 'list' })).not.toContain(marker);
    expect(existsSync(`/tmp/${marker}`)).toBe(false);
  });

  it('reports a thrown error as Lambda does: errorType is the error name', async () => {
    const err = await rt.invoke(fn().arn, { op: 'throw' }).catch((e) => e);
    expect(err).toBeInstanceOf(LambdaInvokeError);
    expect(err).toMatchObject({ errorType: 'SourceBusyError', errorMessage: 'source is busy' });
  });

  it('resolves @aws-sdk from the runtime, as the Node 24 Lambda runtime provides it', async () => {
    expect(await rt.invoke(fn().arn, { op: 'sdk' })).toBe('sdk resolved');
  });

  it('kills an invocation past the timeout (Sandbox.Timedout) and starts a fresh instance next time', async () => {
    const arn = 'arn:aws:lambda:eu-west-1:123456789012:function:sleepy';
    await rt.invoke(arn, { op: 'write', name: 'before-timeout' });
    const err = (await rt.invoke(arn, { op: 'sleep', ms: 3000 }).catch((e: unknown) => e)) as LambdaInvokeError;
    expect(err).toMatchObject({ errorType: 'Sandbox.Timedout' });
    expect(err.errorMessage).toMatch(/Task timed out after 1\.00 seconds/);
    // The timed-out instance is gone with its /tmp.
    expect(await rt.invoke(arn, { op: 'list' })).not.toContain('before-timeout');
    const s = rt.stats().find((x) => x.name === 'sleepy')!;
    expect(s.timeouts).toBe(1);
    expect(s.coldStarts.length).toBe(2);
  });

  it('refuses to create a function whose environment is over 4 KB as Lambda counts it, naming it', () => {
    const big = { CONFIG: JSON.stringify({ text: 'q"'.repeat(1400) }) };
    expect(() => rt.create(fn({ name: 'too-big', arn: 'arn:aws:lambda:eu-west-1:123456789012:function:too-big', environment: big })))
      .toThrow(LambdaCreateError);
    expect(() => rt.create(fn({ name: 'too-big', arn: 'arn:aws:lambda:eu-west-1:123456789012:function:too-big', environment: big })))
      .toThrow(/too-big .*over the 4096-byte limit/);
  });
});

describe('EventBridge and Scheduler semantics', () => {
  const event = { source: 'aws.states', 'detail-type': 'Step Functions Execution Status Change', region: 'eu-west-1', time: 'T', detail: { status: 'FAILED', name: 'run-1', stateMachineArn: 'arn:sm', error: 'BackupRunFailed', cause: 'memory-db "down"' } };

  it('matches event patterns and builds the transformed input', () => {
    expect(eventMatches({ source: ['aws.states'], detail: { status: ['FAILED', 'TIMED_OUT'], stateMachineArn: ['arn:sm'] } }, event)).toBe(true);
    expect(eventMatches({ source: ['aws.states'], detail: { status: ['SUCCEEDED'] } }, event)).toBe(false);
    const text = targetInput({ id: 't', arn: 'arn:topic', inputTransformer: { InputPathsMap: { n: '$.detail.name', c: '$.detail.cause' }, InputTemplate: '"run <n> failed: <c>"' } }, event);
    expect(text).toBe('"run run-1 failed: memory-db \\"down\\""');
  });

  it('checks a schedule role trust policy with its source conditions', () => {
    const trust = { Statement: [{ Effect: 'Allow', Action: 'sts:AssumeRole', Principal: { Service: 'scheduler.amazonaws.com' }, Condition: { StringEquals: { 'aws:SourceAccount': '1', 'aws:SourceArn': 'arn:group' } } }] };
    expect(trusts(trust, 'scheduler.amazonaws.com', { 'aws:SourceAccount': '1', 'aws:SourceArn': 'arn:group' }).ok).toBe(true);
    expect(trusts(trust, 'scheduler.amazonaws.com', { 'aws:SourceAccount': '2', 'aws:SourceArn': 'arn:group' }).ok).toBe(false);
  });
});

describe('configs and the rehearsal overlay', () => {
  it('rehearses every example config with an aws section', () => {
    expect(deployableConfigs()).toContain('infra/memvault.example.yaml');
  });

  it('points databases at loopback, drops TLS, keeps credentials where the config has them, and leaves mongodb out by name', () => {
    const o = overlay({
      aws: { region: 'eu-west-1' },
      components: {
        db: { kind: 'postgres', url: 'postgres://backup@db.example.com:5432/memory?sslmode=require', secretArn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf' },
        cache: { kind: 'redis', url: 'rediss://app@cache.example.com:6379', passwordEnv: 'REDIS_AUTH' },
        vec: { kind: 'vector', host: 'vec.example.com', port: 5432, user: 'v', database: 'vectors', sslmode: 'require' },
        episodic: { kind: 'mongodb', uriEnv: 'MONGO' },
      },
    }, { postgres: { host: '127.0.0.1', port: 15432 }, redis: { host: '127.0.0.1', port: 16379 } });
    expect(o.doc.components.db.url).toBe('postgres://backup@127.0.0.1:15432/memory');
    expect(o.doc.components.cache).toEqual({ kind: 'redis', url: 'redis://app@127.0.0.1:16379', passwordEnv: 'REDIS_AUTH' });
    expect(o.doc.components.vec).toMatchObject({ host: '127.0.0.1', port: 15432, sslmode: 'disable' });
    expect(o.doc.components.episodic).toBeUndefined();
    expect(o.notRehearsed).toEqual([expect.objectContaining({ component: 'episodic', kind: 'mongodb' })]);
    expect(o.seeds.secrets).toEqual([expect.objectContaining({ arn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf', user: 'backup', database: 'memory' })]);
    expect(o.seeds.postgres).toEqual(expect.arrayContaining([{ component: 'db', user: 'backup', database: 'memory' }, { component: 'vec', user: 'v', database: 'vectors' }]));
  });
});
