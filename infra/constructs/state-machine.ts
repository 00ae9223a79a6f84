// One state machine from statemachines/<name>.asl.json: its definition with
// every placeholder substituted (handler ARNs and AWS values), a log group
// (all events), X-Ray tracing, invoke rights on exactly the handlers it
// references, the rights a DISTRIBUTED Map needs to run child executions of
// itself, and alarms on failed, timed-out and aborted executions for the
// dashboard. The alarms have no actions: every failure is alerted once already,
// by the state machine itself or by the EventBridge rule for executions that
// could not (infra/constructs/alerts.ts); an alarm action would alert it again.
import { Duration, RemovalPolicy, Stack, ArnFormat } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { acknowledge } from '../nag.ts';
import { ConfigError } from '../../functions/core/errors.ts';
import { hasDistributedMap, type AslDefinition } from '../asl.ts';

export interface MemvaultStateMachineProps {
  readonly definition: AslDefinition;
  readonly stateMachineName: string;
  /** Placeholder -> handler function, for the ${<Pascal>FunctionArn} placeholders. */
  readonly functions: Map<string, lambda.IFunction>;
  /** Placeholder -> AWS value, for the other placeholders. */
  readonly values: Record<string, string>;
  /** @default 90 days */
  readonly logRetention?: logs.RetentionDays;
  /** Longest an execution may run. @default 24 hours */
  readonly timeout?: Duration;
}

export class MemvaultStateMachine extends Construct {
  public readonly stateMachine: sfn.StateMachine;
  public readonly logGroup: logs.LogGroup;
  public readonly alarms: cloudwatch.Alarm[];
  public readonly distributed: boolean;

  constructor(scope: Construct, id: string, props: MemvaultStateMachineProps) {
    super(scope, id);
    const def = props.definition;
    if (!/^[A-Za-z0-9_-]{1,80}$/.test(props.stateMachineName)) {
      throw new ConfigError(`${id}: state machine name "${props.stateMachineName}" must be 1-80 letters, digits, - or _`);
    }
    const substitutions: Record<string, string> = { ...props.values };
    const unbound: string[] = [];
    for (const ph of def.placeholders) {
      const fn = props.functions.get(ph);
      if (fn) substitutions[ph] = fn.functionArn;
      else if (!(ph in props.values)) unbound.push(`${def.file}: \${${ph}} has no binding`);
    }
    if (unbound.length) throw new ConfigError(unbound);

    this.logGroup = new logs.LogGroup(this, 'Logs', {
      // The /aws/vendedlogs/ prefix keeps the CloudWatch Logs resource policy small.
      logGroupName: `/aws/vendedlogs/states/${props.stateMachineName}`,
      retention: props.logRetention ?? logs.RetentionDays.THREE_MONTHS,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.stateMachine = new sfn.StateMachine(this, 'StateMachine', {
      stateMachineName: props.stateMachineName,
      stateMachineType: sfn.StateMachineType.STANDARD,
      definitionBody: sfn.DefinitionBody.fromString(def.text),
      definitionSubstitutions: substitutions,
      tracingEnabled: true,
      timeout: props.timeout ?? Duration.hours(24),
      logs: { destination: this.logGroup, level: sfn.LogLevel.ALL, includeExecutionData: false },
    });
    const referenced = [...new Set(def.placeholders.map((ph) => props.functions.get(ph)).filter((f): f is lambda.IFunction => f !== undefined))];
    for (const fn of referenced) fn.grantInvoke(this.stateMachine);

    this.distributed = hasDistributedMap(def, props.values);
    if (this.distributed) {
      // A DISTRIBUTED Map runs each batch as a child execution of this state machine.
      const stack = Stack.of(this);
      const self = stack.formatArn({ service: 'states', resource: 'stateMachine', resourceName: props.stateMachineName, arnFormat: ArnFormat.COLON_RESOURCE_NAME });
      const executions = stack.formatArn({ service: 'states', resource: 'execution', resourceName: `${props.stateMachineName}/*`, arnFormat: ArnFormat.COLON_RESOURCE_NAME });
      this.stateMachine.addToRolePolicy(new iam.PolicyStatement({ sid: 'DistributedMapStart', actions: ['states:StartExecution'], resources: [self] }));
      this.stateMachine.addToRolePolicy(new iam.PolicyStatement({
        sid: 'DistributedMapWatch',
        actions: ['states:DescribeExecution', 'states:StopExecution'],
        resources: [executions],
      }));
    }

    const alarm = (metricId: string, metric: cloudwatch.Metric, what: string) => {
      const a = new cloudwatch.Alarm(this, metricId, {
        // A fixed name: the alert topic's key policy names the alarms by ARN (a reference would be a cycle).
        alarmName: `${props.stateMachineName}-${metricId.replace(/Alarm$/, '').toLowerCase()}`,
        alarmDescription: `memvault: an execution of ${props.stateMachineName} ${what}`,
        metric: metric.with({ period: Duration.minutes(5), statistic: cloudwatch.Stats.SUM }),
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
      return a;
    };
    this.alarms = [
      alarm('FailedAlarm', this.stateMachine.metricFailed(), 'failed'),
      alarm('TimedOutAlarm', this.stateMachine.metricTimedOut(), 'timed out'),
      alarm('AbortedAlarm', this.stateMachine.metricAborted(), 'was aborted'),
    ];

    acknowledge(this.stateMachine, [{
      rule: 'AwsSolutions-IAM5',
      reason: 'Invoking a handler is granted on its function ARN and its versions/aliases (ARN:*), as grantInvoke does; X-Ray and CloudWatch Logs delivery actions do not support resource scoping; DISTRIBUTED Map child executions are named at run time.',
      findings: [
        /^Resource::<.*\.Arn>:\*$/,
        /^Resource::\*$/,
        /^Resource::arn:<AWS::Partition>:states:.*:execution:.*\/\*$/,
      ],
    }]);
  }
}
