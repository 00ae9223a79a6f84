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
  deploymentNames, handlerConfig, lambdaSizing, lifecyclePlan, runsInVpc, s3Sources, snapshotSources, VAULT_PREFIX,
  type DeployConfig, type DeploymentNames, type RegionRole, type StateMachineName,
} from '../deploy-config.ts';
import { awsSubstitutions } from '../substitutions.ts';
import { Alerts, FailedExecutionAlerts } from '../constructs/alerts.ts';
import { EncryptionKey } from '../constructs/encryption-key.ts';
import { HandlerConfig } from '../constructs/handler-config.ts';
import { HandlerFunctions } from '../constructs/handler-functions.ts';
import { databaseSecretArns, restoreTargets, SourcePermissions, ssmSources, type SourceCapability } from '../constructs/source-permissions.ts';
import { VpcEndpoints, vpcEndpointServices } from '../constructs/vpc-endpoints.ts';
import { FUNCTION_GROUPS, atLeast, hookFunctionArns, groupRoleName, kindsRunBy, vaultAccessIn, type FunctionGroup, type GroupAccess } from '../function-groups.ts';
import { driverLibraries } from '../../functions/components/registry.ts';
import { MemvaultStateMachine } from '../constructs/state-machine.ts';
import { VaultBucket } from '../constructs/vault-bucket.ts';
import { VaultAuditTrail } from '../constructs/audit-trail.ts';
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
  /** The function groups' access to the configured sources (RDS/Aurora snapshots, S3 prefixes, SSM, secrets, restore targets). */
  public readonly sourcePermissions: SourcePermissions;
  /** The VPC endpoints of aws.vpc / aws.drVpc with `endpoints: true`. */
  public readonly vpcEndpoints?: VpcEndpoints;
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
      // Only retention deletes vault objects (the primary's retention prunes both vaults).
      deleterRoleArns: [this.formatArn({ service: 'iam', region: '', resource: 'role', resourceName: groupRoleName(aws.stackPrefix, 'primary', 'retention') })],
      lifecycle: lifecyclePlan(cfg),
      objectLock: aws.objectLock,
      accessLogRetentionDays: aws.accessLogRetentionDays,
    });
    if (aws.cloudTrailDataEvents) {
      new VaultAuditTrail(this, 'VaultAuditTrail', {
        trailName: n.vaultTrail, vaultBucket: this.vault.bucket, vaultPrefix: VAULT_PREFIX, logBucket: this.vault.accessLogBucket,
      });
    }
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
      roleName: (g) => groupRoleName(aws.stackPrefix, regionRole, g),
      driverLibraries: (h) => driverLibraries(kindsRunBy(h, Object.values(cfg.components).map((c) => c.kind))),
    });
    for (const [group, role] of this.handlers.roles) {
      this.grantVaultAccess(role, group, regionRole);
      if (FUNCTION_GROUPS[group].publishAlerts) this.alerts.topic.grantPublish(role);
      // Lambda hooks: exactly the functions the config names, for the operations the group runs.
      const ops: readonly ('backup' | 'restore')[] = (FUNCTION_GROUPS[group] as GroupAccess).invokesHooks ?? [];
      const arns = ops.flatMap((op) => hookFunctionArns(cfg.components as never, op));
      if (arns.length) role.addToPrincipalPolicy(new iam.PolicyStatement({ sid: 'InvokeHookFunctions', actions: ['lambda:InvokeFunction'], resources: [...new Set(arns)] }));
    }
    const groupsWith = (c: SourceCapability): FunctionGroup[] => (Object.keys(FUNCTION_GROUPS) as FunctionGroup[]).filter((g) => {
      const a: GroupAccess = FUNCTION_GROUPS[g];
      switch (c) {
        case 'snapshot-describe': return !!a.snapshots.describe;
        case 'snapshot-create': return !!a.snapshots.create;
        case 'snapshot-delete': return !!a.snapshots.delete;
        case 'snapshot-restore': return !!a.snapshots.restore;
        case 'source-read': return a.sources === 'read';
        case 'source-restore': return a.sources === 'restore';
      }
    });
    // Every function loads the config object at cold start.
    for (const role of this.handlers.roles.values()) this.handlerConfig.grantRead(role);
    this.sourcePermissions = new SourcePermissions(this, 'SourcePermissions', {
      rolesFor: (c) => this.handlers.rolesOf(groupsWith(c)),
      account: aws.account,
      partition: this.partition,
      snapshots: snapshotSources(cfg),
      s3Sources: s3Sources(cfg),
      ssmSources: ssmSources(cfg),
      restoreTargets: restoreTargets(cfg),
      databaseSecretArns: databaseSecretArns(cfg),
      regionRole: regionRole,
    });
    if (vpc?.endpoints) {
      const inVpc = handlerNames.filter((h) => runsInVpc(h, aws, regionRole));
      this.vpcEndpoints = new VpcEndpoints(this, 'VpcEndpoints', {
        field: vpcField,
        vpcId: vpc.vpcId!,
        subnetIds: vpc.subnetIds,
        routeTableIds: vpc.routeTableIds ?? [],
        functionSecurityGroupIds: vpc.securityGroupIds,
        services: vpcEndpointServices(inVpc, cfg),
      });
    }

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
    // The rules and alarms that publish to the topic are known now: admit exactly those.
    this.alerts.authorizeServicePublishers();

    new CfnOutput(this, 'VaultUrl', { value: `s3://${this.vault.bucket.bucketName}/${VAULT_PREFIX}`, description: 'This region\'s vault' });
    new CfnOutput(this, 'VaultKeyAlias', { value: n.vaultKeyAliasArn[regionRole] });
    new CfnOutput(this, 'AlertTopicArn', { value: this.alerts.topic.topicArn });
    for (const [name, m] of this.machines) {
      new CfnOutput(this, `${pascal(name)}StateMachineArn`, { value: m.stateMachine.stateMachineArn });
    }
  }

  /**
   * A function group's access to the two vaults (function-groups.ts): read,
   * lock (read + its own lock objects), write (put anything, delete only
   * locks and staging) or prune (delete anything: retention). The DR stack's
   * groups only read.
   */
  private grantVaultAccess(role: iam.IRole, group: FunctionGroup, regionRole: RegionRole): void {
    const account = this.account;
    for (const side of ['primary', 'secondary'] as const) {
      const level = vaultAccessIn(group, side, regionRole);
      if (level === 'none') continue;
      const v = this.vaultRefs[side === 'primary' ? 'primary' : 'dr'];
      const name = side === 'primary' ? 'Primary' : 'Secondary';
      const objects = (rest: string) => v.bucket.arnForObjects(`${VAULT_PREFIX}/${rest}`);
      role.addToPrincipalPolicy(new iam.PolicyStatement({
        sid: `List${name}Vault`,
        actions: ['s3:ListBucket'],
        resources: [v.bucket.bucketArn],
        conditions: { StringLike: { 's3:prefix': [`${VAULT_PREFIX}/*`, VAULT_PREFIX] } },
      }));
      role.addToPrincipalPolicy(new iam.PolicyStatement({
        sid: `Read${name}Vault`,
        actions: ['s3:GetObject'],
        resources: [objects('*')],
      }));
      if (level === 'audit' || level === 'lock') {
        role.addToPrincipalPolicy(new iam.PolicyStatement({
          sid: `Audit${name}Vault`,
          actions: ['s3:PutObject'],
          resources: [objects('audit/*')],
        }));
      }
      if (level === 'lock') {
        role.addToPrincipalPolicy(new iam.PolicyStatement({
          sid: `Lock${name}Vault`,
          actions: ['s3:PutObject', 's3:DeleteObject'],
          resources: [objects('locks/*')],
        }));
      }
      if (atLeast(level, 'write')) {
        role.addToPrincipalPolicy(new iam.PolicyStatement({
          sid: `Write${name}Vault`,
          actions: ['s3:PutObject'],
          resources: [objects('*')],
        }));
        role.addToPrincipalPolicy(new iam.PolicyStatement({
          sid: `Delete${name}Vault${level === 'prune' ? 'Objects' : 'LocksAndStaging'}`,
          actions: ['s3:DeleteObject'],
          resources: level === 'prune' ? [objects('*')] : [objects('locks/*'), objects('staging/*')],
        }));
      }
      const keyActions = atLeast(level, 'audit') ? ['kms:Decrypt', 'kms:GenerateDataKey'] : ['kms:Decrypt'];
      const st = vaultKeyStatement(account, this.partition, [v], keyActions);
      st.sid = `${name}VaultKey`;
      role.addToPrincipalPolicy(st);
    }
  }
}

export function pascal(s: string): string {
  return s.split(/[-_]/).map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join('');
}
