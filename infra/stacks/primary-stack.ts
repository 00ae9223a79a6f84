// The primary region: everything in RegionStack (vault, key, alerts,
// handlers, all five state machines) plus the schedules, the recovery team
// and auditor roles, and the dashboard.
import { CfnOutput } from 'aws-cdk-lib';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import type { Construct } from 'constructs';
import { AccessRoles } from '../constructs/access-roles.ts';
import { BackupDashboard } from '../constructs/dashboard.ts';
import { BackupSchedules } from '../constructs/schedules.ts';
import { backupScheduleGroups, STATE_MACHINES, type StateMachineName } from '../deploy-config.ts';
import { RegionStack, type RegionStackProps } from './region-stack.ts';

export class PrimaryStack extends RegionStack {
  public readonly schedules: BackupSchedules;
  public readonly accessRoles: AccessRoles;
  public readonly dashboard: BackupDashboard;

  constructor(scope: Construct, id: string, props: RegionStackProps) {
    super(scope, id, 'primary', STATE_MACHINES, props);
    const cfg = props.config;
    const n = this.names;
    const sm = (name: StateMachineName) => this.machines.get(name)!.stateMachine;

    this.schedules = new BackupSchedules(this, 'Schedules', {
      groupName: n.scheduleGroup,
      backupRun: sm('backup-run'),
      backups: backupScheduleGroups(cfg),
      jobs: [
        { id: 'VerifyDrill', field: 'jobs.verifyDrill', cron: cfg.jobs.verifyDrill, stateMachine: sm('verify-drill') },
        { id: 'Retention', field: 'jobs.retention', cron: cfg.jobs.retention, stateMachine: sm('retention') },
        { id: 'RpoWatch', field: 'jobs.rpoWatch', cron: cfg.jobs.rpoWatch, stateMachine: sm('rpo-watch') },
      ],
    });

    const drMachines = cfg.aws.drStateMachines.map((name) => ({
      name: `${name} (DR)`,
      region: n.region.dr,
      stateMachine: sfn.StateMachine.fromStateMachineArn(this, `Dr${name}`, n.stateMachineArn('dr', name)),
    }));
    const alarms = [...this.machines.values()].flatMap((m) => m.alarms);
    this.dashboard = new BackupDashboard(this, 'Dashboard', {
      dashboardName: n.dashboard,
      components: Object.keys(cfg.components),
      stateMachines: [
        ...[...this.machines].map(([name, m]) => ({ name, stateMachine: m.stateMachine, region: n.region.primary })),
        ...drMachines,
      ],
      vaultBuckets: [
        { label: 'primary', bucketName: n.vaultBucket.primary, region: n.region.primary },
        { label: 'secondary', bucketName: n.vaultBucket.dr, region: n.region.dr },
      ],
      alarms,
    });

    const drRestore = drMachines.filter((m) => m.name.startsWith('restore')).map((m) => m.stateMachine);
    this.accessRoles = new AccessRoles(this, 'AccessRoles', {
      account: cfg.aws.account,
      partition: this.partition,
      vaults: [this.vaultRefs.primary, this.vaultRefs.dr],
      restoreStateMachines: [sm('restore'), ...drRestore],
      allStateMachines: [...[...this.machines.values()].map((m) => m.stateMachine), ...drMachines.map((m) => m.stateMachine)],
      dashboardArn: this.formatArn({ service: 'cloudwatch', region: '', resource: 'dashboard', resourceName: n.dashboard }),
      recoveryTeamRoleName: n.recoveryTeamRole,
      auditorRoleName: n.auditorRole,
      recoveryTeamPrincipals: cfg.aws.roles.recoveryTeam,
      auditorPrincipals: cfg.aws.roles.auditors,
      requireMfa: cfg.aws.roles.requireMfa,
    });
    new CfnOutput(this, 'RecoveryTeamRoleArn', { value: this.accessRoles.recoveryTeam.roleArn });
    new CfnOutput(this, 'AuditorRoleArn', { value: this.accessRoles.auditors.roleArn });
    new CfnOutput(this, 'DashboardName', { value: n.dashboard });
  }
}
