// The two human roles, each granted on the exact resources (both vault
// buckets, both vault keys by alias, the named state machines):
//   recovery team  read the vault (objects and keys, to restore with the CLI
//                  too), start, watch and stop restore executions; an explicit
//                  deny on deleting or overwriting vault objects, changing the
//                  buckets, or bypassing Object Lock.
//   auditors       list the vault (the catalog is derived from object keys)
//                  and read bucket settings, read the state machines and
//                  their execution history, view the dashboard; an explicit
//                  deny on reading vault objects and decrypting with the keys.
// The explicit denies hold even if someone attaches a broader policy later.
// Both roles can be assumed only with MFA unless config says an identity
// provider enforces it (aws.roles.requireMfa).
import { Token } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { acknowledge } from '../nag.ts';
import { ConfigError } from '../../functions/core/errors.ts';

/** A vault in one region: its bucket and the alias of its KMS key. */
export interface VaultRef {
  readonly bucket: s3.IBucket;
  /** Objects of the vault, e.g. `vault/*`. */
  readonly objectsPattern: string;
  readonly region: string;
  readonly keyAlias: string;
}

/** The KMS keys of the vaults, by alias (the DR key is in another stack and region). */
export function vaultKeyStatement(account: string, partition: string, vaults: VaultRef[], actions: string[], effect = iam.Effect.ALLOW): iam.PolicyStatement {
  return new iam.PolicyStatement({
    effect,
    actions,
    resources: [...new Set(vaults.map((v) => `arn:${partition}:kms:${v.region}:${account}:key/*`))],
    conditions: { 'ForAnyValue:StringEquals': { 'kms:ResourceAliases': [...new Set(vaults.map((v) => v.keyAlias))] } },
  });
}

export interface AccessRolesProps {
  readonly account: string;
  readonly partition: string;
  readonly vaults: VaultRef[];
  /** Restore state machines (primary and DR). */
  readonly restoreStateMachines: sfn.IStateMachine[];
  /** Every memvault state machine (auditors read their history). */
  readonly allStateMachines: sfn.IStateMachine[];
  readonly dashboardArn: string;
  readonly recoveryTeamRoleName: string;
  readonly auditorRoleName: string;
  /** Who may assume the recovery team role. @default the account */
  readonly recoveryTeamPrincipals?: string[];
  /** Who may assume the auditor role. @default the account */
  readonly auditorPrincipals?: string[];
  /** Only sessions signed in with MFA may assume either role (aws:MultiFactorAuthPresent). @default true */
  readonly requireMfa?: boolean;
}

export const VAULT_WRITE_ACTIONS = [
  's3:DeleteObject', 's3:DeleteObjectVersion', 's3:PutObject', 's3:PutObjectRetention', 's3:PutObjectLegalHold',
  's3:BypassGovernanceRetention', 's3:PutLifecycleConfiguration', 's3:PutBucketPolicy', 's3:DeleteBucketPolicy',
  's3:PutBucketVersioning', 's3:PutBucketObjectLockConfiguration', 's3:PutEncryptionConfiguration', 's3:DeleteBucket',
];

export class AccessRoles extends Construct {
  public readonly recoveryTeam: iam.Role;
  public readonly auditors: iam.Role;

  constructor(scope: Construct, id: string, props: AccessRolesProps) {
    super(scope, id);
    if (props.vaults.length === 0) throw new ConfigError(`${id}: no vaults to grant access to`);
    if (props.restoreStateMachines.length === 0) throw new ConfigError(`${id}: no restore state machine`);
    const mfa = props.requireMfa ?? true;
    const principal = (arns: string[] | undefined) => {
      const who = arns && arns.length ? new iam.CompositePrincipal(...arns.map((a) => new iam.ArnPrincipal(a))) : new iam.AccountPrincipal(props.account);
      return mfa ? new iam.PrincipalWithConditions(who, { Bool: { 'aws:MultiFactorAuthPresent': 'true' } }) : who;
    };
    const bucketArns = props.vaults.map((v) => v.bucket.bucketArn);
    const objectArns = props.vaults.map((v) => v.bucket.arnForObjects(v.objectsPattern));

    this.recoveryTeam = new iam.Role(this, 'RecoveryTeam', {
      roleName: props.recoveryTeamRoleName,
      assumedBy: principal(props.recoveryTeamPrincipals),
      description: 'memvault recovery team: read the vault, start and watch restores; no delete',
    });
    for (const v of props.vaults) v.bucket.grantRead(this.recoveryTeam, v.objectsPattern);
    this.recoveryTeam.addToPrincipalPolicy(vaultKeyStatement(props.account, props.partition, props.vaults, ['kms:Decrypt', 'kms:DescribeKey']));
    for (const sm of props.restoreStateMachines) {
      sm.grantStartExecution(this.recoveryTeam);
      sm.grantRead(this.recoveryTeam);
      sm.grantExecution(this.recoveryTeam, 'states:StopExecution');
    }
    // Imported (other-region) state machines: CDK builds their execution ARNs in this stack's region, so name them exactly.
    const foreignExecutions = (machines: sfn.IStateMachine[]) => machines
      .map((m) => m.stateMachineArn)
      .filter((arn) => !Token.isUnresolved(arn) && arn.includes(':stateMachine:'))
      .map((arn) => `${arn.replace(':stateMachine:', ':execution:')}:*`);
    const drRestoreExecutions = foreignExecutions(props.restoreStateMachines);
    if (drRestoreExecutions.length) {
      this.recoveryTeam.addToPrincipalPolicy(new iam.PolicyStatement({
        sid: 'WatchOtherRegionRestores',
        actions: ['states:DescribeExecution', 'states:GetExecutionHistory', 'states:StopExecution'],
        resources: drRestoreExecutions,
      }));
    }
    this.recoveryTeam.addToPrincipalPolicy(new iam.PolicyStatement({
      sid: 'NeverDeleteOrRewriteTheVault',
      effect: iam.Effect.DENY,
      actions: VAULT_WRITE_ACTIONS,
      resources: [...bucketArns, ...objectArns],
    }));

    this.auditors = new iam.Role(this, 'Auditors', {
      roleName: props.auditorRoleName,
      assumedBy: principal(props.auditorPrincipals),
      description: 'memvault auditors: list the vault and read execution history; no object reads',
    });
    this.auditors.addToPrincipalPolicy(new iam.PolicyStatement({
      sid: 'ListVaultAndReadBucketSettings',
      actions: [
        's3:ListBucket', 's3:ListBucketVersions', 's3:GetBucketLocation', 's3:GetBucketVersioning', 's3:GetBucketPolicy',
        's3:GetBucketPublicAccessBlock', 's3:GetEncryptionConfiguration', 's3:GetLifecycleConfiguration',
        's3:GetBucketObjectLockConfiguration', 's3:GetBucketLogging',
      ],
      resources: bucketArns,
    }));
    for (const sm of props.allStateMachines) sm.grantRead(this.auditors);
    const drExecutions = foreignExecutions(props.allStateMachines);
    if (drExecutions.length) {
      this.auditors.addToPrincipalPolicy(new iam.PolicyStatement({
        sid: 'ReadOtherRegionExecutions',
        actions: ['states:DescribeExecution', 'states:GetExecutionHistory'],
        resources: drExecutions,
      }));
    }
    this.auditors.addToPrincipalPolicy(new iam.PolicyStatement({
      sid: 'ViewDashboard',
      actions: ['cloudwatch:GetDashboard'],
      resources: [props.dashboardArn],
    }));
    this.auditors.addToPrincipalPolicy(new iam.PolicyStatement({
      sid: 'NeverReadVaultObjects',
      effect: iam.Effect.DENY,
      actions: ['s3:GetObject', 's3:GetObjectVersion', 's3:GetObjectAttributes', 's3:RestoreObject', ...VAULT_WRITE_ACTIONS],
      resources: [...bucketArns, ...objectArns],
    }));
    this.auditors.addToPrincipalPolicy(vaultKeyStatement(props.account, props.partition, props.vaults, ['kms:Decrypt', 'kms:ReEncrypt*', 'kms:GenerateDataKey*'], iam.Effect.DENY));

    for (const role of [this.recoveryTeam, this.auditors]) {
      acknowledge(role, [{
        rule: 'AwsSolutions-IAM5',
        reason: 'Vault objects are content-addressed keys under the vault prefix; restore executions are named when started (the state machine\'s executions, from grantExecution/grantRead); KMS keys are matched by alias with kms:ResourceAliases because the DR key lives in another region; states:ListStateMachines/ListActivities cannot be scoped; the Deny statements use wildcards on purpose.',
        findings: [
          /^Action::s3:(GetObject|GetBucket|List)\*$/,
          /^Resource::.*\/vault\/\*$/,
          /^Resource::arn:.*:kms:[a-z0-9-]+:\d{12}:key\/\*$/,
          /^Resource::arn:.*:states:.*:execution:.*:\*$/,
          /^Resource::arn:.*:states:.*:stateMachine:\*$/,
          /^Resource::arn:.*:states:.*:activity:\*$/,
          /^Resource::\*$/,
          /^Action::kms:(ReEncrypt|GenerateDataKey)\*$/,
        ],
      }]);
    }
  }
}
