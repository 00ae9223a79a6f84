// Alerts of one region: a KMS-encrypted SNS topic (TLS-only) with the email
// and HTTPS subscriptions from config, which handlers (SnsAlertSink),
// CloudWatch alarms and EventBridge publish to; and FailedExecutionAlerts, an
// EventBridge rule that alerts on the executions of the memvault state
// machines that ended badly WITHOUT alerting themselves.
//
// One failure, one alert: the state machines alert each failure themselves,
// with the component, step and cause (send-alert), and then end failed with a
// cause starting "[alerted] " (ALERTED_CAUSE_PREFIX). The rule skips those, and
// routes the rest: timed-out and aborted executions (no state of theirs ran to
// alert), and failed ones whose cause is not marked (a failed alert step, a
// missing Catch, a runtime error of the definition). The state machines'
// CloudWatch alarms notify nobody (infra/constructs/state-machine.ts): they
// would repeat what these two already said.
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subs from 'aws-cdk-lib/aws-sns-subscriptions';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Stack } from 'aws-cdk-lib';
import { Construct } from 'constructs';
import { ALERTED_CAUSE_PREFIX, ConfigError } from '../../functions/core/errors.ts';
import { EncryptionKey } from './encryption-key.ts';

export interface AlertsProps {
  readonly topicName: string;
  /** Alias of the topic's KMS key. */
  readonly keyAlias: string;
  /** @default none */
  readonly emails?: string[];
  /** HTTPS endpoints (chat webhooks, paging). @default none */
  readonly httpsUrls?: string[];
}

export class Alerts extends Construct {
  public readonly topic: sns.Topic;
  public readonly key: EncryptionKey;

  constructor(scope: Construct, id: string, props: AlertsProps) {
    super(scope, id);
    for (const [i, url] of (props.httpsUrls ?? []).entries()) {
      if (!url.startsWith('https://')) throw new ConfigError(`aws.alerts.https.${i}: expected an https:// URL, got "${url}"`);
    }
    this.key = new EncryptionKey(this, 'Key', {
      alias: props.keyAlias,
      description: 'memvault: encrypts the alert topic',
      servicePublishers: ['cloudwatch.amazonaws.com', 'events.amazonaws.com'],
    });
    this.topic = new sns.Topic(this, 'Topic', {
      topicName: props.topicName,
      displayName: 'memvault alerts',
      masterKey: this.key.key,
      enforceSSL: true,
    });
    // CloudWatch alarms publish as the service; keep them allowed once the topic has a policy.
    this.topic.addToResourcePolicy(new iam.PolicyStatement({
      sid: 'AllowCloudWatchAlarms',
      principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
      actions: ['sns:Publish'],
      resources: [this.topic.topicArn],
      conditions: { StringEquals: { 'aws:SourceAccount': Stack.of(this).account } },
    }));
    for (const email of props.emails ?? []) this.topic.addSubscription(new subs.EmailSubscription(email));
    for (const url of props.httpsUrls ?? []) this.topic.addSubscription(new subs.UrlSubscription(url, { protocol: sns.SubscriptionProtocol.HTTPS }));
  }
}

export interface FailedExecutionAlertsProps {
  readonly topic: sns.ITopic;
  readonly stateMachines: sfn.IStateMachine[];
}

/**
 * The `detail` of the rule's pattern: executions of these state machines that
 * timed out or were aborted, or failed with a cause that does not say the
 * failure was alerted already (a missing or null cause included).
 */
export function unalertedFailurePattern(stateMachineArns: string[]): Record<string, unknown> {
  return {
    stateMachineArn: stateMachineArns,
    $or: [
      { status: ['TIMED_OUT', 'ABORTED'] },
      { status: ['FAILED'], cause: [{ 'anything-but': { prefix: ALERTED_CAUSE_PREFIX } }] },
      { status: ['FAILED'], cause: [null] },
      { status: ['FAILED'], cause: [{ exists: false }] },
    ],
  };
}

export class FailedExecutionAlerts extends Construct {
  public readonly rule: events.Rule;

  constructor(scope: Construct, id: string, props: FailedExecutionAlertsProps) {
    super(scope, id);
    if (props.stateMachines.length === 0) throw new ConfigError(`${id}: no state machines to watch`);
    this.rule = new events.Rule(this, 'Rule', {
      description: 'memvault: alert on executions that timed out, were aborted, or failed without alerting',
      eventPattern: {
        source: ['aws.states'],
        detailType: ['Step Functions Execution Status Change'],
        detail: unalertedFailurePattern(props.stateMachines.map((m) => m.stateMachineArn)),
      },
    });
    this.rule.addTarget(new targets.SnsTopic(props.topic, {
      message: events.RuleTargetInput.fromMultilineText(
        `memvault: execution ${events.EventField.fromPath('$.detail.name')} ${events.EventField.fromPath('$.detail.status')}\n\n` +
          `State machine: ${events.EventField.fromPath('$.detail.stateMachineArn')}\n` +
          `Execution:     ${events.EventField.fromPath('$.detail.executionArn')}\n` +
          `Error:         ${events.EventField.fromPath('$.detail.error')}\n` +
          `Cause:         ${events.EventField.fromPath('$.detail.cause')}\n` +
          `Region:        ${events.EventField.fromPath('$.region')}  Time: ${events.EventField.fromPath('$.time')}`,
      ),
    }));
  }
}
