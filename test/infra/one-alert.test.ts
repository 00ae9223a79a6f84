// One failure, one alert, on the synthesized templates of both regions: the
// state machines' alarms notify nobody, and the EventBridge failure rule
// routes to the alert topic exactly the executions that did not alert
// themselves: timed out, aborted, or failed with a cause not marked
// "[alerted] " (ALERTED_CAUSE_PREFIX, which send-alert, finish-backup-run and
// check-rpo put on the failures they alerted). The local half (the state
// machines really mark what they alerted) is test/statemachines/one-alert.test.ts.
import { beforeAll, describe, expect, it } from 'vitest';
import { Template } from 'aws-cdk-lib/assertions';
import { ALERTED_CAUSE_PREFIX } from '../../functions/core/errors.ts';
import { buildApp, exampleDoc } from './helpers.ts';
import { matchesPattern, statusChangeEvent } from '../../rehearsal/event-pattern.ts';

describe('one alert per failure (templates)', () => {
  const templates: [string, Template][] = [];
  beforeAll(() => {
    const built = buildApp(exampleDoc());
    templates.push(['primary', Template.fromStack(built.primary)], ['dr', Template.fromStack(built.dr)]);
  });

  it('gives the state machine alarms no actions: they are for the dashboard', () => {
    for (const [region, t] of templates) {
      const alarms = Object.entries(t.findResources('AWS::CloudWatch::Alarm', { Properties: { Namespace: 'AWS/States' } }));
      expect(alarms.length, region).toBeGreaterThan(0);
      for (const [id, a] of alarms as [string, any][]) {
        for (const k of ['AlarmActions', 'OKActions', 'InsufficientDataActions']) expect(a.Properties[k] ?? [], `${region} ${id} ${k}`).toEqual([]);
      }
    }
  });

  it('routes only executions that did not alert themselves, of every state machine, to the alert topic', () => {
    for (const [region, t] of templates) {
      const rules = Object.values(t.findResources('AWS::Events::Rule', { Properties: { EventPattern: { source: ['aws.states'] } } })) as any[];
      expect(rules, region).toHaveLength(1);
      const rule = rules[0].Properties;
      const topics = Object.keys(t.findResources('AWS::SNS::Topic'));
      expect(rule.Targets.map((x: any) => x.Arn), region).toEqual([{ Ref: topics[0] }]);
      // Every state machine of the region is watched.
      const machines = Object.keys(t.findResources('AWS::StepFunctions::StateMachine')).sort();
      expect(rule.EventPattern.detail.stateMachineArn.map((x: any) => x.Ref).sort(), region).toEqual(machines);

      const arn = 'arn:aws:states:eu-west-1:111111111111:stateMachine:memvault-backup-run';
      const pattern = structuredClone(rule.EventPattern);
      pattern.detail.stateMachineArn = [arn];
      const routed = (status: string, error: string | null, cause: string | null) =>
        matchesPattern(pattern, statusChangeEvent({ stateMachineArn: arn, executionArn: `${arn.replace(':stateMachine:', ':execution:')}:run-1`, status, error, cause }));
      expect(routed('FAILED', 'BackupRunFailed', `${ALERTED_CAUSE_PREFIX}backup run r: 1 failure(s): graph at export: PermanentError: missing`)).toBe(false);
      expect(routed('FAILED', 'BackupRunFailed', 'backup run r: 1 failure(s): graph at export: PermanentError: missing')).toBe(true);
      expect(routed('FAILED', 'States.Runtime', null)).toBe(true);
      expect(routed('TIMED_OUT', 'States.Timeout', null)).toBe(true);
      expect(routed('ABORTED', null, null)).toBe(true);
      expect(routed('SUCCEEDED', null, null)).toBe(false);
      expect(matchesPattern(pattern, { ...statusChangeEvent({ stateMachineArn: arn.replace('backup-run', 'someone-else'), executionArn: 'x:y', status: 'FAILED', cause: 'boom' }) })).toBe(false);
    }
  });
});
