// A customer-managed KMS key with rotation on, an alias (the name the other
// region and the handlers' config use) and a retained removal policy. The
// vault key encrypts the buckets (SSE-KMS) and wraps the vault's master
// secret; the alerts key encrypts the SNS topic, so the services that publish
// alerts (CloudWatch alarms, EventBridge) are allowed to use it.
import { RemovalPolicy, Duration } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import { Construct } from 'constructs';
import { ConfigError } from '../../functions/core/errors.ts';

export interface EncryptionKeyProps {
  /** Alias, e.g. alias/memvault-vault. */
  readonly alias: string;
  readonly description: string;
  /** Service principals allowed to encrypt with the key (e.g. events.amazonaws.com). @default none */
  readonly servicePublishers?: string[];
  /** @default RemovalPolicy.RETAIN */
  readonly removalPolicy?: RemovalPolicy;
}

export class EncryptionKey extends Construct {
  public readonly key: kms.Key;
  public readonly alias: string;

  constructor(scope: Construct, id: string, props: EncryptionKeyProps) {
    super(scope, id);
    if (!/^alias\/[a-zA-Z0-9/_-]{1,250}$/.test(props.alias) || props.alias.startsWith('alias/aws/')) {
      throw new ConfigError(`${id}: alias "${props.alias}" must look like alias/NAME and not start with alias/aws/`);
    }
    this.alias = props.alias;
    this.key = new kms.Key(this, 'Key', {
      description: props.description,
      alias: props.alias,
      enableKeyRotation: true,
      pendingWindow: Duration.days(30),
      removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
    });
    for (const service of props.servicePublishers ?? []) {
      this.key.addToResourcePolicy(new iam.PolicyStatement({
        sid: `Allow${service.split('.')[0]}ToPublish`,
        principals: [new iam.ServicePrincipal(service)],
        actions: ['kms:GenerateDataKey*', 'kms:Decrypt'],
        resources: ['*'],
      }));
    }
  }
}
