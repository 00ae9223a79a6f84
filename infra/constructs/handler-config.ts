// The configuration the handlers run with, delivered as an S3 object instead
// of an environment variable. Lambda limits the environment of a function to
// 4 KB (counted as the JSON of the whole variables map), which a platform with
// a dozen components and their settings exceeds. The config is written at
// synth into a file asset (staged into cdk.out like the handler bundles;
// `cdk deploy` uploads it to the bootstrap bucket itself, so no custom
// resource or extra bucket is needed). The functions get only its location
// (MEMVAULT_CONFIG_S3) and its SHA-256 (MEMVAULT_CONFIG_SHA256): a handler
// refuses an object that is not the one it was deployed with.
//
// Why not SSM Parameter Store: a parameter holds 4 KB (standard) or 8 KB
// (advanced tier, paid), so a large config would hit the same wall a little
// later, and it needs a custom resource or a CloudFormation parameter per
// deploy. An asset object has no practical size limit, is immutable (its key
// is the content hash), and is deployed by the same `cdk deploy`.
//
// Read access is to exactly that object (s3:GetObject on bucket/key), not the
// whole bootstrap bucket as Asset.grantRead would give.
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3assets from 'aws-cdk-lib/aws-s3-assets';
import { Construct } from 'constructs';

export interface HandlerConfigProps {
  /** The config handlers run with (deploy-config.ts handlerConfig), serialised as JSON. */
  readonly config: Record<string, unknown>;
  /** Roles that read it (each handler role). More can be added with grantRead. @default none */
  readonly readers?: iam.IGrantable[];
}

export class HandlerConfig extends Construct {
  /** The file asset holding the config JSON. */
  public readonly asset: s3assets.Asset;
  /** SHA-256 (hex) of the config object's bytes. */
  public readonly sha256: string;
  /** The environment variables that point the handlers at the object. */
  public readonly environment: { MEMVAULT_CONFIG_S3: string; MEMVAULT_CONFIG_SHA256: string };
  /** The JSON written to the object. */
  public readonly json: string;

  constructor(scope: Construct, id: string, props: HandlerConfigProps) {
    super(scope, id);
    this.json = `${JSON.stringify(props.config)}\n`;
    this.sha256 = createHash('sha256').update(this.json).digest('hex');
    // The asset is staged from here into cdk.out (asset.<hash>.json); the
    // directory is named by the content, so repeated synths reuse it.
    const dir = path.join(os.tmpdir(), `memvault-handler-config-${this.sha256.slice(0, 16)}`);
    mkdirSync(dir, { recursive: true });
    const file = path.join(dir, 'memvault-config.json');
    // Written under a unique name and renamed: synths running in parallel
    // (tests) never see each other's half-written file.
    const tmp = `${file}.${process.pid}-${randomBytes(4).toString('hex')}`;
    writeFileSync(tmp, this.json);
    renameSync(tmp, file);
    this.asset = new s3assets.Asset(this, 'Object', { path: file });
    this.environment = {
      MEMVAULT_CONFIG_S3: `s3://${this.asset.s3BucketName}/${this.asset.s3ObjectKey}`,
      MEMVAULT_CONFIG_SHA256: this.sha256,
    };
    for (const r of props.readers ?? []) this.grantRead(r);
  }

  /** Lets `grantee` read the config object (and nothing else in the bootstrap bucket). */
  grantRead(grantee: iam.IGrantable): void {
    grantee.grantPrincipal.addToPrincipalPolicy(new iam.PolicyStatement({
      sid: 'ReadHandlerConfig',
      actions: ['s3:GetObject'],
      resources: [`arn:${Stack.of(this).partition}:s3:::${this.asset.s3BucketName}/${this.asset.s3ObjectKey}`],
    }));
  }
}
