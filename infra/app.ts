// The CDK app: `npx cdk deploy --all` (or `npx cdk synth`, offline).
// Reads memvault.yaml once (the path from `-c config=FILE`, else
// $MEMVAULT_CONFIG, else ./memvault.yaml), validates it with the same zod
// schema as the CLI (every driver's settings included, plus the `aws`
// section), and builds two stacks in the account and regions of `aws`:
// <prefix>-Dr (secondary vault, restore) and <prefix>-Primary (primary vault,
// every state machine, schedules, roles, dashboard). cdk-nag's AwsSolutions
// checks run on every synth; a finding that no construct acknowledges fails it.
// Any config problem fails synth with the field's path.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { App, Tags, Validations } from 'aws-cdk-lib';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import { AwsSolutionsChecks } from 'cdk-nag';
import { loadConfigFile, locateConfig } from '../functions/core/config.ts';
import { kindSchemas } from '../functions/components/registry.ts';
import { ConfigError } from '../functions/core/errors.ts';
import { handlerConfig, requireAws, type DeployConfig } from './deploy-config.ts';
import { PrimaryStack } from './stacks/primary-stack.ts';
import { DrStack } from './stacks/dr-stack.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Feature flags the constructs rely on (also in cdk.json). */
export const APP_CONTEXT: Record<string, unknown> = {
  // Server access logs delivered under a bucket policy, not the legacy LogDeliveryWrite ACL.
  '@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy': true,
};

export interface MemvaultAppOptions {
  /** @default statemachines/ of this repository */
  stateMachinesDir?: string;
  /** @default functions/handlers/ of this repository */
  handlersDir?: string;
  /** Ready-built handler code (tests). @default bundle with esbuild */
  handlerCode?: (handler: string) => lambda.Code;
  /** Run cdk-nag AwsSolutions checks. @default true */
  nag?: boolean;
}

export interface MemvaultApp {
  app: App;
  primary: PrimaryStack;
  dr: DrStack;
  config: DeployConfig;
}

/** Builds both stacks into `app` from a validated config. */
export function buildMemvaultApp(app: App, config: DeployConfig, o: MemvaultAppOptions = {}): MemvaultApp {
  const aws = config.aws;
  const common = {
    config,
    stateMachinesDir: o.stateMachinesDir ?? path.join(ROOT, 'statemachines'),
    handlersDir: o.handlersDir ?? path.join(ROOT, 'functions', 'handlers'),
    handlerCode: o.handlerCode,
  };
  const dr = new DrStack(app, `${aws.stackPrefix}-Dr`, {
    ...common,
    env: { account: aws.account, region: aws.drRegion },
    description: 'memvault: secondary (DR) vault, its key and alerts, and the restore state machine',
  });
  const primary = new PrimaryStack(app, `${aws.stackPrefix}-Primary`, {
    ...common,
    env: { account: aws.account, region: aws.region },
    description: 'memvault: primary vault, handlers, state machines, schedules, alerts, access roles and dashboard',
  });
  // Deploy order only: primary handlers write to the DR vault.
  primary.addStackDependency(dr);
  Tags.of(app).add('memvault', aws.stackPrefix);
  if (o.nag ?? true) Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  return { app, primary, dr, config };
}

function main(): void {
  const app = new App({ context: APP_CONTEXT });
  const ctx = app.node.tryGetContext('config') as string | undefined;
  let config: DeployConfig;
  try {
    const file = locateConfig(ctx);
    config = requireAws(loadConfigFile(file, kindSchemas));
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`memvault: cannot synthesize: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  buildMemvaultApp(app, config, { nag: app.node.tryGetContext('nag') !== 'false' });
  // The config the handlers run with, for `memvault init|list|restore --config` against the deployed vaults.
  const out = app.outdir;
  if (!existsSync(out)) mkdirSync(out, { recursive: true });
  writeFileSync(path.join(out, 'memvault.deployed.json'), `${JSON.stringify(handlerConfig(config, 'primary'), null, 2)}\n`);
  app.synth();
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
