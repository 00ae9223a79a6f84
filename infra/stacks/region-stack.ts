// The resources both regions have: the vault key and bucket, the alert topic,
// the handlers and the state machines (with their alarms and the
// failed-execution rule). PrimaryStack adds schedules, roles and the
// dashboard; DrStack is this alone, with the state machines aws.drStateMachines
// names (restore by default), working from the secondary vault.
import { CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as s3 from 'aws-cdk-lib/aws-s3';
import type { Construct } from 'constructs';
import { bind, loadDefinition, loadLocalSubstitutions } from '../asl.ts';
import {
  databaseSecretNeeds, deploymentNames, handlerConfig, lambdaSizing, lifecyclePlan, runsInVpc, s3Sources, snapshotSources, VAULT_PREFIX,
  type DeployConfig, type DeploymentNames, type RegionRole, type StateMachineName,
} from '../deploy-config.ts';
import { awsSubstitutions } from '../substitutions.ts';
import { Alerts, FailedExecutionAlerts } from '../constructs/alerts.ts';
import { EncryptionKey } from '../constructs/encryption-key.ts';
import { HandlerConfig } from '../constructs/handler-config.ts';
import { HandlerFunctions } from '../constructs/handler-functions.ts';
import { SourcePermissions } from '../constructs/source-permissions.ts';
import { MemvaultStateMachine } from '../constructs/state-machine.ts';
import { VaultBucket } from '../constructs/vault-bucket.ts';
import { vaultKeyStatement, type VaultRef } from '../constructs/access-roles.ts';
import { logRetention } from './log-retention.ts';

export interface RegionStackProps extends StackProps {
  readonly config: DeployConfig;
  /** statemachines/ */
  readonly stateMachinesDir: string;
  /** functions/handlers/ */
  readonly handlersDir: string;
  /** Ready-built handler code instead of esbuild bundling (tests). @default bundle with esbuild */
  readonly handlerCode?: (handler: string) => lambda.Code;
}

export abstract class RegionStack extends Stack {
  public readonly names: DeploymentNames;
  public readonly vaultKey: EncryptionKey;
  public readonly vault: VaultBucket;
  public readonly alerts: Alerts;
  public readonly handlers: HandlerFunctions;
  /** The config object the handlers load at cold start (MEMVAULT_CONFIG_S3). */
  public readonly handlerConfig: HandlerConfig;
  /** The backup service role's access to the configured sources (RDS/Aurora snapshots, S3 prefixes). */
  public readonly sourcePermissions: SourcePermissions;
  public readonly machines: Map<StateMachineName, MemvaultStateMachine> = new Map();
  /** This region's vault and the other region's, as grant targets. */
  public readonly vaultRefs: Record<RegionRole, VaultRef>;

  constructor(scope: Construct, id: string, protected readonly regionRole: RegionRole, machineNames: readonly StateMachineName[], props: RegionStackProps) {
    super(scope, id, props);
    const cfg = props.config;
    const aws = cfg.aws;
    const n = (this.names = deploymentNames(aws));
    const other: RegionRole = regionRole === 'primary' ? 'dr' : 'primary';

    this.vaultKey = new EncryptionKey(this, 'VaultKey', {
      alias: n.vaultKeyAlias,
      description: `memvault: encrypts the ${regionRole === 'primary' ? 'primary' : 'secondary (DR)'} vault and wraps its master secret`,
    });
    this.vault = new VaultBucket(this, 'Vault', {
      bucketName: n.vaultBucket[regionRole],
      accessLogBucketName: n.accessLogBucket[regionRole],
      vaultPrefix: VAULT_PREFIX,
      encryptionKey: this.vaultKey.key,
      lifecycle: lifecyclePlan(cfg),
      objectLock: aws.objectLock,
      accessLogRetentionDays: aws.accessLogRetentionDays,
    });
    this.alerts = new Alerts(this, 'Alerts', {
      topicName: n.alertTopic,
      keyAlias: `alias/${n.prefix}-alerts`,
      emails: aws.alerts.emails,
      httpsUrls: aws.alerts.https,
    });

    const otherBucket = s3.Bucket.fromBucketAttributes(this, 'OtherVault', { bucketName: n.vaultBucket[other], region: n.region[other] });
    this.vaultRefs = {
      [regionRole]: { bucket: this.vault.bucket, objectsPattern: `${VAULT_PREFIX}/*`, region: n.region[regionRole], keyAlias: n.vaultKeyAlias },
      [other]: { bucket: otherBucket, objectsPattern: `${VAULT_PREFIX}/*`, region: n.region[other], keyAlias: n.vaultKeyAlias },
    } as Record<RegionRole, VaultRef>;

    // State machine definitions and their bindings.
    const defs = machineNames.map((m) => loadDefinition(props.stateMachinesDir, m));
    const bindings = bind(defs, {
      handlersDir: props.handlersDir,
      local: loadLocalSubstitutions(props.stateMachinesDir),
      aws: awsSubstitutions(aws),
    });
    const handlerNames = [...new Set(bindings.functions.values())];
    const vpc = regionRole === 'primary' ? aws.vpc : aws.drVpc;
    const vpcField = regionRole === 'primary' ? 'aws.vpc' : 'aws.drVpc';
    // The config reaches the functions as an S3 object (Lambda's 4 KB environment limit).
    this.handlerConfig = new HandlerConfig(this, 'HandlerConfig', { config: handlerConfig(cfg, regionRole) });
    this.handlers = new HandlerFunctions(this, 'Handlers', {
      handlersDir: props.handlersDir,
      handlers: handlerNames,
      environment: {
        ...this.handlerConfig.environment,
        MEMVAULT_LOG: 'info',
        MEMVAULT_REGION_ROLE: regionRole,
      },
      sizing: (h) => lambdaSizing(h, aws),
      vpc: vpc ? { subnetIds: vpc.subnetIds, securityGroupIds: vpc.securityGroupIds, runsIn: (h) => runsInVpc(h, aws, regionRole) } : undefined,
      namedInConfig: regionRole === 'primary'
        ? [
            ...Object.keys(aws.lambda.handlers).map((h) => ({ field: `aws.lambda.handlers.${h}`, handler: h })),
            ...(vpc?.handlers ?? []).map((h, i) => ({ field: `${vpcField}.handlers.${i}`, handler: h })),
          ]
        : [],
      logRetention: logRetention(aws.logRetentionDays),
      code: props.handlerCode,
    });
    this.handlerConfig.grantRead(this.handlers.role);
    this.grantVaultAccess(this.handlers.role, regionRole, other);
    this.alerts.topic.grantPublish(this.handlers.role);
    // One role for now: it gets every secret any handler reads (databaseSecretNeeds says which handler needs which).
    const secrets = databaseSecretNeeds(cfg);
    this.handlers.grantSecrets([...new Set([...secrets.source, ...secrets.restore])]);
    this.sourcePermissions = new SourcePermissions(this, 'SourcePermissions', {
      role: this.handlers.role,
      account: aws.account,
      partition: this.partition,
      snapshots: snapshotSources(cfg),
      s3Sources: s3Sources(cfg),
      regionRole: regionRole,
    });

    const functions = new Map<string, lambda.IFunction>();
    for (const [ph, h] of bindings.functions) functions.set(ph, this.handlers.fn(h));
    for (const def of defs) {
      const name = def.name as StateMachineName;
      this.machines.set(name, new MemvaultStateMachine(this, pascal(name), {
        definition: def,
        stateMachineName: n.stateMachine(name),
        functions,
        values: bindings.values,
        logRetention: logRetention(aws.logRetentionDays),
      }));
    }
    new FailedExecutionAlerts(this, 'FailedExecutionAlerts', {
      topic: this.alerts.topic,
      stateMachines: [...this.machines.values()].map((m) => m.stateMachine),
    });

    new CfnOutput(this, 'VaultUrl', { value: `s3://${this.vault.bucket.bucketName}/${VAULT_PREFIX}`, description: 'This region\'s vault' });
    new CfnOutput(this, 'VaultKeyAlias', { value: n.vaultKeyAliasArn[regionRole] });
    new CfnOutput(this, 'AlertTopicArn', { value: this.alerts.topic.topicArn });
    for (const [name, m] of this.machines) {
      new CfnOutput(this, `${pascal(name)}StateMachineArn`, { value: m.stateMachine.stateMachineArn });
    }
  }

  /**
   * The handlers: read, write and delete (prune) this region's vault; the
   * primary's handlers also write the DR vault (replicate, retention there);
   * the DR handlers only read the primary vault.
   */
  private grantVaultAccess(role: iam.IRole, self: RegionRole, other: RegionRole): void {
    const account = this.account;
    const writeOther = self === 'primary';
    for (const [side, write] of [[self, true], [other, writeOther]] as const) {
      const v = this.vaultRefs[side];
      role.addToPrincipalPolicy(new iam.PolicyStatement({
        sid: `List${pascal(side)}Vault`,
        actions: ['s3:ListBucket'],
        resources: [v.bucket.bucketArn],
        conditions: { StringLike: { 's3:prefix': [`${VAULT_PREFIX}/*`, VAULT_PREFIX] } },
      }));
      role.addToPrincipalPolicy(new iam.PolicyStatement({
        sid: `${write ? 'ReadWrite' : 'Read'}${pascal(side)}Vault`,
        actions: write ? ['s3:GetObject', 's3:PutObject', 's3:DeleteObject'] : ['s3:GetObject'],
        resources: [v.bucket.arnForObjects(v.objectsPattern)],
      }));
    }
    const all = [this.vaultRefs[self], this.vaultRefs[other]];
    role.addToPrincipalPolicy(vaultKeyStatement(account, this.partition, writeOther ? all : [this.vaultRefs[self]], ['kms:Encrypt', 'kms:Decrypt', 'kms:GenerateDataKey']));
    if (!writeOther) role.addToPrincipalPolicy(vaultKeyStatement(account, this.partition, [this.vaultRefs[other]], ['kms:Decrypt']));
  }
}

export function pascal(s: string): string {
  return s.split(/[-_]/).map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join('');
}
