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
//
// The services publish as their service principal, so the topic policy and
// the topic key's policy admit each one only from this account and only for
// the rules and alarms that target this topic (aws:SourceAccount and
// aws:SourceArn): authorizeServicePublishers() finds them once the stack is
// built. A grant to a service principal (EventBridge's SnsTopic target makes
// one) adds that conditioned statement instead of an open one.
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subs from 'aws-cdk-lib/aws-sns-subscriptions';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { ArnFormat, Lazy, Stack, Token } from 'aws-cdk-lib';
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

/** Publishers that are AWS services, with the actions they need on the topic's key. */
const SERVICE_KEY_ACTIONS = ['kms:GenerateDataKey*', 'kms:Decrypt'];

/**
 * The alert topic: a grant to a service principal gets aws:SourceAccount and
 * aws:SourceArn conditions (the ARNs its owner names through `sourcesOf`).
 */
class AlertTopic extends sns.Topic {
  /** Source ARNs per publishing service (filled by Alerts.authorizeServicePublishers). */
  public readonly serviceSources = new Map<string, string[]>();

  override grantPublish(grantee: iam.IGrantable): iam.Grant {
    const p = grantee.grantPrincipal;
    if (!(p instanceof iam.ServicePrincipal)) return super.grantPublish(grantee);
    const sources = this.sourcesOf(p.service);
    this.addToResourcePolicy(new iam.PolicyStatement({
      sid: `Allow${p.service.split('.')[0]}ToPublish`,
      principals: [p],
      actions: ['sns:Publish'],
      resources: [this.topicArn],
      conditions: {
        StringEquals: { 'aws:SourceAccount': Stack.of(this).account },
        ArnLike: { 'aws:SourceArn': Lazy.list({ produce: () => sources }) },
      },
    }));
    // The statement above is the grant; the key's policy gets its own (Alerts.authorizeServicePublishers).
    return iam.Grant.drop(grantee, 'sns:Publish');
  }

  sourcesOf(service: string): string[] {
    let list = this.serviceSources.get(service);
    if (!list) {
      list = [];
      this.serviceSources.set(service, list);
      const l = list;
      this.node.addValidation({ validate: () => (l.length ? [] : [`${service} may publish to the alert topic but no rule or alarm of this stack targets it`]) });
    }
    return list;
  }
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
    });
    this.topic = new AlertTopic(this, 'Topic', {
      topicName: props.topicName,
      displayName: 'memvault alerts',
      masterKey: this.key.key,
      enforceSSL: true,
    });
    for (const email of props.emails ?? []) this.topic.addSubscription(new subs.EmailSubscription(email));
    for (const url of props.httpsUrls ?? []) this.topic.addSubscription(new subs.UrlSubscription(url, { protocol: sns.SubscriptionProtocol.HTTPS }));
  }

  /**
   * Call once the stack is built: admits EventBridge (the rules that target
   * the topic) and CloudWatch (the alarms whose actions publish to it) to the
   * topic and its key, each only from this account and those sources.
   */
  authorizeServicePublishers(): void {
    const topic = this.topic as AlertTopic;
    const stack = Stack.of(this);
    const rules = stack.node.findAll().filter((c): c is events.Rule => c instanceof events.Rule);
    const alarms = stack.node.findAll().filter((c): c is cloudwatch.CfnAlarm => c instanceof cloudwatch.CfnAlarm)
      .filter((a) => {
        const topicRef = JSON.stringify(stack.resolve(this.topic.topicArn));
        return ((stack.resolve(a.alarmActions) ?? []) as unknown[]).some((x) => JSON.stringify(x) === topicRef);
      });
    // The topic policy may reference the rules (nothing depends on it); the key
    // may not (the topic depends on the key, the rules on the state machines,
    // and those on functions whose roles reference the topic: a cycle), so the
    // key names them by their physical names: CloudFormation names a rule
    // <stack name>-<logical id>-<suffix> unless it has a name.
    const ruleNameArn = (r: events.Rule) => {
      const name = (r.node.defaultChild as events.CfnRule).name;
      return stack.formatArn({ service: 'events', resource: 'rule', resourceName: name && !Token.isUnresolved(name) ? name : `${stack.stackName}-*` });
    };
    if (topic.serviceSources.has('events.amazonaws.com') && rules.length) {
      topic.sourcesOf('events.amazonaws.com').push(...rules.map((r) => r.ruleArn));
      this.key.allowServiceUse('events.amazonaws.com', SERVICE_KEY_ACTIONS, [...new Set(rules.map(ruleNameArn))]);
    }
    if (alarms.length) {
      // Alarms have fixed names (MemvaultStateMachine), else CloudFormation's <stack name>-... ones.
      const alarmArns = [...new Set(alarms.map((a) => stack.formatArn({
        service: 'cloudwatch', resource: 'alarm', arnFormat: ArnFormat.COLON_RESOURCE_NAME,
        resourceName: a.alarmName && !Token.isUnresolved(a.alarmName) ? a.alarmName : `${stack.stackName}-*`,
      })))];
      topic.grantPublish(new iam.ServicePrincipal('cloudwatch.amazonaws.com'));
      topic.sourcesOf('cloudwatch.amazonaws.com').push(...alarmArns);
      this.key.allowServiceUse('cloudwatch.amazonaws.com', SERVICE_KEY_ACTIONS, alarmArns);
    }
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
