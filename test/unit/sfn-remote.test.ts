import { describe, it, expect, beforeEach } from 'vitest';
import { mockClient } from 'aws-sdk-client-mock';
import {
  SFNClient,
  StartExecutionCommand,
  DescribeExecutionCommand,
  GetExecutionHistoryCommand,
  SFNServiceException,
  StateMachineDoesNotExist,
  InvalidArn,
  ExecutionAlreadyExists,
  ExecutionDoesNotExist,
  InvalidToken,
  type HistoryEvent,
} from '@aws-sdk/client-sfn';
import { runRemote, stateMachineArnFor, type RemoteEvent } from '../../functions/adapters/sfn.ts';
import { ConfigError, NotFoundError, PermanentError, RetryableError, ThrottledError } from '../../functions/core/errors.ts';

const SM = 'arn:aws:states:us-east-1:111122223333:stateMachine:memvault-restore';
const EXEC = 'arn:aws:states:us-east-1:111122223333:execution:memvault-restore:cli-1';
const meta = { $metadata: { httpStatusCode: 400 } };
const T0 = Date.parse('2025-03-01T10:00:00.000Z');
const at = (s: number) => new Date(T0 + s * 1000);
const throttling = () => new SFNServiceException({ name: 'ThrottlingException', $fault: 'client', message: 'Rate exceeded', ...meta });

let nextId = 1;
function ev(type: string, extra: Partial<HistoryEvent> = {}): HistoryEvent {
  const id = nextId++;
  return { id, previousEventId: id - 1, type: type as HistoryEvent['type'], timestamp: at(id), ...extra };
}
const entered = (type: string, name: string) => ev(type, { stateEnteredEventDetails: { name } });
const exited = (type: string, name: string) => ev(type, { stateExitedEventDetails: { name } });

/**
 * A fake execution history that grows while the execution runs, served like
 * GetExecutionHistory: pages of `pageSize` events, nextToken `t<offset>` while
 * more events exist, none on the last page (a later call with the last page's
 * token sees events added since).
 */
function fakeHistory(pageSize = 2) {
  const events: HistoryEvent[] = [];
  const serve = (input: { nextToken?: string }) => {
    const offset = input.nextToken ? Number(input.nextToken.slice(1)) : 0;
    const page = events.slice(offset, offset + pageSize);
    const more = offset + pageSize < events.length;
    return { events: page, ...(more ? { nextToken: `t${offset + pageSize}` } : {}) };
  };
  return { events, serve };
}

describe('runRemote', () => {
  const sfn = mockClient(SFNClient);
  const client = new SFNClient({ region: 'us-east-1' });
  let sleeps: number[];
  const sleep = async (ms: number) => {
    sleeps.push(ms);
  };

  beforeEach(() => {
    sfn.reset();
    sleeps = [];
    nextId = 1;
    sfn.on(StartExecutionCommand).resolves({ executionArn: EXEC, startDate: at(0) });
  });

  it('starts, follows the history across pages and polls, and returns the parsed output', async () => {
    const h = fakeHistory(2);
    // Phase 1: seen on the first poll (3 events, 2 pages).
    h.events.push(ev('ExecutionStarted'), entered('TaskStateEntered', 'Plan'), ev('TaskScheduled'));
    const phase2 = [
      ev('TaskSucceeded'),
      exited('TaskStateExited', 'Plan'),
      entered('MapStateEntered', 'RestoreEach'),
      ev('MapStateStarted'),
      entered('TaskStateEntered', 'RestoreComponent'),
    ];
    const phase3 = [
      exited('TaskStateExited', 'RestoreComponent'),
      ev('MapStateSucceeded'),
      exited('MapStateExited', 'RestoreEach'),
      entered('SucceedStateEntered', 'Done'),
      exited('SucceedStateExited', 'Done'),
      ev('ExecutionSucceeded'),
    ];
    sfn.on(GetExecutionHistoryCommand).callsFake(h.serve);
    let describes = 0;
    sfn.on(DescribeExecutionCommand).callsFake(() => {
      describes++;
      if (describes === 1) {
        h.events.push(...phase2);
        return { executionArn: EXEC, status: 'RUNNING', startDate: at(0) };
      }
      h.events.push(...phase3);
      return { executionArn: EXEC, status: 'SUCCEEDED', startDate: at(0), stopDate: at(42), output: '{"recoveryMs":1234,"components":["memory-db"]}' };
    });

    const seen: RemoteEvent[] = [];
    const result = await runRemote({
      client,
      stateMachineArn: SM,
      input: { component: 'memory-db', at: 'latest' },
      name: 'restore-1',
      pollMs: 5000,
      sleep,
      onEvent: (e) => seen.push(e),
    });

    expect(result).toEqual({
      executionArn: EXEC,
      status: 'SUCCEEDED',
      output: { recoveryMs: 1234, components: ['memory-db'] },
      durationMs: 42_000,
    });
    expect(sfn.commandCalls(StartExecutionCommand)[0].args[0].input).toEqual({
      stateMachineArn: SM,
      name: 'restore-1',
      input: '{"component":"memory-db","at":"latest"}',
    });
    expect(sfn.commandCalls(DescribeExecutionCommand).map((c) => c.args[0].input)).toEqual([{ executionArn: EXEC }, { executionArn: EXEC }]);
    expect(sleeps).toEqual([5000]);

    expect(seen.map((e) => `${e.type} ${e.state}`)).toEqual([
      'entered Plan',
      'exited Plan',
      'entered RestoreEach',
      'entered RestoreComponent',
      'exited RestoreComponent',
      'exited RestoreEach',
      'entered Done',
      'exited Done',
    ]);
    expect(seen[0]).toEqual({ state: 'Plan', type: 'entered', time: at(2), detail: 'Task' });
    expect(seen[2].detail).toBe('Map');

    // Pagination: every page followed, and later polls resume from the last
    // page instead of re-reading the history from the start.
    const tokens = sfn.commandCalls(GetExecutionHistoryCommand).map((c) => c.args[0].input.nextToken);
    expect(tokens).toEqual([undefined, 't2', 't2', 't4', 't6', 't6', 't8', 't10', 't12']);
    expect(sfn.commandCalls(GetExecutionHistoryCommand)[0].args[0].input).toMatchObject({ executionArn: EXEC, includeExecutionData: false });
  });

  it('returns a FAILED execution with its error and cause, and reports the failing state', async () => {
    const h = fakeHistory(3);
    h.events.push(
      ev('ExecutionStarted'),
      entered('TaskStateEntered', 'RestoreComponent'),
      ev('TaskScheduled'),
      ev('TaskStarted'),
      ev('TaskFailed', {
        taskFailedEventDetails: {
          resource: 'invoke',
          resourceType: 'lambda',
          error: 'WrongKeyError',
          cause: '{"errorType":"WrongKeyError","errorMessage":"KMS key k cannot unwrap this vault\'s secret","trace":[]}',
        },
      }),
      ev('ExecutionFailed', { executionFailedEventDetails: { error: 'WrongKeyError', cause: 'KMS key k cannot unwrap this vault\'s secret' } }),
    );
    sfn.on(GetExecutionHistoryCommand).callsFake(h.serve);
    sfn.on(DescribeExecutionCommand).resolves({
      executionArn: EXEC,
      status: 'FAILED',
      startDate: at(0),
      stopDate: at(7),
      error: 'WrongKeyError',
      cause: 'KMS key k cannot unwrap this vault\'s secret',
    });

    const seen: RemoteEvent[] = [];
    const result = await runRemote({ client, stateMachineArn: SM, input: {}, sleep, onEvent: (e) => seen.push(e) });

    expect(result).toEqual({
      executionArn: EXEC,
      status: 'FAILED',
      error: 'WrongKeyError',
      cause: 'KMS key k cannot unwrap this vault\'s secret',
      durationMs: 7000,
    });
    expect(seen.map((e) => `${e.type} ${e.state}: ${e.detail}`)).toEqual([
      'entered RestoreComponent: Task',
      'failed RestoreComponent: WrongKeyError: KMS key k cannot unwrap this vault\'s secret',
      'failed RestoreComponent: WrongKeyError: KMS key k cannot unwrap this vault\'s secret',
    ]);
    expect(sleeps).toEqual([]);
    // Without a name, one is generated, so a retried start is idempotent.
    expect(sfn.commandCalls(StartExecutionCommand)[0].args[0].input.name).toMatch(/^cli-\d{8}T\d{6}-[0-9a-f]{8}$/);
  });

  it('takes error and cause from the history when DescribeExecution has none (TIMED_OUT)', async () => {
    const h = fakeHistory(10);
    h.events.push(
      ev('ExecutionStarted'),
      entered('WaitStateEntered', 'WaitForSnapshot'),
      ev('ExecutionTimedOut', { executionTimedOutEventDetails: { error: 'States.Timeout', cause: 'execution exceeded 3600 s' } }),
    );
    sfn.on(GetExecutionHistoryCommand).callsFake(h.serve);
    sfn.on(DescribeExecutionCommand).resolves({ executionArn: EXEC, status: 'TIMED_OUT', startDate: at(0), stopDate: at(3600) });
    const seen: RemoteEvent[] = [];
    const result = await runRemote({ client, stateMachineArn: SM, input: {}, sleep, onEvent: (e) => seen.push(e) });
    expect(result).toMatchObject({ status: 'TIMED_OUT', error: 'States.Timeout', cause: 'execution exceeded 3600 s', durationMs: 3_600_000 });
    expect(seen[1]).toMatchObject({ state: 'WaitForSnapshot', type: 'failed', detail: 'States.Timeout: execution exceeded 3600 s' });
  });

  it('backs off on throttling on every call and carries on', async () => {
    const h = fakeHistory(5);
    h.events.push(ev('ExecutionStarted'), entered('PassStateEntered', 'Validate'), exited('PassStateExited', 'Validate'), ev('ExecutionSucceeded'));
    sfn.on(StartExecutionCommand).rejectsOnce(throttling()).resolves({ executionArn: EXEC, startDate: at(0) });
    sfn.on(GetExecutionHistoryCommand).rejectsOnce(throttling()).callsFake(h.serve);
    sfn
      .on(DescribeExecutionCommand)
      .rejectsOnce(throttling())
      .rejectsOnce(throttling())
      .resolves({ executionArn: EXEC, status: 'SUCCEEDED', startDate: at(0), stopDate: at(1), output: 'not json' });

    const seen: RemoteEvent[] = [];
    const result = await runRemote({ client, stateMachineArn: SM, input: { x: 1 }, name: 'run-7', sleep, onEvent: (e) => seen.push(e) });

    expect(result).toEqual({ executionArn: EXEC, status: 'SUCCEEDED', output: 'not json', durationMs: 1000 });
    const starts = sfn.commandCalls(StartExecutionCommand).map((c) => c.args[0].input);
    expect(starts).toHaveLength(2);
    expect(starts[1]).toEqual(starts[0]);
    expect(sfn.commandCalls(DescribeExecutionCommand)).toHaveLength(3);
    expect(seen.map((e) => `${e.type} ${e.state}`)).toEqual(['entered Validate', 'exited Validate']);
    // Four throttles, each followed by a backoff sleep: exponential with jitter in [cap/2, cap].
    expect(sleeps).toHaveLength(4);
    const [start, history, describe1, describe2] = sleeps;
    for (const first of [start, history, describe1]) {
      expect(first).toBeGreaterThanOrEqual(250);
      expect(first).toBeLessThanOrEqual(500);
    }
    expect(describe2).toBeGreaterThanOrEqual(500);
    expect(describe2).toBeLessThanOrEqual(1000);
  });

  it('gives up with ThrottledError when throttling does not stop', async () => {
    sfn.on(StartExecutionCommand).rejects(throttling());
    const err = await runRemote({ client, stateMachineArn: SM, input: {}, sleep }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ThrottledError);
    expect((err as Error).message).toMatch(/StartExecution still throttled or failing after 8 attempts/);
    expect(sfn.commandCalls(StartExecutionCommand)).toHaveLength(8);
    expect(sleeps).toHaveLength(7);
    for (let i = 1; i < sleeps.length; i++) expect(sleeps[i]).toBeGreaterThanOrEqual(Math.min(30_000, 500 * 2 ** i) / 2);
  });

  it('restarts the history from the beginning when the resume token has expired, reporting each event once', async () => {
    const h = fakeHistory(2);
    h.events.push(ev('ExecutionStarted'), entered('TaskStateEntered', 'Plan'), exited('TaskStateExited', 'Plan'));
    // The token the follower resumes from expires once (SFN tokens live 24 hours).
    const expired = new Set<string>();
    sfn.on(GetExecutionHistoryCommand).callsFake((input: { nextToken?: string }) => {
      if (input.nextToken && expired.delete(input.nextToken)) throw new InvalidToken({ message: 'token expired', ...meta });
      return h.serve(input);
    });
    let describes = 0;
    sfn.on(DescribeExecutionCommand).callsFake(() => {
      describes++;
      if (describes === 1) {
        expired.add('t2');
        h.events.push(entered('TaskStateEntered', 'Restore'), exited('TaskStateExited', 'Restore'));
        return { executionArn: EXEC, status: 'RUNNING' };
      }
      return { executionArn: EXEC, status: 'SUCCEEDED' };
    });
    const seen: RemoteEvent[] = [];
    const result = await runRemote({ client, stateMachineArn: SM, input: {}, sleep, onEvent: (e) => seen.push(e) });
    expect(result.status).toBe('SUCCEEDED');
    expect(seen.map((e) => `${e.type} ${e.state}`)).toEqual(['entered Plan', 'exited Plan', 'entered Restore', 'exited Restore']);
    const tokens = sfn.commandCalls(GetExecutionHistoryCommand).map((c) => c.args[0].input.nextToken);
    expect(tokens.slice(0, 4)).toEqual([undefined, 't2', 't2', undefined]);
  });

  it('does not loop when a fresh history token is refused too', async () => {
    sfn.on(GetExecutionHistoryCommand).callsFake((input: { nextToken?: string }) => {
      if (input.nextToken) throw new InvalidToken({ message: 'Invalid Token', ...meta });
      return { events: [ev('ExecutionStarted')], nextToken: 'tX' };
    });
    const err = (await runRemote({ client, stateMachineArn: SM, input: {}, sleep }).catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(PermanentError);
    expect(err.message).toContain(`GetExecutionHistory on ${EXEC} failed: InvalidToken`);
    expect(sfn.commandCalls(GetExecutionHistoryCommand).length).toBeLessThanOrEqual(4);
  });

  describe('permanent errors', () => {
    it('StateMachineDoesNotExist -> NotFoundError naming the ARN', async () => {
      sfn.on(StartExecutionCommand).rejects(new StateMachineDoesNotExist({ message: `State Machine Does Not Exist: '${SM}'`, ...meta }));
      const err = (await runRemote({ client, stateMachineArn: SM, input: {}, sleep }).catch((e: unknown) => e)) as Error;
      expect(err).toBeInstanceOf(NotFoundError);
      expect(err.message).toBe(`state machine ${SM} does not exist: deploy the stack (cdk deploy) or check the region, account and name`);
      expect(sleeps).toEqual([]);
    });

    it('InvalidArn -> PermanentError naming the ARN', async () => {
      sfn.on(StartExecutionCommand).rejects(new InvalidArn({ message: 'Invalid Arn', ...meta }));
      const err = (await runRemote({ client, stateMachineArn: 'arn:aws:states:nope', input: {}, sleep }).catch((e: unknown) => e)) as Error;
      expect(err).toBeInstanceOf(PermanentError);
      expect(err).not.toBeInstanceOf(RetryableError);
      expect(err.message).toContain('invalid ARN arn:aws:states:nope');
    });

    it('ExecutionAlreadyExists -> PermanentError naming the execution and the state machine', async () => {
      sfn.on(StartExecutionCommand).rejects(new ExecutionAlreadyExists({ message: 'Execution Already Exists', ...meta }));
      const err = (await runRemote({ client, stateMachineArn: SM, input: {}, name: 'restore-1', sleep }).catch((e: unknown) => e)) as Error;
      expect(err).toBeInstanceOf(PermanentError);
      expect(err.message).toMatch(new RegExp(`execution named restore-1 of ${SM} already exists`));
    });

    it('ExecutionDoesNotExist while polling -> NotFoundError naming the execution', async () => {
      sfn.on(GetExecutionHistoryCommand).resolves({ events: [] });
      sfn.on(DescribeExecutionCommand).rejects(new ExecutionDoesNotExist({ message: 'Execution Does Not Exist', ...meta }));
      const err = (await runRemote({ client, stateMachineArn: SM, input: {}, sleep }).catch((e: unknown) => e)) as Error;
      expect(err).toBeInstanceOf(NotFoundError);
      expect(err.message).toContain(`execution ${EXEC} does not exist`);
    });
  });
});

describe('stateMachineArnFor', () => {
  it('builds the ARN with the default prefix', () => {
    expect(stateMachineArnFor('restore', { region: 'us-east-1', account: '111122223333' })).toBe(
      'arn:aws:states:us-east-1:111122223333:stateMachine:memvault-restore',
    );
  });

  it('uses a custom prefix, and the partition of the region', () => {
    expect(stateMachineArnFor('backup-run', { region: 'eu-west-1', account: '111122223333', prefix: 'prod' })).toBe(
      'arn:aws:states:eu-west-1:111122223333:stateMachine:prod-backup-run',
    );
    expect(stateMachineArnFor('drill', { region: 'cn-north-1', account: '111122223333' })).toBe(
      'arn:aws-cn:states:cn-north-1:111122223333:stateMachine:memvault-drill',
    );
  });

  it('passes an ARN through and rejects bad parts naming the field', () => {
    expect(stateMachineArnFor(SM, { region: 'us-east-1', account: '111122223333' })).toBe(SM);
    expect(() => stateMachineArnFor('restore', { region: 'us-east-1', account: '1234' })).toThrow(ConfigError);
    expect(() => stateMachineArnFor('restore', { region: 'us-east-1', account: '1234' })).toThrow(/account: expected a 12-digit AWS account id, got "1234"/);
    expect(() => stateMachineArnFor('re store', { region: 'us-east-1', account: '111122223333' })).toThrow(/state machine name/);
  });
});
