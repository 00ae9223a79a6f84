// One failure, one alert, and a failed replication that does not fail the
// backups: the real state machines run locally, and what reaches the alert
// topic is counted the way AWS would deliver it: the alerts the state machine
// sent itself (send-alert, check-rpo) + the EventBridge failure rule's message
// when the execution's status-change event matches the rule's pattern
// (unalertedFailurePattern, the pattern the template carries) + the
// CloudWatch alarms' notifications (none: they have no actions; see
// test/infra/one-alert.test.ts).
import { describe, expect, it } from 'vitest';
import { listManifestNames } from '../../functions/core/vault.ts';
import { openStorage, location } from '../../functions/services.ts';
import { TransientStorageError } from '../../functions/core/errors.ts';
import { unalertedFailurePattern } from '../../infra/constructs/alerts.ts';
import type { LocalRunResult } from '../../local/runtime.ts';
import { alerts, platformFixture, run } from './helpers.ts';
import { matchesPattern, statusChangeEvent } from '../../rehearsal/event-pattern.ts';

const pattern = (name: string) => ({
  source: ['aws.states'],
  'detail-type': ['Step Functions Execution Status Change'],
  detail: unalertedFailurePattern([`arn:aws:states:local:000000000000:stateMachine:memvault-${name}`]),
});

/** The message the failure rule publishes for this execution, or null when the rule does not match. */
function ruleAlert(name: string, r: LocalRunResult): string | null {
  const stateMachineArn = r.executionArn.replace(/:execution:([^:]+):[^:]+$/, ':stateMachine:$1');
  const event = statusChangeEvent({ stateMachineArn, executionArn: r.executionArn, status: r.status, error: r.error, cause: r.cause });
  const p = pattern(name);
  p.detail.stateMachineArn = [stateMachineArn];
  return matchesPattern(p, event) ? `memvault: execution ${r.executionArn} ${r.status}: ${r.error}: ${r.cause}` : null;
}

describe('one failure, one alert', () => {
  it('a failing component: the state machine alerts naming it, and the failure rule stays quiet', async () => {
    const f = await platformFixture({ graph: { kind: 'files', path: 'data/missing-graph' } });
    const r = await run(f, 'backup-run', { type: 'full' });
    expect(r.status).toBe('FAILED');
    expect(r.error).toBe('BackupRunFailed');
    expect(r.cause).toMatch(/^\[alerted\] backup run .*graph at export/);
    const sent = await alerts(f);
    const fromRule = ruleAlert('backup-run', r);
    expect(sent.length + (fromRule ? 1 : 0)).toBe(1);
    expect(sent[0]).toMatchObject({ component: 'graph', step: 'export', subject: 'backup failed: graph' });
  });

  it('a failing component whose alert cannot be sent: the failure rule alerts instead, naming it', async () => {
    const f = await platformFixture({ graph: { kind: 'files', path: 'data/missing-graph' } });
    const r = await run(f, 'backup-run', { type: 'full' }, {
      wrap: (name, fn) => name !== 'SendAlert' ? fn : async () => { throw new Error('SNS: AuthorizationError'); },
    });
    expect(r.status).toBe('FAILED');
    const sent = await alerts(f);
    const fromRule = ruleAlert('backup-run', r);
    expect(sent).toEqual([]);
    expect(fromRule).toMatch(/BackupRunFailed: backup run .*graph at export: PermanentError/);
  });

  it('a failed plan alerts once (send-alert), not again through the rule', async () => {
    const f = await platformFixture();
    const r = await run(f, 'backup-run', { type: 'weekly' });
    expect(r.status).toBe('FAILED');
    expect(r.error).toBe('UsageError');
    expect((await alerts(f)).length + (ruleAlert('backup-run', r) ? 1 : 0)).toBe(1);
  });

  it('an rpo breach alerts once per component, not again through the rule', async () => {
    const f = await platformFixture({}, { secondary: false });
    expect((await run(f, 'backup-run', { type: 'full' })).status).toBe('SUCCEEDED');
    const later = new Date(Date.now() + 27 * 3_600_000);
    const r = await run(f, 'rpo-watch', {}, { deps: { clock: { now: () => later } } });
    expect(r.status).toBe('FAILED');
    expect(ruleAlert('rpo-watch', r)).toBeNull();
    expect((await alerts(f)).map((a) => a.subject).sort()).toEqual(['rpo breached: docs', 'rpo breached: memory-db']);
  });
});

describe('a failed replication', () => {
  it('alerts once naming the backups not copied, leaves the run succeeded, shows as DR lag, and is caught up by the next run', async () => {
    const f = await platformFixture();
    // Late enough that the secondary's first backups are past due (first 02:00 after it was made + 26 h rpo).
    const later = new Date(Date.now() + 51 * 3_600_000);
    const clock = { now: () => later };
    let replicateCalls = 0;
    const r1 = await run(f, 'backup-run', { type: 'full' }, {
      deps: { clock },
      wrap: (name, fn) => name !== 'Replicate' ? fn : async () => { replicateCalls++; throw new TransientStorageError('secondary region: 503 Service Unavailable'); },
    });
    expect(r1.status, r1.cause).toBe('SUCCEEDED');
    expect(replicateCalls).toBe(4); // retried as a transient error first
    const out = r1.output as any;
    expect(out.ok).toBe(true);
    expect(out.replicationFailed).toBe(true);
    expect(out.replication).toMatchObject({ status: 'failed', errorName: 'TransientStorageError' });
    expect(out.replication.notReplicated.map((n: any) => n.component).sort()).toEqual(['docs', 'memory-db']);
    expect(ruleAlert('backup-run', r1)).toBeNull();
    const a1 = await alerts(f);
    expect(a1).toHaveLength(1);
    expect(a1[0]).toMatchObject({ severity: 'error', step: 'replicate', subject: 'replication failed' });
    expect(a1[0].message).toMatch(/503 Service Unavailable.*not copied: (docs|memory-db) \(\d{8}-[0-9a-f]{8}\), (docs|memory-db) /);
    const secondary = openStorage(f.cfg, location(f.cfg, 'secondary'));
    expect(await listManifestNames(secondary)).toEqual([]);

    // rpo-watch: the primary is fresh, the DR copy is not: a DR-lag alert per component.
    const w = await run(f, 'rpo-watch', {}, { deps: { clock } });
    expect(w.status).toBe('FAILED');
    expect(ruleAlert('rpo-watch', w)).toBeNull();
    const lag = (await alerts(f)).slice(1);
    expect(lag.map((x) => x.subject).sort()).toEqual(['DR lag: docs', 'DR lag: memory-db']);
    expect(lag[0].cause).toMatch(/no backup at all in .*vault-dr.*replication to the secondary vault is behind/);

    // The next run replicates what the failed one left behind as well as its own.
    const r2 = await run(f, 'backup-run', { type: 'full' }, { deps: { clock } });
    expect(r2.status, r2.cause).toBe('SUCCEEDED');
    expect((r2.output as any).replication).toMatchObject({ status: 'ok', manifestsCopied: 4 });
    const primaryKeys = (await listManifestNames(openStorage(f.cfg, location(f.cfg, 'primary')))).map((x) => x.key).sort();
    expect((await listManifestNames(secondary)).map((x) => x.key).sort()).toEqual(primaryKeys);
    const w2 = await run(f, 'rpo-watch', {}, { deps: { clock } });
    expect(w2.status, w2.cause).toBe('SUCCEEDED');
    expect((w2.output as any).drLag).toEqual([]);
    expect(await alerts(f)).toHaveLength(3);
  });
});
