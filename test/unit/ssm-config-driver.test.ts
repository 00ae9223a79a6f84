// ssm-config driver through the real backup engine and a file:// vault, with
// SSM and Secrets Manager mocked by aws-sdk-client-mock. The mocks keep state
// (what PutParameter / PutSecretValue / CreateSecret wrote is what
// GetParameters / GetSecretValue return), so restore + validate is a real
// round trip, and they produce the service errors (throttling, not found,
// access denied, pagination tokens).
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mockClient } from 'aws-sdk-client-mock';
import {
  SSMClient, GetParametersByPathCommand, DescribeParametersCommand, PutParameterCommand, GetParametersCommand,
  type Parameter, type ParameterMetadata,
} from '@aws-sdk/client-ssm';
import {
  SecretsManagerClient, DescribeSecretCommand, GetSecretValueCommand, ListSecretsCommand, PutSecretValueCommand, CreateSecretCommand,
} from '@aws-sdk/client-secrets-manager';
import { createSsmConfigDriver, mapParameterName } from '../../functions/components/ssm-config.ts';
import { NotFoundError, PermanentError, ThrottledError } from '../../functions/core/errors.ts';
import { makeHarness, type Harness } from '../helpers/driver-harness.ts';

const ssm = mockClient(SSMClient);
const sm = mockClient(SecretsManagerClient);

function awsError(name: string, message = name, status = 400) {
  return Object.assign(new Error(message), { name, $fault: 'client', $metadata: { httpStatusCode: status } });
}

const SECRET_DB = 'postgres://memory:S3cr3t-db-pa55@db.internal/memory';
const SECRET_API = '{"apiKey":"sk-live-ABCDEFG123456"}';
const SECRET_BIN = Buffer.from([0, 1, 2, 250, 251, 252]);

interface StoredParam { Type: string; Value: string; DataType?: string; KeyId?: string }

/** The "AWS" side: parameters and secrets by name. */
function seed() {
  const params = new Map<string, StoredParam>([
    ['/memvault/prod/db/url', { Type: 'SecureString', Value: SECRET_DB, KeyId: 'arn:aws:kms:eu-west-1:111122223333:key/prod-config' }],
    ['/memvault/prod/tiers', { Type: 'StringList', Value: 'working,episodic,semantic' }],
    ['/memvault/prod/model/name', { Type: 'String', Value: 'memory-7b' }],
    ['/memvault/prod/model/ami', { Type: 'String', Value: 'ami-0123456789abcdef0', DataType: 'aws:ec2:image' }],
    ['/memvault/prod/limits/max-tokens', { Type: 'String', Value: '8192' }],
    ['/memvault/shared/region', { Type: 'String', Value: 'eu-west-1' }],
  ]);
  const secrets = new Map<string, { SecretString?: string; SecretBinary?: Uint8Array; KmsKeyId?: string; Description?: string }>([
    ['prod/memory/db', { SecretString: SECRET_DB, KmsKeyId: 'alias/prod-secrets', Description: 'memory db' }],
    ['prod/memory/api', { SecretString: SECRET_API }],
    ['prod/memory/signing-key', { SecretBinary: new Uint8Array(SECRET_BIN) }],
    ['prod/other/unrelated', { SecretString: 'not selected' }],
  ]);
  return { params, secrets };
}

/** Wires the mocks to a state; pages of 2 (parameters, secrets) so every listing paginates. */
function wire(state: ReturnType<typeof seed>) {
  const under = (p: string) => [...state.params.keys()].filter((n) => n.startsWith(`${p.replace(/\/$/, '')}/`)).sort();
  ssm.on(GetParametersByPathCommand).callsFake((input) => {
    const names = under(input.Path);
    const start = input.NextToken ? Number(input.NextToken) : 0;
    const page = names.slice(start, start + 2);
    return {
      Parameters: page.map((Name): Parameter => ({ Name, Type: state.params.get(Name)!.Type as never, Value: state.params.get(Name)!.Value, DataType: state.params.get(Name)!.DataType ?? 'text', Version: 1 })),
      NextToken: start + 2 < names.length ? String(start + 2) : undefined,
    };
  });
  ssm.on(DescribeParametersCommand).callsFake((input) => {
    const names = under(input.ParameterFilters[0].Values[0]);
    const start = input.NextToken ? Number(input.NextToken) : 0;
    const page = names.slice(start, start + 2);
    return {
      Parameters: page.map((Name): ParameterMetadata => ({ Name, Type: state.params.get(Name)!.Type as never, KeyId: state.params.get(Name)!.KeyId ?? (state.params.get(Name)!.Type === 'SecureString' ? 'alias/aws/ssm' : undefined), Tier: 'Standard' })),
      NextToken: start + 2 < names.length ? String(start + 2) : undefined,
    };
  });
  ssm.on(PutParameterCommand).callsFake((input) => {
    if (!input.Overwrite && state.params.has(input.Name)) throw awsError('ParameterAlreadyExists');
    state.params.set(input.Name, { Type: input.Type, Value: input.Value, DataType: input.DataType, KeyId: input.KeyId });
    return { Version: 1, Tier: 'Standard' };
  });
  ssm.on(GetParametersCommand).callsFake((input) => {
    if (input.Names.length > 10) throw awsError('ValidationException', 'at most 10 names');
    return {
      Parameters: input.Names.filter((n: string) => state.params.has(n)).map((Name: string) => ({ Name, ...state.params.get(Name)!, DataType: state.params.get(Name)!.DataType ?? 'text' })),
      InvalidParameters: input.Names.filter((n: string) => !state.params.has(n)),
    };
  });
  const secretOr404 = (id: string) => {
    const s = state.secrets.get(id);
    if (!s) throw awsError('ResourceNotFoundException', "Secrets Manager can't find the specified secret.");
    return s;
  };
  sm.on(DescribeSecretCommand).callsFake((input) => {
    const s = secretOr404(input.SecretId);
    return { Name: input.SecretId, ARN: `arn:aws:secretsmanager:eu-west-1:111122223333:secret:${input.SecretId}-AbCdEf`, KmsKeyId: s.KmsKeyId, Description: s.Description };
  });
  sm.on(GetSecretValueCommand).callsFake((input) => {
    const id = String(input.SecretId).replace(/^arn:.*:secret:(.*)-AbCdEf$/, '$1');
    const s = secretOr404(id);
    return { Name: id, VersionId: 'v1', SecretString: s.SecretString, SecretBinary: s.SecretBinary };
  });
  sm.on(ListSecretsCommand).callsFake((input) => {
    const prefix = input.Filters[0].Values[0];
    const names = [...state.secrets.keys()].filter((n) => n.startsWith(prefix)).sort();
    const start = input.NextToken ? Number(input.NextToken) : 0;
    return {
      SecretList: names.slice(start, start + 2).map((Name) => ({ Name, ARN: `arn:aws:secretsmanager:eu-west-1:111122223333:secret:${Name}-AbCdEf`, KmsKeyId: state.secrets.get(Name)!.KmsKeyId })),
      NextToken: start + 2 < names.length ? String(start + 2) : undefined,
    };
  });
  sm.on(PutSecretValueCommand).callsFake((input) => {
    secretOr404(input.SecretId);
    state.secrets.set(input.SecretId, { ...state.secrets.get(input.SecretId), SecretString: input.SecretString, SecretBinary: input.SecretBinary });
    return { VersionId: 'v2' };
  });
  sm.on(CreateSecretCommand).callsFake((input) => {
    if (state.secrets.has(input.Name)) throw awsError('ResourceExistsException');
    state.secrets.set(input.Name, { SecretString: input.SecretString, SecretBinary: input.SecretBinary, KmsKeyId: input.KmsKeyId, Description: input.Description });
    return { Name: input.Name };
  });
}

const SETTINGS = {
  region: 'eu-west-1',
  parameterPaths: ['/memvault/prod', '/memvault/shared'],
  secrets: ['prod/memory/db'],
  secretPrefixes: ['prod/memory/'],
};

describe('ssm-config driver (mocked SSM and Secrets Manager)', () => {
  let state: ReturnType<typeof seed>;
  let h: Harness;
  let sleeps: number[];

  beforeEach(async () => {
    ssm.reset();
    sm.reset();
    state = seed();
    wire(state);
    sleeps = [];
    h = await makeHarness(createSsmConfigDriver({ sleep: async (ms) => { sleeps.push(ms); }, maxAttempts: 4 }), 'platform-config', SETTINGS);
  });
  afterEach(async () => {
    await h.close();
  });

  it('exports every parameter and secret across pages and restores them under another path with their types and KMS key', async () => {
    const out = await h.backup('full');
    const m = await h.manifest(out.backupId);
    expect(m.driver.counts).toEqual({ parameters: 6, secrets: 3 });
    expect(out.warnings).toEqual([]);
    expect(ssm.commandCalls(GetParametersByPathCommand).length).toBe(3 + 1); // 5 params under prod in pages of 2, 1 under shared
    expect(ssm.commandCalls(GetParametersByPathCommand)[0].args[0].input).toMatchObject({ Path: '/memvault/prod', Recursive: true, WithDecryption: true });
    expect(sm.commandCalls(ListSecretsCommand).length).toBe(2);
    expect(sm.commandCalls(GetSecretValueCommand).length).toBe(3); // db named and matched by prefix: read once

    const before = structuredClone([...state.secrets.entries()]);
    const r = await h.restore(out.backupId, {
      to: 'aws',
      parameterPathMap: { '/memvault/prod': '/memvault/dr' },
      secretNameMap: { 'prod/memory/': 'dr/memory/' },
      kmsKeyId: 'arn:aws:kms:eu-central-1:111122223333:key/dr-config',
    });
    expect(r.validation.ok).toBe(true);
    expect(r.entries).toBe(9);
    const put = (name: string) => ssm.commandCalls(PutParameterCommand).find((c) => c.args[0].input.Name === name)!.args[0].input;
    expect(put('/memvault/dr/db/url')).toMatchObject({ Type: 'SecureString', Value: SECRET_DB, Overwrite: true, KeyId: 'arn:aws:kms:eu-central-1:111122223333:key/dr-config' });
    expect(put('/memvault/dr/tiers')).toMatchObject({ Type: 'StringList', Value: 'working,episodic,semantic', KeyId: undefined });
    expect(put('/memvault/dr/model/ami')).toMatchObject({ DataType: 'aws:ec2:image' });
    expect(put('/memvault/shared/region')).toMatchObject({ Type: 'String', Value: 'eu-west-1' }); // unmapped path: same name
    // The dr secrets did not exist: PutSecretValue fails with not found, CreateSecret makes them.
    expect(sm.commandCalls(CreateSecretCommand).map((c) => c.args[0].input.Name).sort()).toEqual(['dr/memory/api', 'dr/memory/db', 'dr/memory/signing-key']);
    expect(Buffer.from(state.secrets.get('dr/memory/signing-key')!.SecretBinary!)).toEqual(SECRET_BIN);
    expect(state.secrets.get('dr/memory/db')).toMatchObject({ SecretString: SECRET_DB, KmsKeyId: 'alias/prod-secrets', Description: 'memory db' });
    expect([...state.secrets.entries()].filter(([n]) => n.startsWith('prod/'))).toEqual(before.filter(([n]) => n.startsWith('prod/')));

    // Restoring in place overwrites with the original type and the original KMS key.
    state.params.set('/memvault/prod/db/url', { Type: 'String', Value: 'clobbered' });
    const r2 = await h.restore(out.backupId, { to: 'aws' });
    expect(r2.validation.ok).toBe(true);
    expect(state.params.get('/memvault/prod/db/url')).toMatchObject({ Type: 'SecureString', Value: SECRET_DB, KeyId: 'arn:aws:kms:eu-west-1:111122223333:key/prod-config' });
    expect(sm.commandCalls(PutSecretValueCommand).some((c) => c.args[0].input.SecretId === 'prod/memory/db')).toBe(true);
  });

  it('validation reading back catches a changed value and a missing parameter or secret', async () => {
    const out = await h.backup('full');
    const m = await h.manifest(out.backupId);
    state.params.set('/memvault/prod/model/name', { Type: 'String', Value: 'memory-13b' });
    state.params.delete('/memvault/prod/tiers');
    state.secrets.delete('prod/memory/api');
    const v = await createSsmConfigDriver().validate({
      component: 'platform-config', settings: h.cfg.components['platform-config'] as never, manifest: m, vault: h.vault,
      target: { dir: h.dir, options: { to: 'aws' } }, location: '', resolve: (p) => p, log: { info() {}, warn() {}, error() {} },
    });
    expect(v.ok).toBe(false);
    const problems = v.checks.find((c) => c.name === 'problems')!.actual as string[];
    expect(problems).toEqual(expect.arrayContaining([
      'parameter /memvault/prod/model/name: type or value differs',
      'parameter /memvault/prod/tiers: not found',
      'secret prod/memory/api: not found',
    ]));
  });

  it('restores into a directory by default (mode 0600), validated against the manifest', async () => {
    const out = await h.backup('full');
    const r = await h.restore(out.backupId);
    expect(r.validation.ok).toBe(true);
    expect(ssm.commandCalls(PutParameterCommand)).toHaveLength(0);
    const file = path.join(r.location, 'parameters.ndjson');
    expect((await fs.stat(file)).mode & 0o777).toBe(0o600);
    const recs = (await fs.readFile(file, 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
    expect(Object.fromEntries(recs.map((x) => [x.name, x.value]))).toEqual(Object.fromEntries([...state.params].map(([n, p]) => [n, p.Value])));
  });

  it('never writes a secret value to the logs or in plaintext to the vault', async () => {
    const out = await h.backup('full');
    await h.restore(out.backupId, { to: 'aws', secretNameMap: { 'prod/': 'dr/' }, parameterPathMap: { '/memvault/prod': '/memvault/dr' } });
    const logs = JSON.stringify(h.logs);
    expect(h.logs.length).toBeGreaterThan(0);
    for (const s of [SECRET_DB, 'S3cr3t-db-pa55', 'sk-live-ABCDEFG123456']) expect(logs).not.toContain(s);
    const files: string[] = [];
    const walk = async (d: string) => {
      for (const e of await fs.readdir(d, { withFileTypes: true })) {
        const p = path.join(d, e.name);
        if (e.isDirectory()) await walk(p); else files.push(p);
      }
    };
    await walk(path.join(h.dir, 'vault'));
    expect(files.length).toBeGreaterThan(2);
    for (const f of files) {
      const raw = await fs.readFile(f);
      expect(raw.includes('S3cr3t-db-pa55')).toBe(false);
      expect(raw.includes('sk-live-ABCDEFG123456')).toBe(false);
    }
  });

  it('retries throttling with backoff, then gives up with ThrottledError naming the path', async () => {
    let n = 0;
    ssm.on(DescribeParametersCommand).callsFake(() => {
      if (++n <= 2) throw awsError('ThrottlingException', 'Rate exceeded');
      return { Parameters: [] };
    });
    const out = await h.backup('full');
    expect(sleeps.length).toBe(2);
    expect(sleeps[1]).toBeGreaterThan(sleeps[0] * 0.99 / 2); // exponential (with jitter)
    expect((await h.manifest(out.backupId)).driver.counts).toEqual({ parameters: 6, secrets: 3 });

    sleeps.length = 0;
    ssm.on(GetParametersByPathCommand).rejects(awsError('ThrottlingException', 'Rate exceeded'));
    const err = await h.backup('full').catch((e) => e);
    expect(err).toBeInstanceOf(ThrottledError);
    expect(err.name).toBe('ThrottledError');
    expect(err.message).toContain('ssm:GetParametersByPath /memvault/prod');
    expect(sleeps.length).toBe(3); // 4 attempts

    // PutParameter's own throttling error (TooManyUpdates) is retried too.
    wire(state);
    const ok = await h.backup('full');
    let puts = 0;
    ssm.on(PutParameterCommand).callsFake((input) => {
      if (++puts === 1) throw awsError('TooManyUpdates', 'too many updates');
      state.params.set(input.Name, { Type: input.Type, Value: input.Value, DataType: input.DataType, KeyId: input.KeyId });
      return { Version: 2 };
    });
    const r = await h.restore(ok.backupId, { to: 'aws', parameterPathMap: { '/memvault': '/copy' } });
    expect(r.validation.ok).toBe(true);
    expect(state.params.get('/copy/prod/db/url')?.Value).toBe(SECRET_DB);
  });

  it('a missing named secret is a NotFoundError naming it', async () => {
    state.secrets.delete('prod/memory/db');
    const err = await h.backup('full').catch((e) => e);
    expect(err).toBeInstanceOf(NotFoundError);
    expect(err.message).toContain('secretsmanager:DescribeSecret prod/memory/db: secret not found');
  });

  it('access denied names the action and the path or secret', async () => {
    ssm.on(GetParametersByPathCommand).rejects(awsError('AccessDeniedException', 'User: arn:aws:sts::1:assumed-role/backup is not authorized to perform: ssm:GetParametersByPath', 400));
    const err = await h.backup('full').catch((e) => e);
    expect(err).toBeInstanceOf(PermanentError);
    expect(err.message).toMatch(/^ssm:GetParametersByPath \/memvault\/prod: access denied/);

    wire(state);
    sm.on(GetSecretValueCommand).rejects(awsError('AccessDeniedException', 'not authorized to perform: secretsmanager:GetSecretValue'));
    const err2 = await h.backup('full').catch((e) => e);
    expect(err2).toBeInstanceOf(PermanentError);
    expect(err2.message).toContain('secretsmanager:GetSecretValue prod/memory/db: access denied');
  });

  it('ParameterNotFound on restore-time reads and empty paths are reported, not silent', async () => {
    const h2 = await makeHarness(createSsmConfigDriver({ sleep: async () => {} }), 'cfg2', { parameterPaths: ['/memvault/none'], secretPrefixes: ['nothing/'] });
    try {
      const out = await h2.backup('full');
      expect(out.warnings).toEqual(['parameter path /memvault/none: no parameters found', 'secret prefix nothing/: no secrets found']);
    } finally {
      await h2.close();
    }
    ssm.on(GetParametersCommand).rejects(awsError('ParameterNotFound', 'Parameter /memvault/prod/db/url not found'));
    const out = await h.backup('full');
    const m = await h.manifest(out.backupId);
    const err = await createSsmConfigDriver({ sleep: async () => {} }).validate({
      component: 'platform-config', settings: h.cfg.components['platform-config'] as never, manifest: m, vault: h.vault,
      target: { dir: h.dir, options: { to: 'aws' } }, location: '', resolve: (p) => p, log: { info() {}, warn() {}, error() {} },
    }).catch((e) => e);
    expect(err).toBeInstanceOf(NotFoundError);
    expect(err.message).toContain('parameter not found');
  });

  it('maps parameter paths on whole segments only', () => {
    expect(mapParameterName('/memvault/prod/db', { '/memvault/prod': '/x' })).toBe('/x/db');
    expect(mapParameterName('/memvault/production/db', { '/memvault/prod': '/x' })).toBe('/memvault/production/db');
    expect(mapParameterName('/a/b/c', { '/a': '/z', '/a/b/': '/y/' })).toBe('/y/c');
  });
});
