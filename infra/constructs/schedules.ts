// EventBridge Scheduler schedules in one schedule group: one per group of
// components sharing a cron and time zone (one backup-run execution with
// input {"schedule": CRON, "timezone": TZ}; plan-backup picks the components
// and each one's backup type), plus the vault-wide jobs: verify-drill,
// retention and rpo-watch (config `jobs`, UTC). Crons are the same 5-field
// text the local scheduler runs, converted by core/cron.ts.
import { Duration, TimeZone } from 'aws-cdk-lib';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as targets from 'aws-cdk-lib/aws-scheduler-targets';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { toEventBridgeCron } from '../../functions/core/cron.ts';
import { ConfigError } from '../../functions/core/errors.ts';
import type { BackupScheduleGroup } from '../deploy-config.ts';

export interface JobSchedule {
  /** Construct id and schedule description, e.g. VerifyDrill. */
  readonly id: string;
  /** Config field the cron comes from, for error messages, e.g. jobs.verifyDrill. */
  readonly field: string;
  readonly cron: string;
  readonly stateMachine: sfn.IStateMachine;
  /** @default {} */
  readonly input?: Record<string, unknown>;
}

export interface BackupSchedulesProps {
  readonly groupName: string;
  readonly backupRun: sfn.IStateMachine;
  readonly backups: BackupScheduleGroup[];
  readonly jobs: JobSchedule[];
}

/**
 * EventBridge cron from a 5-field cron: `*\/N` steps become `0/N` (minutes,
 * hours) or `1/N` (days, months), the form EventBridge documents.
 */
export function eventBridgeCron(expr: string): string {
  const eb = toEventBridgeCron(expr);
  const fields = eb.slice('cron('.length, -1).split(' ');
  const starts = ['0', '0', '1', '1'];
  for (let i = 0; i < 4; i++) fields[i] = fields[i].replace(/^\*\//, `${starts[i]}/`);
  return `cron(${fields.join(' ')})`;
}

export class BackupSchedules extends Construct {
  public readonly group: scheduler.ScheduleGroup;
  public readonly schedules: scheduler.Schedule[] = [];

  constructor(scope: Construct, id: string, props: BackupSchedulesProps) {
    super(scope, id);
    this.group = new scheduler.ScheduleGroup(this, 'Group', { scheduleGroupName: props.groupName });
    const add = (cid: string, field: string, cron: string, tz: string, sm: sfn.IStateMachine, input: Record<string, unknown>, description: string) => {
      let expression: string;
      let timeZone: TimeZone;
      try {
        expression = eventBridgeCron(cron);
      } catch (err) {
        throw new ConfigError(`${field}: ${(err as Error).message}`);
      }
      try {
        timeZone = TimeZone.of(tz);
        new Intl.DateTimeFormat('en', { timeZone: tz });
      } catch {
        throw new ConfigError(`${field.replace(/\.schedule$/, '.timezone')}: unknown time zone "${tz}"; use an IANA name like Europe/Paris`);
      }
      this.schedules.push(new scheduler.Schedule(this, cid, {
        scheduleGroup: this.group,
        description: description.slice(0, 512),
        schedule: scheduler.ScheduleExpression.expression(expression, timeZone),
        target: new targets.StepFunctionsStartExecution(sm, {
          input: scheduler.ScheduleTargetInput.fromObject(input),
          retryAttempts: 3,
          maxEventAge: Duration.hours(1),
        }),
      }));
    };
    for (const g of props.backups) {
      add(`Backup-${g.id}`, `components.${g.id}.schedule`, g.cron, g.timezone, props.backupRun, g.input,
        `memvault backup-run of ${g.components.join(', ')} at "${g.cron}" (${g.timezone})`);
    }
    for (const j of props.jobs) {
      add(j.id, j.field, j.cron, 'UTC', j.stateMachine, j.input ?? {}, `memvault ${j.id} at "${j.cron}" (UTC)`);
    }
  }
}
