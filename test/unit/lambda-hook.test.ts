// Hooks that invoke a Lambda function (functions/components/lambda-hook.ts), with
// Lambda mocked (a control-plane API that cannot run here): the event the
// function gets, a function error, a missing function, a refused invocation,
// throttling retried and then given up, and a failing before-hook stopping the
// restore naming the hook.
import { beforeEach, describe, expect, it } from 'vitest';
import { mockClient } from 'aws-sdk-client-mock';
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { lambdaHook, regionOfArn } from '../../functions/components/lambda-hook.ts';
import { HookFailedError, runAfterHooks, runBeforeHooks } from '../../functions/components/hooks.ts';
import { hookSchema, type ComponentConfig } from '../../functions/core/config.ts';

const ARN = 'arn:aws:lambda:eu-west-1:123456789012:function:memory-api-stop';
const awsError = (name: string, message = name) => Object.assign(new Error(message), { name, $metadata: {} });
const spec = (o: Record<string, unknown> = {}) => hookSchema.parse({ name: 'stop', lambda: { functionArn: ARN, ...o } }).lambda!;
const event = { component: 'memory-db', kind: 'sqlite', hook: 'beforeRestore', result: '', location: '/srv/restore' };
const noSleep = { sleep: async () => undefined };

describe('lambda hooks (Lambda mocked)', () => {
  const lm = mockClient(LambdaClient);
  beforeEach(() => lm.reset());

  it('invokes the function synchronously in its own region with the hook\'s event and extra payload; ok without a function error', async () => {
    lm.on(InvokeCommand).resolves({ StatusCode: 200, Payload: Buffer.from('{"stopped":true}') as never });
    const r = await lambdaHook(spec({ payload: { service: 'memory-api', component: 'not this' } }), event);
    expect(r.ok).toBe(true);
    const call = lm.commandCalls(InvokeCommand)[0];
    expect(call.args[0].input).toMatchObject({ FunctionName: ARN, InvocationType: 'RequestResponse' });
    expect(JSON.parse(Buffer.from(call.args[0].input.Payload as Uint8Array).toString())).toEqual({ service: 'memory-api', ...event });
    expect(await (call.thisValue as LambdaClient).config.region()).toBe('eu-west-1');
    expect(regionOfArn('arn:aws:lambda:ap-southeast-2:123456789012:function:x:live')).toBe('ap-southeast-2');
  });

  it('a function error fails the hook with the function\'s own error', async () => {
    lm.on(InvokeCommand).resolves({ StatusCode: 200, FunctionError: 'Unhandled', Payload: Buffer.from('{"errorType":"Error","errorMessage":"service did not stop in 30 s"}') as never });
    const r = await lambdaHook(spec(), event);
    expect(r).toMatchObject({ ok: false, actual: 'function error (Unhandled): Error: service did not stop in 30 s' });
  });

  it('a missing function and a refused invocation are named as such', async () => {
    lm.on(InvokeCommand).rejectsOnce(awsError('ResourceNotFoundException', 'Function not found')).rejectsOnce(awsError('AccessDeniedException', 'not authorized'));
    expect((await lambdaHook(spec(), event)).actual).toBe('invoke failed (ResourceNotFoundException): the function does not exist (or not in that region)');
    expect((await lambdaHook(spec(), event)).actual).toBe('invoke failed (AccessDeniedException): not allowed to invoke it (lambda:InvokeFunction)');
    expect(lm.commandCalls(InvokeCommand)).toHaveLength(2);
  });

  it('throttling is retried within the hook\'s timeout; throttled to the end fails saying so', async () => {
    lm.on(InvokeCommand).rejectsOnce(awsError('TooManyRequestsException', 'Rate exceeded')).rejectsOnce(awsError('TooManyRequestsException', 'Rate exceeded'))
      .resolves({ StatusCode: 200, Payload: Buffer.from('null') as never });
    expect((await lambdaHook(spec(), event, noSleep)).ok).toBe(true);
    expect(lm.commandCalls(InvokeCommand)).toHaveLength(3);
    lm.reset();
    lm.on(InvokeCommand).rejects(awsError('TooManyRequestsException', 'Rate exceeded'));
    let slept = 0;
    const r = await lambdaHook(spec({ timeoutSeconds: 1 }), event, { sleep: async (ms) => { slept += ms; await new Promise((res) => setTimeout(res, ms)); } });
    expect(r).toMatchObject({ ok: false, actual: 'invoke failed (TooManyRequestsException): throttled until the hook\'s 1 s ran out' });
    expect(slept).toBeGreaterThan(0);
    expect(slept).toBeLessThan(1000);
  });

  it('a failing before-hook stops the restore naming it; after-hooks report their failures', async () => {
    lm.on(InvokeCommand).resolves({ StatusCode: 200, FunctionError: 'Handled', Payload: Buffer.from('{"errorMessage":"queue not drained"}') as never });
    const settings = { kind: 'sqlite', hooks: { beforeRestore: [{ name: 'drain', lambda: { functionArn: ARN, timeoutSeconds: 60 } }], afterRestore: [{ name: 'start', lambda: { functionArn: ARN, timeoutSeconds: 60 } }] } } as unknown as ComponentConfig;
    const err = await runBeforeHooks(settings, 'beforeRestore', { component: 'memory-db', kind: 'sqlite', location: '/srv' }).catch((e: unknown) => e as Error);
    expect(err).toBeInstanceOf(HookFailedError);
    expect((err as Error).message).toBe(`memory-db: beforeRestore hook drain failed: expected ${ARN} to run without a function error, got function error (Handled): queue not drained; the restore did not start`);
    expect(await runAfterHooks(settings, 'afterRestore', { component: 'memory-db', kind: 'sqlite', location: '/srv', result: 'failed' })).toEqual([
      `memory-db: afterRestore hook start failed: expected ${ARN} to run without a function error, got function error (Handled): queue not drained`,
    ]);
    const sent = JSON.parse(Buffer.from(lm.commandCalls(InvokeCommand)[1].args[0].input.Payload as Uint8Array).toString());
    expect(sent).toMatchObject({ hook: 'afterRestore', result: 'failed', component: 'memory-db' });
  });

  it('config: exactly one of command, http or lambda; a function ARN', () => {
    expect(hookSchema.safeParse({ name: 'x', lambda: { functionArn: ARN }, http: { url: 'https://a.example' } }).success).toBe(false);
    expect(hookSchema.safeParse({ name: 'x', lambda: { functionArn: 'memory-api-stop' } }).success).toBe(false);
    expect(hookSchema.safeParse({ name: 'x', lambda: { functionArn: `${ARN}:live` } }).success).toBe(true);
  });
});
