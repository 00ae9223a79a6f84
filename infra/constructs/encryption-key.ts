// A customer-managed KMS key with rotation on, an alias (the name the other
// region and the handlers' config use) and a retained removal policy. The
// vault key encrypts the buckets (SSE-KMS) and wraps the vault's master
// secret; the alerts key encrypts the SNS topic, so the services that publish
// alerts (CloudWatch alarms, EventBridge) may use it, each only for the
// resources of this account that allowServiceUse names (aws:SourceAccount and
// aws:SourceArn), never for a caller elsewhere.
//
// The key policy keeps CDK's default (the account may delegate use through
// IAM) and adds an explicit deny of deleting, disabling and re-policying the
// key, and of moving its alias, to every principal but the account root and
// the CDK deployment role (CloudFormation updates the policy as that role):
// the recovery team, the auditors, the function roles or an administrator's
// everyday role cannot destroy the key the vault depends on, whatever IAM
// policy they are given.
import { RemovalPolicy, Duration, DefaultStackSynthesizer, Lazy, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import { Construct } from 'constructs';
import { ConfigError } from '../../functions/core/errors.ts';

export interface EncryptionKeyProps {
  /** Alias, e.g. alias/memvault-vault. */
  readonly alias: string;
  readonly description: string;
  /** @default RemovalPolicy.RETAIN */
  readonly removalPolicy?: RemovalPolicy;
}

/** What no one but the account root and the deployment role may do to a memvault key. */
export const KEY_ADMIN_ACTIONS = [
  'kms:ScheduleKeyDeletion', 'kms:PutKeyPolicy', 'kms:DisableKey', 'kms:DisableKeyRotation',
  'kms:DeleteAlias', 'kms:UpdateAlias', 'kms:DeleteImportedKeyMaterial', 'kms:UpdatePrimaryRegion',
];

export class EncryptionKey extends Construct {
  public readonly key: kms.Key;
  public readonly alias: string;
  /** The principals exempt from the key's admin deny: the account root and, with the default synthesizer, the CloudFormation execution role. */
  public readonly adminPrincipalArns: string[];
  private readonly serviceSources = new Map<string, string[]>();

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
    const stack = Stack.of(this);
    this.adminPrincipalArns = [`arn:${stack.partition}:iam::${stack.account}:root`];
    if (stack.synthesizer instanceof DefaultStackSynthesizer) {
      this.adminPrincipalArns.push(stack.synthesizer.cloudFormationExecutionRoleArn.replace('${AWS::Partition}', stack.partition));
    }
    this.key.addToResourcePolicy(new iam.PolicyStatement({
      sid: 'OnlyRootAndDeploymentAdministerKey',
      effect: iam.Effect.DENY,
      principals: [new iam.AnyPrincipal()],
      actions: KEY_ADMIN_ACTIONS,
      resources: ['*'],
      conditions: { ArnNotEquals: { 'aws:PrincipalArn': this.adminPrincipalArns } },
    }));
  }

  /**
   * Lets an AWS service principal use the key for resources of this account:
   * `sourceArns` (more may be added by later calls) are the only aws:SourceArn
   * values accepted. Throws at synth when no source ARN was named.
   */
  allowServiceUse(service: string, actions: string[], sourceArns: string[]): void {
    let list = this.serviceSources.get(service);
    if (!list) {
      list = [];
      this.serviceSources.set(service, list);
      const sources = list;
      this.key.addToResourcePolicy(new iam.PolicyStatement({
        sid: `Allow${service.split('.')[0]}ToUseKey`,
        principals: [new iam.ServicePrincipal(service)],
        actions,
        resources: ['*'],
        conditions: {
          StringEquals: { 'aws:SourceAccount': Stack.of(this).account },
          ArnLike: { 'aws:SourceArn': Lazy.list({ produce: () => sources }) },
        },
      }));
      this.node.addValidation({ validate: () => (sources.length ? [] : [`${service} may use ${this.alias} but no source ARN was named`]) });
    }
    list.push(...sourceArns);
  }
}
