// The redis driver taking its AUTH credentials from a Secrets Manager secret
// (the way on AWS, where no environment variable carries a password): two
// real redis-servers on loopback with requirepass (source and restore
// target), Secrets Manager mocked. The backup, the restore into the target
// named by its secretArn and the validation there all authenticate with the
// secrets' passwords, which appear in no log line and not in the manifest.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { mockClient } from 'aws-sdk-client-mock';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { createClient } from 'redis';
import { startRedis, type RedisHandle } from '../helpers/redis.ts';
import { makeHarness } from '../helpers/driver-harness.ts';
import { redisDriver } from '../../functions/components/redis.ts';
import { secretScope } from '../../functions/adapters/secrets.ts';
import { PermanentError } from '../../functions/core/errors.ts';

const SOURCE_ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:working-memory-backup-AbCdEf';
const TARGET_ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:memvault-restore-targets-AbCdEf';
const SOURCE_PASSWORD = 'src-Auth-Token-0123456789abcdef';
const TARGET_PASSWORD = 'dst-Auth-Token-fedcba9876543210';

async function requirePass(url: string, password: string): Promise<void> {
  const c = createClient({ url });
  c.on('error', () => undefined);
  await c.connect();
  await c.sendCommand(['CONFIG', 'SET', 'requirepass', password]);
  await c.close().catch(() => undefined);
}

describe('redis driver with secretArn (real redis-server with AUTH, Secrets Manager mocked)', () => {
  const sm = mockClient(SecretsManagerClient);
  let source: RedisHandle;
  let target: RedisHandle;

  beforeAll(async () => {
    [source, target] = await Promise.all([startRedis(), startRedis()]);
    const c = createClient({ url: source.url });
    c.on('error', () => undefined);
    await c.connect();
    for (let i = 0; i < 50; i++) await c.set(`memory:${i}`, `value ${i}`);
    await c.hSet('agent:profile', { name: 'ada', mood: 'curious' });
    await c.close();
    await requirePass(source.url, SOURCE_PASSWORD);
    await requirePass(target.url, TARGET_PASSWORD);
  }, 30_000);
  afterAll(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
  });
  beforeEach(() => {
    sm.reset();
    sm.on(GetSecretValueCommand, { SecretId: SOURCE_ARN }).resolves({ SecretString: JSON.stringify({ password: SOURCE_PASSWORD }) });
    sm.on(GetSecretValueCommand, { SecretId: TARGET_ARN }).resolves({ SecretString: JSON.stringify({ password: TARGET_PASSWORD }) });
  });

  it('backs up with the source secret, restores into the target named by its secret and validates there', async () => {
    const h = await makeHarness(redisDriver, 'working-memory', { url: source.url, secretArn: SOURCE_ARN });
    try {
      const out = await secretScope(() => h.backup('full'));
      const m = await h.manifest(out.backupId);
      expect((m.driver.databases as Record<string, { keys: number }>)['0'].keys).toBe(51);
      // One read of the source secret for the whole backup (one connection per logical database), in one invocation.
      expect(sm.commandCalls(GetSecretValueCommand, { SecretId: SOURCE_ARN })).toHaveLength(1);

      const r = await h.restore(out.backupId, { url: target.url, secretArn: TARGET_ARN });
      expect(r.validation.ok).toBe(true);
      const check = createClient({ url: target.url, password: TARGET_PASSWORD });
      check.on('error', () => undefined);
      await check.connect();
      try {
        expect(await check.get('memory:7')).toBe('value 7');
        expect(await check.hGet('agent:profile', 'mood')).toBe('curious');
      } finally {
        await check.close();
      }
      const recorded = JSON.stringify({ logs: h.logs, manifest: m, restore: r });
      expect(recorded).not.toContain(SOURCE_PASSWORD);
      expect(recorded).not.toContain(TARGET_PASSWORD);
    } finally {
      await h.close();
    }
  });

  it('a wrong password in the secret is a permanent authentication error that quotes neither password', async () => {
    sm.on(GetSecretValueCommand, { SecretId: SOURCE_ARN }).resolves({ SecretString: JSON.stringify({ password: 'not-the-token' }) });
    const h = await makeHarness(redisDriver, 'working-memory', { url: source.url, secretArn: SOURCE_ARN });
    try {
      const err = await h.backup('full').catch((e) => e);
      expect(err).toBeInstanceOf(PermanentError);
      expect(err.message).toMatch(/authentication failed/);
      expect(err.message).not.toContain('not-the-token');
      expect(err.message).not.toContain(SOURCE_PASSWORD);
    } finally {
      await h.close();
    }
  });

  it('a restore target secretArn needs the url of the target', async () => {
    const h = await makeHarness(redisDriver, 'working-memory', { url: source.url, secretArn: SOURCE_ARN });
    try {
      const out = await h.backup('full');
      await expect(h.restore(out.backupId, { secretArn: TARGET_ARN })).rejects.toThrow(/restore target option secretArn: also set url/);
    } finally {
      await h.close();
    }
  });
});
