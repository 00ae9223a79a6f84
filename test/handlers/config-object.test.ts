// The handlers' configuration as an S3 object (MEMVAULT_CONFIG_S3 and
// MEMVAULT_CONFIG_SHA256) instead of an environment variable: a config far
// over Lambda's 4 KB environment limit (60 components) synthesizes, every
// function's environment stays small, and a real handler (lazyHandler, as the
// bundled `handler` export runs on Lambda) loads the object that synth staged
// for `cdk deploy` from an S3-compatible server on loopback (s3rver), once
// per instance, and gets the same config; an object that is not the deployed
// one is refused, naming both digests.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { App } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../functions/core/config.ts';
import { kindSchemas } from '../../functions/components/registry.ts';
import { ConfigError, IntegrityError } from '../../functions/core/errors.ts';
import { APP_CONTEXT, buildMemvaultApp } from '../../infra/app.ts';
import { handlerConfig, lambdaEnvironmentSize, requireAws } from '../../infra/deploy-config.ts';
import { lazyHandler, loadConfigFromEnv } from '../../functions/handlers/deps.ts';
import { makeHandler as validateRestoreInput } from '../../functions/handlers/validate-restore-input.ts';
import { startS3rver, type S3rverHandle } from '../helpers/s3rver.ts';
import { configObjectOf, exampleDoc } from '../infra/helpers.ts';

/** The deployment example with 60 s3-prefix components, each with a description: about 20 KB of config. */
function bigDoc() {
  const doc = exampleDoc();
  for (let i = 0; i < 60; i++) {
    doc.components[`checkpoint-shard-${String(i).padStart(2, '0')}`] = {
      kind: 's3-prefix', bucket: `platform-checkpoints-111111111111-${i % 4}`, prefix: `shards/${i}/`,
      description: `checkpoint shard ${i} of the memory model "memory-7b" (weights, optimizer state and tokenizer files)`,
      schedule: `${i % 60} 3 * * *`, rpo: '26h', retention: { days: 30, keepWeekly: 8 },
      drill: { bucket: 'memvault-drill-111111111111-eu-west-1', prefix: `shard-${i}/` },
    };
  }
  return doc;
}

describe('config object instead of MEMVAULT_CONFIG_JSON', () => {
  const outdir = mkdtempSync(path.join(os.tmpdir(), 'memvault-config-object-'));
  const cfg = requireAws(parseConfig(bigDoc(), kindSchemas, os.tmpdir()));
  let s3: S3rverHandle;
  let variables: Record<string, string>;
  let object: { bucket: string; key: string; body: Buffer };

  beforeAll(async () => {
    const app = new App({ context: APP_CONTEXT, outdir });
    const built = buildMemvaultApp(app, cfg, { handlerCode: () => lambda.Code.fromInline('exports.handler = async () => ({});'), nag: false });
    const assembly = app.synth();
    const template = assembly.getStackByName(built.primary.stackName).template as { Resources: Record<string, any> };
    const fns = Object.values(template.Resources).filter((r) => r.Type === 'AWS::Lambda::Function');
    expect(fns.length).toBeGreaterThan(10);
    for (const f of fns) expect(lambdaEnvironmentSize(f.Properties.Environment.Variables), f.Properties.Description).toBeLessThan(1024);
    variables = fns.find((f) => f.Properties.Description === 'memvault validate-restore-input').Properties.Environment.Variables;
    object = configObjectOf(assembly.directory, built.primary.stackName, variables);
    s3 = await startS3rver(object.bucket);
    const c = s3.client();
    await c.send(new PutObjectCommand({ Bucket: object.bucket, Key: object.key, Body: object.body }));
  }, 180_000);
  afterAll(async () => {
    await s3?.close();
    rmSync(outdir, { recursive: true, force: true });
  });

  it('synthesizes a config several times Lambda\'s environment limit into an object the functions name', () => {
    expect(JSON.stringify(handlerConfig(cfg, 'primary')).length).toBeGreaterThan(4 * 4096);
    expect(object.body.length).toBeGreaterThan(4 * 4096);
    expect(Object.keys(variables).sort()).toEqual(['MEMVAULT_CONFIG_S3', 'MEMVAULT_CONFIG_SHA256', 'MEMVAULT_LOG', 'MEMVAULT_REGION_ROLE', 'NODE_OPTIONS']);
  });

  it('a handler loads it from S3 at cold start, once per instance, and runs with the same config', async () => {
    const client = s3.client();
    let gets = 0;
    client.middlewareStack.add((next, context) => async (args) => {
      if (context.commandName === 'GetObjectCommand') gets++;
      return next(args);
    }, { step: 'initialize', name: 'countGets' });
    const env = { ...variables, AWS_LAMBDA_FUNCTION_NAME: 'memvault-validate-restore-input', AWS_REGION: 'eu-west-1' };
    const handler = lazyHandler(validateRestoreInput, env, { s3: client });
    const out = await handler({ input: { mode: 'latest', components: ['checkpoint-shard-59'] } }) as { components: string[] };
    expect(out.components).toEqual(['checkpoint-shard-59']);
    // An in-place restore of an unknown component is refused, naming the configured ones: the handler has all 64.
    await expect(handler({ input: { mode: 'latest', components: ['nope'], target: { inPlace: true } } }))
      .rejects.toThrow(/"nope" is not configured.*checkpoint-shard-00.*checkpoint-shard-59/);
    expect(gets).toBe(1);

    const loaded = await loadConfigFromEnv(env, { s3: client });
    const expected = parseConfig(handlerConfig(cfg, 'primary'), kindSchemas, process.cwd());
    expect(loaded.components).toEqual(expected.components);
    expect(loaded.vault).toEqual(expected.vault);
    expect(loaded.alerts).toEqual(expected.alerts);
  });

  it('refuses an object that is not the deployed one, naming the object and both digests', async () => {
    const client = s3.client();
    const tamperedKey = `tampered/${object.key}`;
    const tampered = Buffer.from(object.body.toString('utf8').replace('"rpo":"26h"', '"rpo":"999h"'));
    await client.send(new PutObjectCommand({ Bucket: object.bucket, Key: tamperedKey, Body: tampered }));
    const env = { ...variables, MEMVAULT_CONFIG_S3: `s3://${object.bucket}/${tamperedKey}` };
    const err = await loadConfigFromEnv(env, { s3: client }).catch((e) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    expect(err.message).toContain(`MEMVAULT_CONFIG_S3: the config object s3://${object.bucket}/${tamperedKey} has SHA-256 `);
    expect(err.message).toContain(`but MEMVAULT_CONFIG_SHA256 is ${variables.MEMVAULT_CONFIG_SHA256}`);
    // The handler fails on every invocation rather than run with it.
    const handler = lazyHandler(validateRestoreInput, env, { s3: client });
    await expect(handler({ input: { mode: 'latest' } })).rejects.toThrow(IntegrityError);
    await expect(handler({ input: { mode: 'latest' } })).rejects.toThrow(/MEMVAULT_CONFIG_SHA256/);
  });

  it('names a missing object and a missing digest', async () => {
    const client = s3.client();
    await expect(loadConfigFromEnv({ ...variables, MEMVAULT_CONFIG_S3: `s3://${object.bucket}/gone.json` }, { s3: client }))
      .rejects.toThrow(`MEMVAULT_CONFIG_S3: the config object s3://${object.bucket}/gone.json does not exist`);
    await expect(loadConfigFromEnv({ MEMVAULT_CONFIG_S3: variables.MEMVAULT_CONFIG_S3 }, { s3: client }))
      .rejects.toThrow(ConfigError);
    await expect(loadConfigFromEnv({ MEMVAULT_CONFIG_S3: variables.MEMVAULT_CONFIG_S3 }, { s3: client }))
      .rejects.toThrow(/MEMVAULT_CONFIG_SHA256: expected the SHA-256/);
  });
});
