// What infra/deploy-config.ts decides as plain data, without building stacks:
// Lambda's environment size as Lambda counts it, what an AWS deploy refuses
// in database settings (environment variables, passwords in URLs), and which
// handlers read which database secrets.
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../functions/core/config.ts';
import { kindSchemas } from '../../functions/components/registry.ts';
import { ConfigError } from '../../functions/core/errors.ts';
import {
  checkEnvironmentSize, databaseSecretNeeds, handlerConfig, lambdaEnvironmentSize, LAMBDA_ENV_LIMIT_BYTES, requireAws,
  RESTORE_SECRET_HANDLERS, secretArnsByHandler, SOURCE_SECRET_HANDLERS,
} from '../../infra/deploy-config.ts';

const arn = (name: string) => `arn:aws:secretsmanager:eu-west-1:123456789012:secret:${name}-AbCdEf`;
const AWS = { account: '123456789012', region: 'eu-west-1', drRegion: 'eu-central-1' };

function deployDoc(components: Record<string, unknown>, aws: Record<string, unknown> = {}) {
  return { vault: { primary: 'file://v' }, encryption: { key: 'k' }, components, aws: { ...AWS, ...aws } };
}
const allProblemsOf = (doc: unknown): string[] => {
  try {
    requireAws(parseConfig(doc, kindSchemas, '/tmp'));
    return [];
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return err.problems;
  }
};
/** The problems but the missing drill targets (tested on their own below). */
const problemsOf = (doc: unknown): string[] => allProblemsOf(doc).filter((p) => !/\.drill: not set/.test(p));

describe('drill targets on AWS', () => {
  it('refuses every data component without a drill target, naming the field; snapshot kinds need none', () => {
    const problems = allProblemsOf(deployDoc({
      db: { kind: 'postgres', url: 'postgres://u@db.example/m', secretArn: arn('db') },
      weights: { kind: 's3-prefix', bucket: 'b' },
      'weights-drilled': { kind: 's3-prefix', bucket: 'b', drill: { bucket: 'scratch-bucket', prefix: 'w/' } },
      snap: { kind: 'rds-snapshot', instanceId: 'i', region: 'eu-west-1', copyToDr: false },
    }));
    expect(problems.filter((p) => /drill/.test(p)).map((p) => p.split(':')[0]).sort()).toEqual(['components.db.drill', 'components.weights.drill']);
    expect(problems.find((p) => p.startsWith('components.db.drill'))).toMatch(/verify-drill.*scratch target/);
  });
});

describe('Lambda environment size', () => {
  it('is the JSON of the whole variables map, quotes and escapes included', () => {
    expect(lambdaEnvironmentSize({ A: 'b' })).toBe('{"A":"b"}'.length);
    expect(lambdaEnvironmentSize({ A: '"\n' })).toBe('{"A":"\\"\\n"}'.length);
  });

  it('refuses an environment that raw-byte counting accepts and Lambda rejects', () => {
    // 3,990 bytes of keys and values: under 4 KB by a raw count. Each quote is
    // escaped in Lambda's count (+300), plus the map's own quotes and braces.
    const env = { MEMVAULT_CONFIG_JSON: `{${'"k":1,'.repeat(300)}${'x'.repeat(3990 - 20 - 1 - 300 * 6)}` };
    const raw = Object.entries(env).reduce((n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v), 0);
    expect(raw).toBeLessThanOrEqual(LAMBDA_ENV_LIMIT_BYTES);
    expect(lambdaEnvironmentSize(env)).toBeGreaterThan(LAMBDA_ENV_LIMIT_BYTES);
    expect(() => checkEnvironmentSize('export-stream', env)).toThrow(ConfigError);
    expect(() => checkEnvironmentSize('export-stream', env)).toThrow(/environment of export-stream is \d+ bytes as Lambda counts it .* largest: MEMVAULT_CONFIG_JSON/);
    expect(() => checkEnvironmentSize('export-stream', { MEMVAULT_LOG: 'info' })).not.toThrow();
  });
});

describe('database credentials on AWS', () => {
  it('refuses settings that read environment variables and passwords in URLs, naming the field and pointing to secretArn', () => {
    const problems = problemsOf(deployDoc({
      episodic: { kind: 'mongodb', uriEnv: 'EPISODIC_MONGODB_URI', databases: ['memory'] },
      cache: { kind: 'redis', url: 'rediss://cache.example:6379', passwordEnv: 'REDIS_AUTH_TOKEN' },
      vectors: { kind: 'vector', url: 'postgres://u:hunter2@vectors.example/v', table: 'e', dimensions: 8 },
      db: { kind: 'postgres', url: 'postgres://u@db.example/m', passwordEnv: 'DB_PASSWORD' },
      docs: { kind: 'mongodb', uri: 'mongodb://u:hunter3@docdb.example:27017/', databases: ['memory'] },
    }));
    expect(problems).toEqual(expect.arrayContaining([
      'components.episodic.uriEnv: reads the environment variable EPISODIC_MONGODB_URI, which the deployed functions do not have; put the credentials in a Secrets Manager secret and set components.episodic.secretArn (or aws.databaseSecrets.components.episodic)',
      expect.stringMatching(/^components\.cache\.passwordEnv: reads the environment variable REDIS_AUTH_TOKEN, .*set components\.cache\.secretArn/),
      'components.vectors.url: postgres://u:***@vectors.example/v carries a password, which would be stored in plain text in the deployed config; remove it from the URL and put the credentials in a Secrets Manager secret and set components.vectors.secretArn (or aws.databaseSecrets.components.vectors)',
      expect.stringMatching(/^components\.db\.passwordEnv: /),
      expect.stringMatching(/^components\.docs\.uri: mongodb:\/\/u:\*\*\*@docdb\.example:27017\/ carries a password/),
      expect.stringMatching(/^components\.episodic: no way to connect on AWS; set secretArn/),
    ]));
    expect(problems.join('\n')).not.toMatch(/hunter[23]/);
  });

  it('accepts secretArn (own or from aws.databaseSecrets) and delivers it to the handlers', () => {
    const doc = deployDoc({
      episodic: { kind: 'mongodb', databases: ['memory'], drill: { uri: 'mongodb://scratch.example:27017/' } },
      cache: { kind: 'redis', url: 'rediss://cache.example:6379', secretArn: arn('cache'), drill: { url: 'rediss://scratch.example:6379', db: 8 } },
      db: { kind: 'postgres', url: 'postgres://u@db.example/m', drill: { url: 'postgres://u@scratch.example/postgres' } },
      weights: { kind: 's3-prefix', bucket: 'b', drill: { bucket: 'scratch-bucket', prefix: 'w/' } },
    }, { databaseSecrets: { components: { episodic: arn('episodic') }, kinds: { postgres: arn('pg') }, restoreTargets: [arn('scratch')] } });
    expect(allProblemsOf(doc)).toEqual([]);
    const cfg = requireAws(parseConfig(doc, kindSchemas, '/tmp'));
    const handlers = parseConfig(handlerConfig(cfg, 'primary'), kindSchemas, '/var/task');
    expect((handlers.components.episodic as { secretArn?: string }).secretArn).toBe(arn('episodic'));
    expect((handlers.components.db as { secretArn?: string }).secretArn).toBe(arn('pg'));
    expect((handlers.components.cache as { secretArn?: string }).secretArn).toBe(arn('cache'));
    expect((handlers.components.weights as { secretArn?: string }).secretArn).toBeUndefined();

    expect(databaseSecretNeeds(cfg)).toEqual({
      source: [arn('cache'), arn('episodic'), arn('pg')],
      restore: [arn('cache'), arn('episodic'), arn('pg'), arn('scratch')],
    });
    const byHandler = secretArnsByHandler(cfg);
    expect(Object.keys(byHandler).sort()).toEqual([...SOURCE_SECRET_HANDLERS, ...RESTORE_SECRET_HANDLERS].sort());
    expect(byHandler['export-stream']).not.toContain(arn('scratch'));
    expect(byHandler['restore-component']).toContain(arn('scratch'));
  });

  it('refuses a component secretArn that contradicts aws.databaseSecrets', () => {
    expect(problemsOf(deployDoc(
      { db: { kind: 'postgres', url: 'postgres://u@db.example/m', secretArn: arn('a') } },
      { databaseSecrets: { components: { db: arn('b') } } },
    ))).toEqual([`components.db.secretArn: ${arn('a')} differs from aws.databaseSecrets.components.db (${arn('b')}); name the secret once`]);
  });
});
