// `memvault restore --remote` / `memvault run NAME --remote` against a small
// Step Functions endpoint on loopback (the AWS control plane cannot run here):
// the CLI must send the operator's input as the restore state machine expects
// it, follow the execution, and exit by its status.
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { cli } from '../helpers/cli.ts';

interface Call { target: string; body: any }

function fakeStepFunctions(outcome: (input: any) => { status: 'SUCCEEDED' | 'FAILED'; output?: unknown; error?: string; cause?: string }) {
  const calls: Call[] = [];
  const executions = new Map<string, { input: any; started: number }>();
  const server = http.createServer((req, res) => {
    let raw = '';
    req.on('data', (d) => { raw += d; });
    req.on('end', () => {
      const target = String(req.headers['x-amz-target'] ?? '').split('.').pop()!;
      const body = JSON.parse(raw || '{}');
      calls.push({ target, body });
      const send = (o: unknown) => { res.writeHead(200, { 'content-type': 'application/x-amz-json-1.0' }); res.end(JSON.stringify(o)); };
      const now = Date.now() / 1000;
      if (target === 'StartExecution') {
        const arn = `${body.stateMachineArn.replace(':stateMachine:', ':execution:')}:${body.name}`;
        executions.set(arn, { input: JSON.parse(body.input), started: now });
        return send({ executionArn: arn, startDate: now });
      }
      const ex = executions.get(body.executionArn)!;
      const o = outcome(ex.input);
      if (target === 'DescribeExecution') {
        return send({ executionArn: body.executionArn, status: o.status, startDate: ex.started, stopDate: now, input: JSON.stringify(ex.input), ...(o.output ? { output: JSON.stringify(o.output) } : {}), ...(o.error ? { error: o.error, cause: o.cause } : {}) });
      }
      if (target === 'GetExecutionHistory') {
        const events = [
          { id: 1, timestamp: ex.started, type: 'ExecutionStarted' },
          { id: 2, previousEventId: 1, timestamp: ex.started, type: 'TaskStateEntered', stateEnteredEventDetails: { name: 'ValidateInput' } },
          { id: 3, previousEventId: 2, timestamp: ex.started, type: 'TaskStateExited', stateExitedEventDetails: { name: 'ValidateInput' } },
          o.status === 'SUCCEEDED'
            ? { id: 4, previousEventId: 3, timestamp: now, type: 'ExecutionSucceeded' }
            : { id: 4, previousEventId: 3, timestamp: now, type: 'ExecutionFailed', executionFailedEventDetails: { error: o.error, cause: o.cause } },
        ];
        return send({ events });
      }
      res.writeHead(400, { 'content-type': 'application/x-amz-json-1.0' });
      res.end(JSON.stringify({ __type: 'UnknownOperationException', message: target }));
    });
  });
  return { server, calls };
}

describe('CLI --remote', () => {
  const fake = fakeStepFunctions((input) => input.mode === 'latest'
    ? { status: 'SUCCEEDED', output: { ok: true, recoveryTimeMs: 1234 } }
    : { status: 'FAILED', error: 'BackupRunFailed', cause: 'backup run r1: 1 failure(s): memory-db at export: boom' });
  let env: Record<string, string>;
  beforeAll(async () => {
    await new Promise<void>((r) => fake.server.listen(0, '127.0.0.1', r));
    const port = (fake.server.address() as AddressInfo).port;
    env = {
      AWS_ENDPOINT_URL_SFN: `http://127.0.0.1:${port}`, AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test',
      AWS_REGION: 'eu-west-1', AWS_EC2_METADATA_DISABLED: 'true',
    };
  });
  afterAll(() => { fake.server.close(); });

  it('restore --remote sends the console-style input, with target options, and exits 0 on success', async () => {
    const r = await cli(['restore', '--remote', '--latest', '--component', 'memory-db', '--from', 'secondary',
      '--target-option', 'memory-db:instanceId=memory-db-restored', '--target-option', 'memory-db:instanceClass=db.r6g.large',
      '--account', '111122223333', '--json'], { env });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const start = fake.calls.find((c) => c.target === 'StartExecution')!;
    expect(start.body.stateMachineArn).toBe('arn:aws:states:eu-west-1:111122223333:stateMachine:memvault-restore');
    expect(JSON.parse(start.body.input)).toEqual({
      mode: 'latest', components: ['memory-db'], from: 'secondary',
      target: { options: { 'memory-db': { instanceId: 'memory-db-restored', instanceClass: 'db.r6g.large' } } },
    });
    expect(JSON.parse(r.stdout)).toMatchObject({ status: 'SUCCEEDED', output: { ok: true, recoveryTimeMs: 1234 } });
  });

  it('run NAME --remote prints each state and exits 1 with the error of a failed execution', async () => {
    const r = await cli(['run', 'backup-run', '--remote', '--input', '{"type":"full"}',
      '--state-machine-arn', 'arn:aws:states:eu-west-1:111122223333:stateMachine:memvault-backup-run'], { env });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('ValidateInput');
    expect(r.stdout).toMatch(/BackupRunFailed: backup run r1: 1 failure\(s\): memory-db at export: boom/);
  });

  it('an option without a component is refused before anything starts', async () => {
    const before = fake.calls.length;
    const r = await cli(['restore', '--remote', '--latest', '--target-option', 'url=x', '--account', '111122223333'], { env });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/name the component/);
    expect(fake.calls.length).toBe(before);
  });
});
