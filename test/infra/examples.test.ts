// The documented configs deploy as written: every example config with an `aws`
// section (examples/*.yaml, infra/memvault.example.yaml) synthesizes with the
// real CDK app, as `npx cdk deploy --all -c config=FILE` would (the same
// loading, requireAws and stacks; cdk-nag on, as in `cdk synth`), offline (no
// context lookups), without bundling (inline handler code, for speed: the
// bundled synth is test/infra/synth.test.ts). Every one without `aws` is
// refused naming `aws`. For each synthesized one: the functions' environment
// fits Lambda's 4 KB as Lambda counts it, the config object the deploy uploads
// is the one the functions name (by key and SHA-256) and validates as the
// handlers' config, every database secret is granted, and no password or
// environment-variable setting reaches the templates.
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { App } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfigFile, parseConfig } from '../../functions/core/config.ts';
import { kindSchemas } from '../../functions/components/registry.ts';
import { ConfigError } from '../../functions/core/errors.ts';
import { APP_CONTEXT, buildMemvaultApp } from '../../infra/app.ts';
import { DATABASE_KINDS, LAMBDA_ENV_LIMIT_BYTES, databaseSecretNeeds, lambdaEnvironmentSize, requireAws } from '../../infra/deploy-config.ts';
import { ROOT, configObjectOf } from './helpers.ts';

const EXAMPLES = [
  ...readdirSync(path.join(ROOT, 'examples')).filter((f) => f.endsWith('.yaml')).map((f) => `examples/${f}`),
  'infra/memvault.example.yaml',
].sort();

const withAws = EXAMPLES.filter((f) => loadConfigFile(path.join(ROOT, f), kindSchemas).aws);
const withoutAws = EXAMPLES.filter((f) => !withAws.includes(f));

const inline = lambda.Code.fromInline('exports.handler = async () => ({});');
const outdirs: string[] = [];
afterAll(() => { for (const d of outdirs) rmSync(d, { recursive: true, force: true }); });

describe('example configs', () => {
  it('include the cloud platform and the deployment example with an aws section, and the local ones without', () => {
    expect(withAws).toEqual(['examples/cloud.yaml', 'infra/memvault.example.yaml']);
    expect(withoutAws).toEqual(['examples/components.yaml', 'examples/single-node.yaml']);
  });

  describe.each(withAws)('%s', (file) => {
    const cfg = requireAws(loadConfigFile(path.join(ROOT, file), kindSchemas));
    const outdir = mkdtempSync(path.join(os.tmpdir(), 'memvault-examples-synth-'));
    outdirs.push(outdir);
    const app = new App({ context: APP_CONTEXT, outdir });
    const built = buildMemvaultApp(app, cfg, { handlerCode: () => inline, nag: true });
    // cdk-nag runs as a validation plugin: an unacknowledged finding makes synth throw.
    const assembly = app.synth();
    const stacks = [built.primary, built.dr].map((s) => ({ name: s.stackName, template: JSON.parse(readFileSync(path.join(assembly.directory, `${s.stackName}.template.json`), 'utf8')) }));
    const functions = stacks.flatMap(({ name, template }) => Object.values<any>(template.Resources)
      .filter((r) => r.Type === 'AWS::Lambda::Function')
      .map((r) => ({ stack: name, description: r.Properties.Description as string, variables: r.Properties.Environment.Variables as Record<string, string> })));

    it('synthesizes both stacks offline, with no context lookup left to do', () => {
      expect(assembly.stacks.map((s) => s.stackName).sort()).toEqual([`${cfg.aws.stackPrefix}-Dr`, `${cfg.aws.stackPrefix}-Primary`]);
      expect(assembly.manifest.missing ?? []).toEqual([]);
      expect(functions.length).toBeGreaterThan(10);
    });

    it('gives every function an environment within Lambda\'s 4 KB, counted as Lambda counts it, with the config as an S3 object', () => {
      for (const f of functions) {
        expect(lambdaEnvironmentSize(f.variables), f.description).toBeLessThanOrEqual(LAMBDA_ENV_LIMIT_BYTES);
        expect(f.variables.MEMVAULT_CONFIG_JSON, f.description).toBeUndefined();
        expect(f.variables.MEMVAULT_CONFIG_S3, f.description).toMatch(/^s3:\/\/cdk-[a-z0-9]+-assets-\d{12}-[a-z0-9-]+\/[0-9a-f]{64}\.json$/);
        expect(f.variables.MEMVAULT_CONFIG_SHA256, f.description).toMatch(/^[0-9a-f]{64}$/);
      }
    });

    it('uploads, per region, the config object the functions name, matching their SHA-256 and validating as the handlers\' config', () => {
      for (const { name } of stacks) {
        const fns = functions.filter((f) => f.stack === name);
        expect(new Set(fns.map((f) => f.variables.MEMVAULT_CONFIG_S3)).size).toBe(1);
        const obj = configObjectOf(assembly.directory, name, fns[0].variables);
        expect(createHash('sha256').update(obj.body).digest('hex')).toBe(fns[0].variables.MEMVAULT_CONFIG_SHA256);
        const handlerCfg = parseConfig(JSON.parse(obj.body.toString('utf8')), kindSchemas, '/var/task');
        expect(Object.keys(handlerCfg.components).sort()).toEqual(Object.keys(cfg.components).sort());
        const region = name.endsWith('-Dr') ? cfg.aws.drRegion : cfg.aws.region;
        expect(handlerCfg.alerts).toEqual([expect.objectContaining({ type: 'sns', region })]);
        // Every database component reaches the handlers with its secret.
        for (const [c, s] of Object.entries(handlerCfg.components)) {
          if (DATABASE_KINDS.includes(s.kind)) expect((s as { secretArn?: string }).secretArn, c).toMatch(/^arn:aws:secretsmanager:/);
        }
      }
    });

    it('lets the handlers read every database secret, and puts no password or environment-variable setting in a template or config object', () => {
      const needs = databaseSecretNeeds(cfg);
      const primaryTemplate = JSON.stringify(stacks.find((s) => s.name.endsWith('-Primary'))!.template);
      for (const arn of new Set([...needs.source, ...needs.restore])) expect(primaryTemplate).toContain(arn);
      const everything = [
        ...stacks.map((s) => JSON.stringify(s.template)),
        ...stacks.map((s) => configObjectOf(assembly.directory, s.name, functions.find((f) => f.stack === s.name)!.variables).body.toString('utf8')),
      ].join('\n');
      expect(everything).not.toMatch(/[a-z]+:\/\/[^:@/"\s]*:[^@/"\s]+@/);
      expect(everything).not.toMatch(/"(uriEnv|passwordEnv)"/);
    });
  });

  it.each(withoutAws)('%s (no aws section) is refused by requireAws, naming aws', (file) => {
    const cfg = loadConfigFile(path.join(ROOT, file), kindSchemas);
    expect(() => requireAws(cfg)).toThrow(ConfigError);
    expect(() => requireAws(cfg)).toThrow(/^aws: this config has no aws section; add one to deploy with CDK/);
  });
});

describe('examples/cloud.yaml', () => {
  it('takes every database credential from Secrets Manager', () => {
    const cfg = requireAws(loadConfigFile(path.join(ROOT, 'examples/cloud.yaml'), kindSchemas));
    const dbs = Object.entries(cfg.components).filter(([, c]) => DATABASE_KINDS.includes(c.kind));
    expect(dbs.map(([, c]) => c.kind).sort()).toEqual(['mongodb', 'postgres', 'redis', 'vector']);
    for (const [name, c] of dbs) expect((c as { secretArn?: string }).secretArn, name).toMatch(/^arn:aws:secretsmanager:eu-west-1:123456789012:secret:/);
  });
});
