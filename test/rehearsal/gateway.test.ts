// The rehearsal's AWS gateway with real SDK v3 clients: two roles with
// different policies, S3 through to s3rver, KMS, SNS and Secrets Manager
// fakes, decided by the template-style policies. What the rehearsal relies on:
// an allowed call does what AWS would, a denied one fails with the error name
// the SDK surfaces from AWS, and each is recorded.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  S3Client, PutObjectCommand, GetObjectCommand, ListObjectsV2Command, DeleteObjectsCommand, HeadObjectCommand, CopyObjectCommand,
  CreateMultipartUploadCommand, UploadPartCommand, CompleteMultipartUploadCommand,
} from '@aws-sdk/client-s3';
import { S3Storage } from '../../functions/adapters/storage/s3.ts';
import { KMSClient, EncryptCommand, DecryptCommand, GenerateDataKeyCommand, DescribeKeyCommand } from '@aws-sdk/client-kms';
import { SNSClient, PublishCommand } from '@aws-sdk/client-sns';
import {
  SecretsManagerClient,
  GetSecretValueCommand,
  CreateSecretCommand,
  PutSecretValueCommand,
  ListSecretsCommand,
  DescribeSecretCommand,
} from '@aws-sdk/client-secrets-manager';
import { startS3rver, type S3rverHandle } from '../helpers/s3rver.ts';
import { startGateway, type Gateway } from '../../rehearsal/gateway.ts';
import { KmsKeyProvider } from '../../functions/adapters/keys/kms.ts';
import { SnsAlertSink } from '../../functions/adapters/alerts/sns.ts';
import { PermanentError, WrongKeyError } from '../../functions/core/errors.ts';

const ACCOUNT = '111122223333';
const REGION = 'us-east-1';
const WRITER = `arn:aws:iam::${ACCOUNT}:role/memvault-backup`;
const READER = `arn:aws:iam::${ACCOUNT}:role/memvault-rpo-watch`;
const KEY = `arn:aws:kms:${REGION}:${ACCOUNT}:key/11111111-1111-1111-1111-111111111111`;
const LOCKED_KEY = `arn:aws:kms:${REGION}:${ACCOUNT}:key/22222222-2222-2222-2222-222222222222`;
const DISABLED_KEY = `arn:aws:kms:${REGION}:${ACCOUNT}:key/33333333-3333-3333-3333-333333333333`;
const TOPIC = `arn:aws:sns:${REGION}:${ACCOUNT}:memvault-alerts`;
const FAILED_RULE = `arn:aws:events:${REGION}:${ACCOUNT}:rule/memvault-failed`;
const SECRET = `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:memvault/db-AbC123`;

let s3rver: S3rverHandle;
let gw: Gateway;
let bucket: string;

function sdkConfig(role: string) {
  return { endpoint: gw.url, region: REGION, credentials: gw.credentialsFor(role) };
}
const s3For = (role: string) => new S3Client({ ...sdkConfig(role), requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' });

beforeAll(async () => {
  s3rver = await startS3rver();
  bucket = s3rver.bucket;
  const bucketArn = `arn:aws:s3:::${bucket}`;
  gw = await startGateway({
    account: ACCOUNT,
    s3Endpoint: s3rver.endpoint,
    principals: [
      {
        roleArn: WRITER,
        policies: [
          {
            Version: '2012-10-17',
            Statement: [
              { Effect: 'Allow', Action: ['s3:GetObject', 's3:PutObject', 's3:DeleteObject'], Resource: `${bucketArn}/*` },
              { Effect: 'Allow', Action: 's3:ListBucket', Resource: bucketArn },
              { Effect: 'Allow', Action: ['kms:Encrypt', 'kms:Decrypt', 'kms:GenerateDataKey', 'kms:DescribeKey'], Resource: [KEY, LOCKED_KEY, DISABLED_KEY] },
              { Effect: 'Allow', Action: 'sns:Publish', Resource: TOPIC },
              { Effect: 'Allow', Action: ['secretsmanager:GetSecretValue', 'secretsmanager:DescribeSecret', 'secretsmanager:PutSecretValue', 'secretsmanager:CreateSecret'], Resource: `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:memvault/*` },
              { Effect: 'Allow', Action: 'secretsmanager:ListSecrets', Resource: '*' },
            ],
          },
        ],
      },
      {
        roleArn: READER,
        policies: [
          {
            Version: '2012-10-17',
            Statement: [
              { Effect: 'Allow', Action: 's3:GetObject', Resource: `${bucketArn}/vault/*` },
              { Effect: 'Allow', Action: 's3:ListBucket', Resource: bucketArn, Condition: { StringLike: { 's3:prefix': 'vault/*' } } },
            ],
          },
        ],
      },
    ],
    resourcePolicies: [
      {
        resourceArn: bucketArn,
        policy: {
          Version: '2012-10-17',
          Statement: [
            { Effect: 'Deny', Principal: { AWS: '*' }, Action: 's3:*', Resource: [bucketArn, `${bucketArn}/*`], Condition: { Bool: { 'aws:SecureTransport': 'false' } } },
            { Effect: 'Deny', Principal: { AWS: '*' }, Action: 's3:DeleteObject', Resource: `${bucketArn}/locked/*` },
          ],
        },
      },
      {
        resourceArn: KEY,
        policy: {
          Version: '2012-10-17',
          Statement: [
            { Effect: 'Allow', Principal: { AWS: `arn:aws:iam::${ACCOUNT}:root` }, Action: 'kms:*', Resource: '*' },
            {
              Effect: 'Allow',
              Principal: { Service: 'events.amazonaws.com' },
              Action: ['kms:GenerateDataKey*', 'kms:Decrypt'],
              Resource: '*',
              Condition: { StringEquals: { 'aws:SourceAccount': ACCOUNT } },
            },
          ],
        },
      },
      {
        // No statement for the account root: IAM policies alone cannot grant this key.
        resourceArn: LOCKED_KEY,
        policy: { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Principal: { AWS: `arn:aws:iam::${ACCOUNT}:role/key-admin` }, Action: 'kms:*', Resource: '*' }] },
      },
      {
        resourceArn: TOPIC,
        policy: {
          Version: '2012-10-17',
          Statement: [
            {
              Effect: 'Allow',
              Principal: { Service: 'events.amazonaws.com' },
              Action: 'sns:Publish',
              Resource: TOPIC,
              Condition: { ArnEquals: { 'aws:SourceArn': FAILED_RULE }, StringEquals: { 'aws:SourceAccount': ACCOUNT } },
            },
          ],
        },
      },
    ],
    kmsKeys: [
      { keyArn: KEY, region: REGION, aliases: ['alias/memvault'] },
      { keyArn: LOCKED_KEY, region: REGION, aliases: [] },
      { keyArn: DISABLED_KEY, region: REGION, aliases: [], state: 'Disabled' },
    ],
    topics: [{ topicArn: TOPIC, kmsMasterKeyId: 'alias/memvault' }],
    seed: {
      secrets: [
        { name: SECRET, value: '{"username":"memvault","password":"s3cret"}' },
        { name: 'memvault/locked-db', value: '{"password":"x"}', kmsKeyId: LOCKED_KEY, region: REGION },
      ],
    },
    bucketEncryption: [{ bucket, kmsKeyArn: KEY }],
    region: REGION,
  });
});

afterAll(async () => {
  await gw?.close();
  await s3rver?.close();
});

async function nameOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return (err as Error).name;
  }
  return 'no error';
}

describe('caller identity', () => {
  it('rejects an unknown access key as AWS does, per service', async () => {
    const creds = { accessKeyId: 'ASIAUNKNOWNKEY000000', secretAccessKey: 'x', sessionToken: 'y' };
    const s3 = new S3Client({ endpoint: gw.url, region: REGION, credentials: creds });
    const kms = new KMSClient({ endpoint: gw.url, region: REGION, credentials: creds });
    expect(await nameOf(s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'vault/x' })))).toBe('InvalidAccessKeyId');
    expect(await nameOf(kms.send(new DescribeKeyCommand({ KeyId: KEY })))).toBe('UnrecognizedClientException');
    const sns = new SNSClient({ endpoint: gw.url, region: REGION, credentials: creds });
    expect(await nameOf(sns.send(new PublishCommand({ TopicArn: TOPIC, Message: 'x' })))).toBe('InvalidClientTokenId');
    expect(gw.calls.filter((c) => c.principal.startsWith('unknown access key')).every((c) => !c.allowed)).toBe(true);
  });

  it('refuses an unsigned request', async () => {
    const res = await fetch(`${gw.url}/${bucket}/vault/x`);
    expect(res.status).toBe(403);
    expect(await res.text()).toContain('<Code>AccessDenied</Code>');
  });

  it('gives credentials only for the template roles', () => {
    expect(() => gw.credentialsFor(`arn:aws:iam::${ACCOUNT}:role/not-in-template`)).toThrow(/not one of the gateway's principals/);
    expect(gw.credentialsFor(WRITER)).toEqual(gw.credentialsFor(WRITER));
  });
});

describe('S3 through the gateway to s3rver', () => {
  it('stores what an allowed role puts, encrypted with the bucket key, and reads it back', async () => {
    const s3 = s3For(WRITER);
    const body = Buffer.from('chunk bytes '.repeat(1000));
    const put = await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'vault/packs/ab/cd', Body: body }));
    expect(put.ServerSideEncryption).toBe('aws:kms');
    expect(put.SSEKMSKeyId).toBe(KEY);
    const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'vault/packs/ab/cd' }));
    expect(Buffer.from(await got.Body!.transformToByteArray()).equals(body)).toBe(true);
    // The bytes are in s3rver itself, not in the gateway.
    const direct = await s3rver.client().send(new GetObjectCommand({ Bucket: bucket, Key: 'vault/packs/ab/cd' }));
    expect(Buffer.from(await direct.Body!.transformToByteArray()).equals(body)).toBe(true);
    const rec = gw.calls.filter((c) => c.operation === 'PutObject' && c.principal === WRITER).at(-1)!;
    expect(rec).toMatchObject({ service: 's3', action: 's3:PutObject', allowed: true, status: 200, region: REGION });
    expect(rec.checks.map((c) => c.action)).toEqual(['s3:PutObject', 'kms:GenerateDataKey']);
  });

  it('denies a put the role has no statement for, with S3 AccessDenied, and writes nothing', async () => {
    const s3 = s3For(READER);
    expect(await nameOf(s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'vault/evil', Body: 'x' })))).toBe('AccessDenied');
    expect(await nameOf(s3rver.client().send(new HeadObjectCommand({ Bucket: bucket, Key: 'vault/evil' })))).toBe('NotFound');
    const rec = gw.calls.filter((c) => c.operation === 'PutObject' && c.principal === READER).at(-1)!;
    expect(rec).toMatchObject({ allowed: false, status: 403, error: 'AccessDenied', resources: [`arn:aws:s3:::${bucket}/vault/evil`] });
    expect(rec.checks[0].reason).toMatch(/not authorized to perform: s3:PutObject .* because no identity-based or resource-based policy allows/);
  });

  it('needs kms:Decrypt on the bucket key to read an SSE-KMS object, as S3 checks for the caller', async () => {
    const reader = s3For(READER);
    expect(await nameOf(reader.send(new GetObjectCommand({ Bucket: bucket, Key: 'vault/packs/ab/cd' })))).toBe('AccessDenied');
    const rec = gw.calls.filter((c) => c.operation === 'GetObject' && c.principal === READER).at(-1)!;
    expect(rec.checks.map((c) => [c.action, c.allowed])).toEqual([['s3:GetObject', true], ['kms:Decrypt', false]]);
    // A missing object is still NoSuchKey: S3 looks for the object before it decrypts.
    expect(await nameOf(reader.send(new GetObjectCommand({ Bucket: bucket, Key: 'vault/none' })))).toBe('NoSuchKey');
  });

  it('evaluates s3:prefix on ListObjectsV2 and pages through s3rver', async () => {
    const writer = s3For(WRITER);
    for (let i = 0; i < 5; i++) await writer.send(new PutObjectCommand({ Bucket: bucket, Key: `vault/list/${i}`, Body: String(i) }));
    const reader = s3For(READER);
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await reader.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'vault/list/', MaxKeys: 2, ContinuationToken: token }));
      keys.push(...(page.Contents ?? []).map((c) => c.Key!));
      token = page.NextContinuationToken;
    } while (token);
    expect(keys).toEqual([0, 1, 2, 3, 4].map((i) => `vault/list/${i}`));
    expect(await nameOf(reader.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'other/' })))).toBe('AccessDenied');
    expect(await nameOf(reader.send(new ListObjectsV2Command({ Bucket: bucket })))).toBe('AccessDenied');
  });

  it('checks each key of DeleteObjects and a bucket policy Deny beats an identity Allow', async () => {
    const writer = s3For(WRITER);
    await writer.send(new PutObjectCommand({ Bucket: bucket, Key: 'locked/a', Body: 'a' }));
    await writer.send(new PutObjectCommand({ Bucket: bucket, Key: 'vault/del/a', Body: 'a' }));
    expect(await nameOf(writer.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: [{ Key: 'vault/del/a' }, { Key: 'locked/a' }] } })))).toBe('AccessDenied');
    const rec = gw.calls.filter((c) => c.operation === 'DeleteObjects').at(-1)!;
    expect(rec.checks.at(-1)!.reason).toMatch(/explicit deny in a resource-based policy/);
    // Nothing was deleted: the request never reached s3rver.
    await writer.send(new HeadObjectCommand({ Bucket: bucket, Key: 'vault/del/a' }));
    await writer.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: [{ Key: 'vault/del/a' }] } }));
    expect(await nameOf(writer.send(new HeadObjectCommand({ Bucket: bucket, Key: 'vault/del/a' })))).toBe('NotFound');
  });

  it("runs memvault's S3Storage from the environment a Lambda function gets (no endpoint in code)", async () => {
    await withEnv(WRITER, async () => {
      const st = new S3Storage({ bucket, prefix: 'vault/env', region: REGION });
      await st.put('packs/00/aa', [Buffer.from('hello '), Buffer.from('world')]);
      expect((await st.get('packs/00/aa')).toString()).toBe('hello world');
      expect(await st.has('packs/00/aa')).toBe(true);
      const keys: string[] = [];
      for await (const o of st.list('packs/')) keys.push(o.key);
      expect(keys).toEqual(['packs/00/aa']);
      await st.delete('packs/00/aa');
      expect(await st.has('packs/00/aa')).toBe(false);
    });
    await withEnv(READER, async () => {
      await expect(new S3Storage({ bucket, prefix: 'vault/env', region: REGION }).put('x', Buffer.from('x'))).rejects.toThrow(/AccessDenied|denied/);
    });
  });

  it('streams a multipart upload through, each part checked as s3:PutObject', async () => {
    const s3 = s3For(WRITER);
    const Key = 'vault/big/object';
    const part1 = Buffer.alloc(5 * 1024 * 1024, 7);
    const part2 = Buffer.from('tail');
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key }));
    const e1 = await s3.send(new UploadPartCommand({ Bucket: bucket, Key, UploadId, PartNumber: 1, Body: part1, ContentLength: part1.length }));
    const e2 = await s3.send(new UploadPartCommand({ Bucket: bucket, Key, UploadId, PartNumber: 2, Body: part2, ContentLength: part2.length }));
    await s3.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key, UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: e1.ETag }, { PartNumber: 2, ETag: e2.ETag }] } }));
    const got = Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: bucket, Key }))).Body!.transformToByteArray());
    expect(got.equals(Buffer.concat([part1, part2]))).toBe(true);
    const ops = gw.calls.filter((c) => c.resources.includes(`arn:aws:s3:::${bucket}/${Key}`)).map((c) => `${c.operation}:${c.action}`);
    expect(ops).toEqual(['CreateMultipartUpload:s3:PutObject', 'UploadPart:s3:PutObject', 'UploadPart:s3:PutObject', 'CompleteMultipartUpload:s3:PutObject', 'GetObject:s3:GetObject']);
  });

  it('CopyObject needs GetObject on the source', async () => {
    const reader = s3For(READER);
    expect(await nameOf(reader.send(new CopyObjectCommand({ Bucket: bucket, Key: 'vault/copy', CopySource: `${bucket}/vault/list/0` })))).toBe('AccessDenied');
    const writer = s3For(WRITER);
    await writer.send(new CopyObjectCommand({ Bucket: bucket, Key: 'vault/copy', CopySource: `${bucket}/vault/list/0` }));
    const got = await writer.send(new GetObjectCommand({ Bucket: bucket, Key: 'vault/copy' }));
    expect(await got.Body!.transformToString()).toBe('0');
  });
});

describe('KMS fake', () => {
  const kms = (role: string) => new KMSClient(sdkConfig(role));

  it('encrypts and decrypts under the key, through its alias, with the encryption context enforced', async () => {
    const c = kms(WRITER);
    const enc = await c.send(new EncryptCommand({ KeyId: 'alias/memvault', Plaintext: Buffer.from('vault secret'), EncryptionContext: { vault: 'v1' } }));
    expect(enc.KeyId).toBe(KEY);
    const dec = await c.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob, EncryptionContext: { vault: 'v1' } }));
    expect(Buffer.from(dec.Plaintext!).toString()).toBe('vault secret');
    expect(await nameOf(c.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob, EncryptionContext: { vault: 'v2' } })))).toBe('InvalidCiphertextException');
    expect(await nameOf(c.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob, KeyId: LOCKED_KEY, EncryptionContext: { vault: 'v1' } })))).toBe('AccessDeniedException');
    const tampered = Buffer.from(enc.CiphertextBlob!);
    tampered[tampered.length - 1] ^= 1;
    expect(await nameOf(c.send(new DecryptCommand({ CiphertextBlob: tampered, EncryptionContext: { vault: 'v1' } })))).toBe('InvalidCiphertextException');
  });

  it('denies a key whose policy does not delegate to IAM, even with an IAM allow', async () => {
    expect(await nameOf(kms(WRITER).send(new GenerateDataKeyCommand({ KeyId: LOCKED_KEY, KeySpec: 'AES_256' })))).toBe('AccessDeniedException');
    const rec = gw.calls.filter((c) => c.service === 'kms').at(-1)!;
    expect(rec.checks[0].reason).toMatch(/key policy does not allow it/);
  });

  it('answers NotFoundException for an unknown alias, a key of another region, DisabledException for a disabled key', async () => {
    const c = kms(WRITER);
    expect(await nameOf(c.send(new GenerateDataKeyCommand({ KeyId: 'alias/nope', KeySpec: 'AES_256' })))).toBe('NotFoundException');
    const west = new KMSClient({ ...sdkConfig(WRITER), region: 'eu-west-1' });
    expect(await nameOf(west.send(new DescribeKeyCommand({ KeyId: KEY })))).toBe('NotFoundException');
    expect(await nameOf(c.send(new EncryptCommand({ KeyId: DISABLED_KEY, Plaintext: Buffer.from('x') })))).toBe('DisabledException');
    expect(await nameOf(kms(READER).send(new DescribeKeyCommand({ KeyId: KEY })))).toBe('AccessDeniedException');
  });

  it("runs memvault's KmsKeyProvider from the environment a Lambda function gets", async () => {
    await withEnv(WRITER, async () => {
      const { provider, secret, wrapped } = await KmsKeyProvider.generate({ keyId: 'alias/memvault', region: REGION, context: { vault: 'primary' } });
      expect(secret.length).toBe(32);
      expect((await provider.unwrap(wrapped, { vault: 'primary' })).equals(secret)).toBe(true);
      await expect(provider.unwrap(wrapped, { vault: 'dr' })).rejects.toBeInstanceOf(WrongKeyError);
      const locked = new KmsKeyProvider({ keyId: LOCKED_KEY });
      await expect(locked.wrap(secret, { vault: 'primary' })).rejects.toThrow(/access to KMS key .* denied for kms:Encrypt/);
    });
  });
});

describe('SNS fake', () => {
  it("records what memvault's SnsAlertSink publishes, through the topic's KMS key", async () => {
    await withEnv(WRITER, async () => {
      await new SnsAlertSink({ topicArn: TOPIC }).send({ subject: 'backup-run failed: memory-db', message: 'pg_dump exited 1', severity: 'error', component: 'memory-db', time: '2025-01-01T00:00:00Z' });
    });
    const m = gw.published.at(-1)!;
    expect(m).toMatchObject({ topicArn: TOPIC, subject: 'backup-run failed: memory-db', principal: WRITER });
    expect(m.message).toContain('Component: memory-db');
    const rec = gw.calls.at(-1)!;
    expect(rec.checks.map((c) => c.action)).toEqual(['sns:Publish', 'kms:GenerateDataKey', 'kms:Decrypt']);
  });

  it('denies a role without sns:Publish as SNS does', async () => {
    await withEnv(READER, async () => {
      await expect(new SnsAlertSink({ topicArn: TOPIC }).send({ subject: 's', message: 'm', severity: 'error', time: 't' })).rejects.toThrow(/not authorized to publish/);
    });
    const sns = new SNSClient(sdkConfig(READER));
    const err = await sns.send(new PublishCommand({ TopicArn: TOPIC, Message: 'x' })).catch((e: Error & { $metadata?: { httpStatusCode?: number } }) => e);
    expect((err as Error).name).toMatch(/^AuthorizationError/);
  });

  it('answers NotFound for an unknown topic and InvalidParameter past 256 KiB', async () => {
    const sns = new SNSClient(sdkConfig(WRITER));
    expect(await nameOf(sns.send(new PublishCommand({ TopicArn: `${TOPIC}-nope`, Message: 'x' })))).toMatch(/^(AuthorizationError|NotFound)/);
    expect(await nameOf(sns.send(new PublishCommand({ TopicArn: TOPIC, Message: 'x'.repeat(256 * 1024 + 1) })))).toMatch(/^InvalidParameter/);
  });

  it('lets the failed-execution rule publish through the topic policy and key policy, and not another rule', () => {
    const before = gw.published.length;
    gw.publishAsService('events.amazonaws.com', TOPIC, '{"status":"FAILED"}', { 'aws:SourceArn': FAILED_RULE, 'aws:SourceAccount': ACCOUNT });
    expect(gw.published.slice(before)).toMatchObject([{ topicArn: TOPIC, principal: 'events.amazonaws.com', message: '{"status":"FAILED"}' }]);
    let err: Error | undefined;
    try {
      gw.publishAsService('events.amazonaws.com', TOPIC, 'x', { 'aws:SourceArn': `arn:aws:events:${REGION}:${ACCOUNT}:rule/other`, 'aws:SourceAccount': ACCOUNT });
    } catch (e) {
      err = e as Error;
    }
    expect(err?.name).toBe('AuthorizationError');
    expect(gw.published.length).toBe(before + 1);
    // CloudWatch is not in the topic policy at all.
    expect(() => gw.publishAsService('cloudwatch.amazonaws.com', TOPIC, 'x', { 'aws:SourceArn': `arn:aws:cloudwatch:${REGION}:${ACCOUNT}:alarm:a`, 'aws:SourceAccount': ACCOUNT })).toThrow(/not authorized/);
  });
});

describe('Secrets Manager fake', () => {
  const sm = (role: string) => new SecretsManagerClient(sdkConfig(role));

  it('reads a seeded secret by ARN and by name, denies another role', async () => {
    const byArn = await sm(WRITER).send(new GetSecretValueCommand({ SecretId: SECRET }));
    expect(byArn).toMatchObject({ ARN: SECRET, Name: 'memvault/db', SecretString: '{"username":"memvault","password":"s3cret"}' });
    expect((await sm(WRITER).send(new GetSecretValueCommand({ SecretId: 'memvault/db' }))).ARN).toBe(SECRET);
    expect((await sm(WRITER).send(new GetSecretValueCommand({ SecretId: SECRET.slice(0, -7) }))).ARN).toBe(SECRET);
    expect(await nameOf(sm(READER).send(new GetSecretValueCommand({ SecretId: SECRET })))).toBe('AccessDeniedException');
    expect(await nameOf(sm(WRITER).send(new GetSecretValueCommand({ SecretId: 'memvault/none' })))).toBe('ResourceNotFoundException');
  });

  it("needs kms:Decrypt on a secret's customer key, through Secrets Manager, as the key policy allows", async () => {
    expect(await nameOf(sm(WRITER).send(new GetSecretValueCommand({ SecretId: 'memvault/locked-db' })))).toBe('AccessDeniedException');
    const rec = gw.calls.at(-1)!;
    expect(rec.checks.map((c) => [c.action, c.allowed])).toEqual([['secretsmanager:GetSecretValue', true], ['kms:Decrypt', false]]);
  });

  it('creates with a six-character ARN suffix, refuses a duplicate, versions on PutSecretValue, lists by prefix in pages', async () => {
    const c = sm(WRITER);
    const created = await c.send(new CreateSecretCommand({ Name: 'memvault/restored/a', SecretString: 'one' }));
    expect(created.ARN).toMatch(new RegExp(`^arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:memvault/restored/a-[A-Za-z0-9]{6}$`));
    expect(await nameOf(c.send(new CreateSecretCommand({ Name: 'memvault/restored/a', SecretString: 'x' })))).toBe('ResourceExistsException');
    await c.send(new PutSecretValueCommand({ SecretId: 'memvault/restored/a', SecretString: 'two' }));
    expect((await c.send(new GetSecretValueCommand({ SecretId: created.ARN }))).SecretString).toBe('two');
    expect((await c.send(new GetSecretValueCommand({ SecretId: created.ARN, VersionStage: 'AWSPREVIOUS' }))).SecretString).toBe('one');
    const d = await c.send(new DescribeSecretCommand({ SecretId: created.ARN }));
    expect(Object.values(d.VersionIdsToStages ?? {}).flat().sort()).toEqual(['AWSCURRENT', 'AWSPREVIOUS']);
    expect(await nameOf(c.send(new PutSecretValueCommand({ SecretId: 'memvault/restored/none', SecretString: 'x' })))).toBe('ResourceNotFoundException');
    for (const n of ['b', 'c']) await c.send(new CreateSecretCommand({ Name: `memvault/restored/${n}`, SecretString: n }));
    const names: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const page = await c.send(new ListSecretsCommand({ Filters: [{ Key: 'name', Values: ['memvault/restored/'] }], MaxResults: 2, NextToken: token }));
      names.push(...(page.SecretList ?? []).map((s) => s.Name!));
      token = page.NextToken;
      pages++;
    } while (token);
    expect(names).toEqual(['memvault/restored/a', 'memvault/restored/b', 'memvault/restored/c']);
    expect(pages).toBe(2);
  });
});

describe('authorize() for calls made outside the gateway', () => {
  it('decides with the same policies and records the decision', () => {
    expect(gw.authorize(WRITER, 's3:GetObject', `arn:aws:s3:::${bucket}/vault/x`).allowed).toBe(true);
    const d = gw.authorize(READER, 'sns:Publish', TOPIC);
    expect(d).toMatchObject({ allowed: false });
    expect(d.reason).toMatch(/memvault-rpo-watch.* is not authorized to perform: sns:Publish/);
    expect(gw.authorize('events.amazonaws.com', 'sns:Publish', TOPIC, { 'aws:SourceArn': FAILED_RULE, 'aws:SourceAccount': ACCOUNT }).allowed).toBe(true);
    expect(gw.authorize('events.amazonaws.com', 'sns:Publish', TOPIC, { 'aws:SourceArn': FAILED_RULE, 'aws:SourceAccount': '999999999999' }).allowed).toBe(false);
    expect(gw.calls.at(-1)).toMatchObject({ principal: 'events.amazonaws.com', action: 'sns:Publish', allowed: false });
  });
});

/** Runs fn with the environment a rehearsed Lambda function gets: endpoint override and the role's credentials. */
async function withEnv(role: string, fn: () => Promise<void>): Promise<void> {
  const names = ['AWS_ENDPOINT_URL', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_REGION', 'AWS_REQUEST_CHECKSUM_CALCULATION'] as const;
  const saved = Object.fromEntries(names.map((n) => [n, process.env[n]]));
  const c = gw.credentialsFor(role);
  Object.assign(process.env, { AWS_ENDPOINT_URL: gw.url, AWS_ACCESS_KEY_ID: c.accessKeyId, AWS_SECRET_ACCESS_KEY: c.secretAccessKey, AWS_SESSION_TOKEN: c.sessionToken, AWS_REGION: REGION, AWS_REQUEST_CHECKSUM_CALCULATION: 'WHEN_REQUIRED' });
  try {
    await fn();
  } finally {
    for (const n of names) {
      if (saved[n] === undefined) delete process.env[n];
      else process.env[n] = saved[n];
    }
  }
}
