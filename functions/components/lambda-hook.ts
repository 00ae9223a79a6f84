// Hooks that invoke a Lambda function (components.<name>.hooks.<phase>.N.lambda):
// on AWS the handlers cannot run commands, and a service's "stop / start" is
// often a function. The function is invoked synchronously (RequestResponse)
// with the hook's event; it succeeded when Lambda ran it without a function
// error. Throttling is retried (with backoff, within the hook's timeout); a
// missing function, a refused invocation or a function error is the hook's
// failure, named. The SDK client is loaded on first use.
import { errorMessage } from '../core/errors.ts';
import type { Hook } from '../core/config.ts';

export interface LambdaHookEvent {
  component: string;
  kind: string;
  hook: string;
  result: string;
  location: string;
  [k: string]: unknown;
}

/** The region of a function ARN (arn:aws:lambda:<region>:...). */
export function regionOfArn(arn: string): string {
  return arn.split(':')[3];
}

const THROTTLED = new Set(['TooManyRequestsException', 'ThrottlingException', 'EC2ThrottledException', 'ServiceException', 'ResourceNotReadyException']);

export async function lambdaHook(spec: NonNullable<Hook['lambda']>, event: LambdaHookEvent, o: { sleep?: (ms: number) => Promise<void> } = {}): Promise<{ ok: boolean; expected: string; actual: string }> {
  const expected = `${spec.functionArn} to run without a function error`;
  const { LambdaClient, InvokeCommand } = await import('@aws-sdk/client-lambda');
  const client = new LambdaClient({ region: regionOfArn(spec.functionArn), maxAttempts: 1 });
  const sleep = o.sleep ?? ((ms: number) => new Promise((r) => setTimeout(r, ms)));
  const deadline = Date.now() + spec.timeoutSeconds * 1000;
  const payload = Buffer.from(JSON.stringify({ ...(spec.payload ?? {}), ...event }));
  try {
    for (let attempt = 1; ; attempt++) {
      try {
        const left = Math.max(1, deadline - Date.now());
        const r = await client.send(new InvokeCommand({ FunctionName: spec.functionArn, InvocationType: 'RequestResponse', Payload: payload }), { abortSignal: AbortSignal.timeout(left) });
        const body = r.Payload ? Buffer.from(r.Payload).toString('utf8') : '';
        if (r.FunctionError) {
          let why = body;
          try {
            const e = JSON.parse(body) as { errorType?: string; errorMessage?: string };
            if (e.errorMessage) why = `${e.errorType ? `${e.errorType}: ` : ''}${e.errorMessage}`;
          } catch { /* not JSON: as returned */ }
          return { ok: false, expected, actual: `function error (${r.FunctionError}): ${why.slice(0, 500)}` };
        }
        return { ok: true, expected, actual: `status ${r.StatusCode ?? '?'}: ${body.slice(0, 200)}` };
      } catch (err) {
        const name = (err as { name?: string }).name ?? '';
        const waitMs = Math.min(8_000, 250 * 2 ** (attempt - 1));
        if (THROTTLED.has(name) && Date.now() + waitMs < deadline) {
          await sleep(waitMs);
          continue;
        }
        const what = name === 'ResourceNotFoundException' ? 'the function does not exist (or not in that region)'
          : name === 'AccessDeniedException' || name === 'AccessDenied' ? 'not allowed to invoke it (lambda:InvokeFunction)'
            : name === 'TimeoutError' || name === 'AbortError' ? `no answer within ${spec.timeoutSeconds} s`
              : THROTTLED.has(name) ? `throttled until the hook's ${spec.timeoutSeconds} s ran out`
                : errorMessage(err);
        return { ok: false, expected, actual: `invoke failed (${name || 'error'}): ${what}` };
      }
    }
  } finally {
    client.destroy();
  }
}
