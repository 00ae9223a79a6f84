// Database credentials from Secrets Manager (functions/adapters/secrets.ts),
// with Secrets Manager mocked (a control-plane API that cannot run here):
// what each error becomes (the state machine retries throttling, not a
// missing secret), that messages name the component's field and the ARN but
// never the value, that a secret is read once per invocation, and that the
// mongodb driver builds its connection from the DocumentDB secret layout. The
// redis driver with a secret runs against a real redis-server in
// test/integration/redis-secret.test.ts; postgres in postgres-driver.test.ts.
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mockClient } from 'aws-sdk-client-mock';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import {
  parseDatabaseSecret, passwordsInUrls, readDatabaseSecret, redactUrl, redactUrlsIn, secretScope, urlHasPassword,
} from '../../functions/adapters/secrets.ts';
import { NotFoundError, PermanentError, RetryableError, ThrottledError } from '../../functions/core/errors.ts';
import { jsonLogger } from '../../functions/logger.ts';
import { createMongodbDriver } from '../../functions/components/mongodb.ts';
import { MongoDouble } from '../helpers/mongodb-double.ts';
import { makeHarness } from '../helpers/driver-harness.ts';

const ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:episodic-docdb-backup-AbCdEf';
const FIELD = 'components.episodic.secretArn';
const PASSWORD = 'pA55-w0rd:with@odd/chars';
const awsError = (name: string, message = name) => Object.assign(new Error(message), { name, $metadata: {} });

describe('readDatabaseSecret (Secrets Manager mocked)', () => {
  const sm = mockClient(SecretsManagerClient);
  beforeEach(() => sm.reset());

  it('reads the RDS / DocumentDB layout: username, password, host, port (a string too), dbname, ssl', async () => {
    sm.on(GetSecretValueCommand, { SecretId: ARN }).resolves({
      SecretString: JSON.stringify({ engine: 'mongo', username: 'memvault', password: PASSWORD, host: 'docdb.example', port: '27017', ssl: true, dbname: 'memory' }),
    });
    expect(await readDatabaseSecret(ARN, FIELD)).toEqual({ username: 'memvault', password: PASSWORD, host: 'docdb.example', port: 27017, ssl: true, dbname: 'memory' });
    // The client is built for the secret's region.
    expect(await sm.call(0).thisValue.config.region()).toBe('eu-west-1');
  });

  it('reads SecretBinary as UTF-8 JSON', async () => {
    sm.on(GetSecretValueCommand).resolves({ SecretBinary: Buffer.from(JSON.stringify({ uri: 'mongodb://u:p@h/' })) });
    expect((await readDatabaseSecret(ARN, FIELD)).uri).toBe('mongodb://u:p@h/');
  });

  it('throttling is a ThrottledError (retried by the state machine), naming the field and the ARN', async () => {
    sm.on(GetSecretValueCommand).rejects(awsError('ThrottlingException', 'Rate exceeded'));
    const err = await readDatabaseSecret(ARN, FIELD).catch((e) => e);
    expect(err).toBeInstanceOf(ThrottledError);
    expect(err).toBeInstanceOf(RetryableError);
    expect(err.name).toBe('ThrottledError');
    expect(err.message).toContain(FIELD);
    expect(err.message).toContain(ARN);
  });

  it('a service failure is retryable; a missing secret and a denied read are permanent and say what to do', async () => {
    sm.on(GetSecretValueCommand).rejectsOnce(awsError('InternalServiceError'))
      .rejectsOnce(awsError('ResourceNotFoundException', "Secrets Manager can't find the specified secret."))
      .rejectsOnce(awsError('AccessDeniedException', 'not authorized'));
    await expect(readDatabaseSecret(ARN, FIELD)).rejects.toThrow(RetryableError);
    const missing = await readDatabaseSecret(ARN, FIELD).catch((e) => e);
    expect(missing).toBeInstanceOf(NotFoundError);
    expect(missing.message).toBe(`${FIELD}: secret ${ARN} does not exist (or is scheduled for deletion)`);
    const denied = await readDatabaseSecret(ARN, FIELD).catch((e) => e);
    expect(denied).toBeInstanceOf(PermanentError);
    expect(denied).not.toBeInstanceOf(RetryableError);
    expect(denied.message).toMatch(new RegExp(`^${FIELD.replaceAll('.', '\\.')}: cannot read .*AccessDeniedException .*secretsmanager:GetSecretValue`));
  });

  it('a secret that is not JSON, not an object, or has a field of the wrong type is refused without quoting it', async () => {
    for (const text of [PASSWORD, JSON.stringify([PASSWORD]), JSON.stringify({ password: 98765 })]) {
      const err = (() => { try { parseDatabaseSecret(text, ARN, FIELD); } catch (e) { return e as Error; } })();
      expect(err).toBeInstanceOf(PermanentError);
      expect(err!.message).toContain(ARN);
      expect(err!.message).toContain(FIELD);
      expect(err!.message).not.toContain(PASSWORD);
      expect(err!.message).not.toContain('98765');
    }
  });

  it('reads a secret once per invocation (secretScope), again in the next one, and does not remember a failure', async () => {
    sm.on(GetSecretValueCommand).rejectsOnce(awsError('ThrottlingException'))
      .resolves({ SecretString: JSON.stringify({ username: 'u', password: PASSWORD }) });
    await secretScope(async () => {
      await expect(readDatabaseSecret(ARN, FIELD)).rejects.toThrow(ThrottledError);
      const [a, b] = await Promise.all([readDatabaseSecret(ARN, FIELD), readDatabaseSecret(ARN, FIELD)]);
      expect(a.password).toBe(PASSWORD);
      expect(b).toBe(a);
    });
    expect(sm.commandCalls(GetSecretValueCommand)).toHaveLength(2);
    await secretScope(() => readDatabaseSecret(ARN, FIELD));
    expect(sm.commandCalls(GetSecretValueCommand)).toHaveLength(3);
    // Outside a scope (the CLI) nothing is cached.
    await readDatabaseSecret(ARN, FIELD);
    await readDatabaseSecret(ARN, FIELD);
    expect(sm.commandCalls(GetSecretValueCommand)).toHaveLength(5);
  });
});

describe('passwords in URLs', () => {
  it('are detected and redacted, up to the last @ before the host', () => {
    expect(urlHasPassword('postgres://u:secret@h:5432/db')).toBe(true);
    expect(urlHasPassword('postgres://u@h:5432/db')).toBe(false);
    expect(urlHasPassword('rediss://h:6379')).toBe(false);
    expect(urlHasPassword('mongodb://h1:27017,h2:27017/?replicaSet=rs0')).toBe(false);
    expect(redactUrl('postgres://u:secret@h/db?sslmode=require')).toBe('postgres://u:***@h/db?sslmode=require');
    expect(redactUrl('rediss://:tok@en@cache.example:6379')).toBe('rediss://:***@cache.example:6379');
    expect(redactUrlsIn('failed: mongodb://a:b@h1,h2/x and postgres://c:d@e/f')).toBe('failed: mongodb://a:***@h1,h2/x and postgres://c:***@e/f');
    expect(passwordsInUrls({ 'memory-db': { url: 'postgres://u:secret@h/db', force: true } }, 'target.options')).toEqual([
      'target.options.memory-db.url: postgres://u:***@h/db carries a password, which would be recorded in the execution history; remove it from the URL and name a Secrets Manager secret with the credentials in secretArn',
    ]);
  });

  it('never reach a log line: URLs are redacted and credential fields masked', () => {
    const out = new PassThrough();
    const lines: string[] = [];
    out.on('data', (b) => lines.push(String(b)));
    const log = jsonLogger({ service: 'memvault' }, 'info', out).child({ component: 'memory-db' });
    // In a URL the password is percent-encoded (an unencoded / would end the authority).
    const url = `postgres://u:${encodeURIComponent(PASSWORD)}@db.example/memory`;
    log.info(`connecting to ${url}`, { target: { url }, password: PASSWORD, token: 'tok-123' });
    expect(lines).toHaveLength(1);
    expect(lines[0]).not.toContain(PASSWORD);
    expect(lines[0]).not.toContain(encodeURIComponent(PASSWORD));
    expect(lines[0]).not.toContain('tok-123');
    const rec = JSON.parse(lines[0]);
    expect(rec.msg).toBe('connecting to postgres://u:***@db.example/memory');
    expect(rec.target.url).toBe('postgres://u:***@db.example/memory');
    expect(rec.password).toBe('***');
    expect(rec.component).toBe('memory-db');
  });
});

describe('mongodb driver with secretArn (test double, Secrets Manager mocked)', () => {
  const sm = mockClient(SecretsManagerClient);
  let source: MongoDouble;
  const seen: string[] = [];
  beforeEach(async () => {
    sm.reset();
    seen.length = 0;
    source = new MongoDouble();
    await source.client().db('memory').collection('episodes').insertMany([{ n: 1 }, { n: 2 }, { n: 3 }]);
  });
  afterEach(() => sm.reset());

  const driver = () => createMongodbDriver({ connect: async (uri) => { seen.push(uri); return source.client(); } });

  it('connects with the DocumentDB layout (host, port, ssl) when the component has no uri, and logs no password', async () => {
    sm.on(GetSecretValueCommand, { SecretId: ARN }).resolves({ SecretString: JSON.stringify({ engine: 'mongo', username: 'memvault', password: PASSWORD, host: 'docdb.example', port: 27017, ssl: true }) });
    const h = await makeHarness(driver(), 'episodic', { secretArn: ARN, databases: ['memory'] });
    try {
      const out = await h.backup('full');
      expect(out.stats.entries ?? (await h.manifest(out.backupId)).entries.length).toBeGreaterThan(0);
      expect(seen).toEqual([`mongodb://memvault:${encodeURIComponent(PASSWORD)}@docdb.example:27017/?tls=true`]);
      expect(JSON.stringify(h.logs)).not.toContain(PASSWORD);
      expect(JSON.stringify(await h.manifest(out.backupId))).not.toContain(encodeURIComponent(PASSWORD));
    } finally {
      await h.close();
    }
  });

  it('puts the secret\'s credentials into the component\'s uri, and a secret "uri" wins as a whole', async () => {
    sm.on(GetSecretValueCommand, { SecretId: ARN }).resolvesOnce({ SecretString: JSON.stringify({ username: 'memvault', password: 'p@ss' }) })
      .resolvesOnce({ SecretString: JSON.stringify({ uri: 'mongodb://other:pw@other.example/' }) });
    const h = await makeHarness(driver(), 'episodic', { uri: 'mongodb://h1:27017,h2:27017/?replicaSet=rs0&tls=true', secretArn: ARN, databases: ['memory'] });
    try {
      await h.backup('full');
      await h.backup('full');
      expect(seen).toEqual(['mongodb://memvault:p%40ss@h1:27017,h2:27017/?replicaSet=rs0&tls=true', 'mongodb://other:pw@other.example/']);
    } finally {
      await h.close();
    }
  });

  it('a secret without a password fails naming the component\'s field, the ARN and the missing field', async () => {
    sm.on(GetSecretValueCommand).resolves({ SecretString: JSON.stringify({ username: 'memvault', host: 'docdb.example' }) });
    const h = await makeHarness(driver(), 'episodic', { secretArn: ARN, databases: ['memory'] });
    try {
      await expect(h.backup('full')).rejects.toThrow(`components.episodic.secretArn: secret ${ARN} has no "password" field`);
      expect(seen).toEqual([]);
    } finally {
      await h.close();
    }
  });

  it('restores into a target named by its secretArn', async () => {
    const TARGET = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:restore-target-AbCdEf';
    sm.on(GetSecretValueCommand, { SecretId: ARN }).resolves({ SecretString: JSON.stringify({ username: 'src', password: 'a', host: 'src.example' }) });
    sm.on(GetSecretValueCommand, { SecretId: TARGET }).resolves({ SecretString: JSON.stringify({ username: 'dst', password: 'b', host: 'dst.example', port: 27018 }) });
    const target = new MongoDouble();
    const h = await makeHarness(createMongodbDriver({ connect: async (uri) => { seen.push(uri); return (uri.includes('dst.example') ? target : source).client(); } }), 'episodic', { secretArn: ARN, databases: ['memory'] });
    try {
      const out = await h.backup('full');
      const r = await h.restore(out.backupId, { secretArn: TARGET, databaseMap: { memory: 'memory_restored' } });
      expect(r.validation.ok).toBe(true);
      expect(await target.client().db('memory_restored').collection('episodes').countDocuments()).toBe(3);
      expect(seen.filter((u) => u.includes('dst.example'))[0]).toBe('mongodb://dst:b@dst.example:27018/');
    } finally {
      await h.close();
    }
  });
});
