// The CloudWatch dashboard of the deployment. Handler metrics are in the
// `Memvault` namespace (deploy-config.ts METRICS; emitted as Embedded Metric
// Format log lines): last backup age per component, bytes stored per vault,
// new bytes and durations per component, failures, drill results and
// measured restore times; next to them the state machines' own execution
// metrics (in their regions) and the vault buckets' size from S3.
import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { ConfigError } from '../../functions/core/errors.ts';
import { METRIC_NAMESPACE, METRICS } from '../deploy-config.ts';

export interface BackupDashboardProps {
  readonly dashboardName: string;
  readonly components: string[];
  /** State machines by display name, each with its region. */
  readonly stateMachines: { readonly name: string; readonly stateMachine: sfn.IStateMachine; readonly region: string }[];
  readonly vaultBuckets: { readonly label: string; readonly bucketName: string; readonly region: string }[];
  /** Alarms shown in a status widget. @default none */
  readonly alarms?: cloudwatch.IAlarm[];
}

export class BackupDashboard extends Construct {
  public readonly dashboard: cloudwatch.Dashboard;

  constructor(scope: Construct, id: string, props: BackupDashboardProps) {
    super(scope, id);
    if (props.components.length === 0) throw new ConfigError(`${id}: no components to show`);
    const perComponent = (metricName: string, statistic: string, period = Duration.hours(1)) =>
      props.components.map((c) => new cloudwatch.Metric({
        namespace: METRIC_NAMESPACE, metricName, dimensionsMap: { Component: c }, statistic, period, label: c,
      }));
    const graph = (title: string, left: cloudwatch.IMetric[], unit?: string) =>
      new cloudwatch.GraphWidget({ title, left, width: 12, height: 6, leftYAxis: unit ? { label: unit, showUnits: false } : undefined });

    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      dashboardName: props.dashboardName,
      defaultInterval: Duration.days(7),
    });
    this.dashboard.addWidgets(
      new cloudwatch.TextWidget({
        markdown: `# memvault backups\nMetrics: namespace \`${METRIC_NAMESPACE}\`, dimension \`Component\`. Alerts go to the SNS topic; failed executions are red in the Step Functions console.`,
        width: 24, height: 2,
      }),
    );
    this.dashboard.addWidgets(
      graph('Last backup age per component (hours)', perComponent(METRICS.lastBackupAge, 'Maximum', Duration.minutes(15))
        .map((m, i) => new cloudwatch.MathExpression({ expression: `age${i} / 3600`, usingMetrics: { [`age${i}`]: m }, label: m.label, period: Duration.minutes(15) })), 'hours'),
      graph('Bytes stored per vault', [
        ...['primary', 'secondary'].map((v) => new cloudwatch.Metric({
          namespace: METRIC_NAMESPACE, metricName: METRICS.bytesStored, dimensionsMap: { Vault: v }, statistic: 'Maximum', period: Duration.hours(6), label: `${v} vault`,
        })),
        ...props.vaultBuckets.map((b) => new cloudwatch.Metric({
          namespace: 'AWS/S3', metricName: 'BucketSizeBytes', region: b.region, statistic: 'Average', period: Duration.days(1),
          dimensionsMap: { BucketName: b.bucketName, StorageType: 'AllStorageTypes' }, label: `${b.label} bucket (S3)`,
        })),
      ], 'bytes'),
    );
    this.dashboard.addWidgets(
      graph('New bytes per backup', perComponent(METRICS.newBytes, 'Sum'), 'bytes'),
      graph('Backup duration (seconds)', perComponent(METRICS.backupDuration, 'Maximum'), 'seconds'),
    );
    this.dashboard.addWidgets(
      graph('Backup failures', perComponent(METRICS.backupFailures, 'Sum')),
      graph('Drill results (1 pass, 0 fail)', perComponent(METRICS.drillResult, 'Minimum', Duration.days(1))),
    );
    this.dashboard.addWidgets(
      graph('Measured restore time (seconds)', perComponent(METRICS.restoreDuration, 'Maximum', Duration.days(1)), 'seconds'),
      graph('State machine executions failed / timed out / aborted', props.stateMachines.flatMap(({ name, stateMachine, region }) => [
        stateMachine.metricFailed({ region, label: `${name} failed`, statistic: 'Sum', period: Duration.hours(1) }),
        stateMachine.metricTimedOut({ region, label: `${name} timed out`, statistic: 'Sum', period: Duration.hours(1) }),
        stateMachine.metricAborted({ region, label: `${name} aborted`, statistic: 'Sum', period: Duration.hours(1) }),
      ])),
    );
    this.dashboard.addWidgets(
      graph('State machine executions succeeded', props.stateMachines.map(({ name, stateMachine, region }) =>
        stateMachine.metricSucceeded({ region, label: name, statistic: 'Sum', period: Duration.hours(1) }))),
      new cloudwatch.AlarmStatusWidget({ title: 'Alarms', alarms: props.alarms ?? [], width: 12, height: 6 }),
    );
  }
}
