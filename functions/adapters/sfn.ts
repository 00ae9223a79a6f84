// Step Functions client for the CLI's `--remote` mode (`memvault restore
// --remote`, `memvault run NAME --remote`): start an execution of a deployed
// state machine, follow it to the end and report what happened.
//
//   1. StartExecution (always with a name, so a retried start after a lost
//      response finds the same execution instead of starting a second one)
//   2. loop: read the new part of the execution history (GetExecutionHistory,
//      following nextToken; the next poll resumes from the last page and skips
//      events already seen) and report states entered / exited / failed;
//      DescribeExecution; stop when the status is no longer RUNNING; sleep
//   3. read the history once more so the last events are reported, and return
//      status, output, error and cause.
//
// Throttling (and service-side faults) on any call back off exponentially with
// jitter and carry on; a missing state machine or execution, a bad ARN or a
// clashing execution name are permanent errors naming the ARN.
import { randomBytes } from 'node:crypto';
import {
  SFNClient,
  DescribeExecutionCommand,
  GetExecutionHistoryCommand,
  StartExecutionCommand,
  type HistoryEvent,
} from '@aws-sdk/client-sfn';
import {
  ConfigError,
  NotFoundError,
  PermanentError,
  RetryableError,
  ThrottledError,
  errorMessage,
} from '../core/errors.ts';

export interface RemoteEvent {
  /** The state's name ('' when an execution-level event cannot be tied to a state). */
  state: string;
  type: 'entered' | 'exited' | 'failed';
  time: Date;
  /** entered/exited: the kind of state (Task, Map, Choice...); failed: "Error: cause". */
  detail?: string;
}

export interface RunRemoteOptions {
  client: SFNClient;
  stateMachineArn: string;
  /** The execution input; serialized as JSON. */
  input: unknown;
  /** Execution name (1-80 of A-Z a-z 0-9 - _). @default a generated name, cli-<time>-<random> */
  name?: string;
  /** Time between polls. @default 2000 */
  pollMs?: number;
  /** @default setTimeout */
  sleep?: (ms: number) => Promise<void>;
  onEvent?: (e: RemoteEvent) => void;
}

export interface RemoteResult {
  executionArn: string;
  /** SUCCEEDED, FAILED, TIMED_OUT or ABORTED */
  status: string;
  /** The execution's output, parsed from JSON when it is JSON. */
  output?: unknown;
  error?: string;
  cause?: string;
  durationMs: number;
}

const IN_PROGRESS = new Set(['RUNNING', 'PENDING_REDRIVE']);
const THROTTLING = new Set([
  'ThrottlingException',
  'Throttling',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'KmsThrottlingException',
]);
/** Consecutive throttled or failed attempts of one call before giving up. */
const MAX_ATTEMPTS = 8;
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 30_000;
const HISTORY_PAGE = 1000;

const defaultSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function runRemote(opts: RunRemoteOptions): Promise<RemoteResult> {
  const { client, stateMachineArn } = opts;
  const sleep = opts.sleep ?? defaultSleep;
  const pollMs = opts.pollMs ?? 2000;
  const name = opts.name ?? generatedName();
  const began = Date.now();

  let start;
  try {
    start = await backingOff('StartExecution', sleep, () =>
      client.send(new StartExecutionCommand({ stateMachineArn, name, input: JSON.stringify(opts.input ?? {}) })),
    );
  } catch (err) {
    throw mapSfnError(err, { op: 'StartExecution', stateMachineArn, name });
  }
  const executionArn = start.executionArn;
  if (!executionArn) throw new PermanentError(`StartExecution of ${stateMachineArn} returned no execution ARN`);

  const history = new HistoryFollower(client, executionArn, sleep, opts.onEvent);
  for (;;) {
    await history.readNew();
    let d;
    try {
      d = await backingOff('DescribeExecution', sleep, () => client.send(new DescribeExecutionCommand({ executionArn })));
    } catch (err) {
      throw mapSfnError(err, { op: 'DescribeExecution', stateMachineArn, executionArn });
    }
    const status = d.status ?? 'UNKNOWN';
    if (!IN_PROGRESS.has(status)) {
      await history.readNew();
      const result: RemoteResult = {
        executionArn,
        status,
        durationMs: d.startDate && d.stopDate ? d.stopDate.getTime() - d.startDate.getTime() : Date.now() - began,
      };
      if (d.output !== undefined) result.output = parseJson(d.output);
      const error = d.error ?? history.lastFailure?.error;
      const cause = d.cause ?? history.lastFailure?.cause;
      if (status !== 'SUCCEEDED') {
        if (error !== undefined) result.error = error;
        if (cause !== undefined) result.cause = cause;
      }
      return result;
    }
    await sleep(pollMs);
  }
}

/** arn:aws:states:REGION:ACCOUNT:stateMachine:PREFIX-NAME (an ARN given as name is returned as is). */
export function stateMachineArnFor(name: string, opts: { region: string; account: string; prefix?: string }): string {
  if (name.startsWith('arn:')) return name;
  const problems: string[] = [];
  if (!/^[a-z]{2}(-[a-z]+)+-\d+$/.test(opts.region)) problems.push(`region: expected an AWS region such as us-east-1, got ${JSON.stringify(opts.region)}`);
  if (!/^\d{12}$/.test(opts.account)) problems.push(`account: expected a 12-digit AWS account id, got ${JSON.stringify(opts.account)}`);
  const prefix = opts.prefix ?? 'memvault';
  const full = prefix ? `${prefix}-${name}` : name;
  if (!/^[A-Za-z0-9_-]{1,80}$/.test(full)) {
    problems.push(`state machine name: expected 1-80 letters, digits, '-' or '_', got ${JSON.stringify(full)}`);
  }
  if (problems.length) throw new ConfigError(problems);
  const partition = opts.region.startsWith('cn-') ? 'aws-cn' : opts.region.startsWith('us-gov-') ? 'aws-us-gov' : 'aws';
  return `arn:${partition}:states:${opts.region}:${opts.account}:stateMachine:${full}`;
}

/** Follows an execution's history: each call reports only events not seen before. */
class HistoryFollower {
  /** The token of the last page read (undefined: the first page); the next read starts there. */
  private resumeToken: string | undefined;
  private lastId = 0;
  /** id -> previous event id and, for state entered/exited events, the state name. */
  private readonly seen = new Map<number, { prev?: number; state?: string }>();
  private lastEntered = '';
  lastFailure: { error?: string; cause?: string } | undefined;

  constructor(
    private readonly client: SFNClient,
    private readonly executionArn: string,
    private readonly sleep: (ms: number) => Promise<void>,
    private readonly onEvent?: (e: RemoteEvent) => void,
  ) {}

  async readNew(): Promise<void> {
    let token = this.resumeToken;
    let restarted = false;
    for (;;) {
      let page;
      try {
        page = await backingOff('GetExecutionHistory', this.sleep, () =>
          this.client.send(
            new GetExecutionHistoryCommand({
              executionArn: this.executionArn,
              maxResults: HISTORY_PAGE,
              includeExecutionData: false,
              ...(token ? { nextToken: token } : {}),
            }),
          ),
        );
      } catch (err) {
        if (token && !restarted && errorName(err) === 'InvalidToken') {
          // An expired resume token: read from the start once; seen events are skipped by id.
          restarted = true;
          token = undefined;
          this.resumeToken = undefined;
          continue;
        }
        throw mapSfnError(err, { op: 'GetExecutionHistory', executionArn: this.executionArn });
      }
      for (const e of page.events ?? []) {
        if (e.id === undefined || e.id <= this.lastId) continue;
        this.lastId = e.id;
        this.handle(e);
      }
      if (!page.nextToken) {
        this.resumeToken = token;
        return;
      }
      token = page.nextToken;
    }
  }

  private handle(e: HistoryEvent): void {
    const type = e.type ?? '';
    const time = e.timestamp ?? new Date();
    const state = e.stateEnteredEventDetails?.name ?? e.stateExitedEventDetails?.name;
    this.seen.set(e.id!, { prev: e.previousEventId, state });
    if (type.endsWith('StateEntered')) {
      this.lastEntered = state ?? '';
      this.onEvent?.({ state: state ?? '', type: 'entered', time, detail: type.slice(0, -'StateEntered'.length) });
    } else if (type.endsWith('StateExited')) {
      this.onEvent?.({ state: state ?? '', type: 'exited', time, detail: type.slice(0, -'StateExited'.length) });
    } else if (/(Failed|TimedOut|Aborted)$/.test(type)) {
      const failure = failureOf(e);
      if (failure.error !== undefined || failure.cause !== undefined) this.lastFailure = failure;
      const detail = describeFailure(type, failure);
      this.onEvent?.({ state: this.stateOf(e), type: 'failed', time, detail });
    }
  }

  /** The state an event belongs to: follow previousEventId back to a state entered/exited event. */
  private stateOf(e: HistoryEvent): string {
    let id = e.previousEventId;
    for (let hops = 0; id !== undefined && id > 0 && hops < 100_000; hops++) {
      const s = this.seen.get(id);
      if (!s) break;
      if (s.state !== undefined) return s.state;
      id = s.prev;
    }
    return this.lastEntered;
  }
}

function failureOf(e: HistoryEvent): { error?: string; cause?: string; extra?: string } {
  for (const [k, v] of Object.entries(e)) {
    if (!k.endsWith('EventDetails') || !v || typeof v !== 'object') continue;
    const d = v as { error?: string; cause?: string; name?: string; index?: number };
    if (d.error !== undefined || d.cause !== undefined) return { error: d.error, cause: d.cause };
    if (d.name !== undefined && d.index !== undefined) return { extra: `${d.name}[${d.index}]` };
  }
  return {};
}

function describeFailure(type: string, f: { error?: string; cause?: string; extra?: string }): string {
  const cause = f.cause !== undefined ? lambdaMessage(f.cause) : undefined;
  const parts = [f.error, cause].filter((x): x is string => !!x);
  if (parts.length) return parts.join(': ');
  return f.extra ? `${type} ${f.extra}` : type;
}

/** Lambda failures carry a JSON cause {errorMessage, errorType, stackTrace}: keep the message. */
function lambdaMessage(cause: string): string {
  try {
    const c = JSON.parse(cause) as { errorMessage?: unknown };
    if (c && typeof c === 'object' && typeof c.errorMessage === 'string') return c.errorMessage;
  } catch {
    // not JSON: the cause as given
  }
  return cause;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function generatedName(): string {
  const time = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '');
  return `cli-${time}-${randomBytes(4).toString('hex')}`;
}

function errorName(err: unknown): string {
  return (err as { name?: string } | null)?.name ?? '';
}

function isTransient(err: unknown): boolean {
  const e = err as { name?: string; $fault?: string; $metadata?: { httpStatusCode?: number }; code?: string } | null;
  if (!e) return false;
  if (THROTTLING.has(e.name ?? '')) return true;
  const status = e.$metadata?.httpStatusCode;
  if (status === 429 || (status !== undefined && status >= 500) || e.$fault === 'server') return true;
  return ['ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ECONNREFUSED'].includes(e.code ?? '') || e.name === 'TimeoutError';
}

/** Runs fn, backing off on throttling and transient faults (exponential, equal jitter). */
async function backingOff<T>(op: string, sleep: (ms: number) => Promise<void>, fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (!isTransient(err)) throw err;
      if (attempt >= MAX_ATTEMPTS) {
        throw new ThrottledError(`Step Functions ${op} still throttled or failing after ${attempt} attempts: ${errorMessage(err)}`, { cause: err });
      }
      const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** (attempt - 1));
      await sleep(Math.round(cap / 2 + Math.random() * (cap / 2)));
    }
  }
}

function mapSfnError(
  err: unknown,
  ctx: { op: string; stateMachineArn?: string; executionArn?: string; name?: string },
): Error {
  if (err instanceof ThrottledError) return err;
  const name = errorName(err);
  const detail = errorMessage(err);
  const target = ctx.executionArn ?? ctx.stateMachineArn ?? '';
  switch (name) {
    case 'StateMachineDoesNotExist':
      return new NotFoundError(
        `state machine ${ctx.stateMachineArn} does not exist: deploy the stack (cdk deploy) or check the region, account and name`,
      );
    case 'ExecutionDoesNotExist':
      return new NotFoundError(`execution ${ctx.executionArn} does not exist (${detail})`);
    case 'InvalidArn':
      return new PermanentError(`${ctx.op}: invalid ARN ${target} (${detail}): expected arn:aws:states:REGION:ACCOUNT:...`, { cause: err });
    case 'ExecutionAlreadyExists':
      return new PermanentError(
        `an execution named ${ctx.name} of ${ctx.stateMachineArn} already exists with other input or has finished: choose another name`,
        { cause: err },
      );
    case 'InvalidName':
      return new PermanentError(`invalid execution name ${JSON.stringify(ctx.name)} for ${ctx.stateMachineArn}: use 1-80 letters, digits, '-' or '_'`, { cause: err });
    case 'InvalidExecutionInput':
      return new PermanentError(`${ctx.stateMachineArn} rejected the execution input: ${detail}`, { cause: err });
    case 'StateMachineDeleting':
      return new PermanentError(`state machine ${ctx.stateMachineArn} is being deleted: redeploy the stack`, { cause: err });
    case 'ExecutionLimitExceeded':
      return new RetryableError(`${ctx.stateMachineArn} has reached its limit of running executions: try again when some have finished`, { cause: err });
    case 'AccessDeniedException':
    case 'AccessDenied':
      return new PermanentError(`not allowed to call states:${ctx.op} on ${target}: ${detail}`, { cause: err });
    case 'KmsAccessDeniedException':
    case 'KmsInvalidStateException':
      return new PermanentError(`${ctx.op} on ${target}: the state machine's KMS key cannot be used (${name}: ${detail})`, { cause: err });
  }
  return new PermanentError(`Step Functions ${ctx.op} on ${target} failed: ${name ? `${name}: ` : ''}${detail}`, { cause: err });
}
