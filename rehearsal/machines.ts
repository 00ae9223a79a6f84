// Step Functions, as the rehearsal runs it: the state machines of the
// synthesized templates (definitions with DefinitionSubstitutions applied),
// run by aws-local-stepfunctions (JSONPath ASL; no JSONata, variables or
// ItemReader), with what the service does around them:
//
//   - a Task whose Resource is a Lambda ARN (or arn:aws:states:::lambda:invoke)
//     first asks IAM whether the state machine's role may lambda:InvokeFunction
//     it (denied: the task fails as Lambda.AWSLambdaException, as Step
//     Functions reports an AccessDeniedException from Lambda), then invokes the
//     rehearsed function; a failed invocation fails the task with Error = the
//     errorType and Cause = Lambda's JSON. A result over 256 KB fails as
//     States.DataLimitExceeded. arn:aws:states:::sns:publish tasks publish
//     through the gateway as the state machine's role.
//   - DISTRIBUTED Maps run INLINE (the library runs every Map inline); each
//     conversion is reported, and the role must still be allowed to start the
//     child executions a DISTRIBUTED Map would start.
//   - Wait states and Retry intervals are shortened (waitMs, retryMs); the
//     states, retries and catches are the same.
//   - when an execution ends FAILED / TIMED_OUT / ABORTED, the "Step Functions
//     Execution Status Change" event goes through the region's EventBridge
//     rules (pattern match, input transformer) to their SNS targets as
//     events.amazonaws.com with aws:SourceArn = the rule; each alarm on
//     AWS/States ExecutionsFailed/TimedOut/Aborted of that state machine counts
//     the execution and, crossing its threshold, notifies its actions as
//     cloudwatch.amazonaws.com with aws:SourceArn = the alarm.
import { randomUUID } from 'node:crypto';
import { SNSClient, PublishCommand } from '@aws-sdk/client-sns';
import { StateMachine, ExecutionError } from 'aws-local-stepfunctions';
import { LambdaInvokeError, type LambdaRuntime } from './lambda.ts';
import type { AlarmInfo, DeployedModel, RuleInfo, StateMachineInfo } from './template.ts';
import { matchesPattern } from './event-pattern.ts';

/** What Step Functions, EventBridge and CloudWatch need from the gateway (rehearsal/gateway.ts). */
export interface ServiceGateway {
  url: string;
  credentialsFor(roleArn: string): { accessKeyId: string; secretAccessKey: string; sessionToken: string };
  authorize(principal: string, action: string, resource: string, context?: Record<string, string | string[]>): { allowed: boolean; reason: string };
  publishAsService(servicePrincipal: string, topicArn: string, message: string, context: Record<string, string>): void;
}

export type ExecutionStatus = 'SUCCEEDED' | 'FAILED' | 'TIMED_OUT' | 'ABORTED';

export interface ExecutionRecord {
  executionArn: string;
  stateMachineArn: string;
  name: string;
  input: unknown;
  status: ExecutionStatus;
  output?: unknown;
  error?: string;
  cause?: string;
  startedAt: number;
  durationMs: number;
  /** Task invocations per function name (retries included). */
  invocations: Record<string, number>;
  /** States retried, with how many times. */
  retried: Record<string, number>;
  /** Every state failure seen (caught or not), in order. */
  failures: { state: string; error: string; cause: string }[];
  /** Every Task invocation: the state, the function (or service), its input and its result or error, in order. */
  tasks: { state: string; resource: string; input: unknown; output?: unknown; error?: string }[];
}

/** A delivery by EventBridge or CloudWatch that the topic or key policy refused. */
export interface DeliveryFailure { source: string; principal: string; topicArn: string; error: string }

export interface StepFunctionsOptions {
  /** Pause of every Wait state, ms. @default 5 */
  waitMs?: number;
  /** Pause before every retry, ms. @default 5 */
  retryMs?: number;
}

const DATA_LIMIT = 256 * 1024;

class TaskError extends Error {
  constructor(name: string, cause: string) {
    super(cause);
    this.name = name;
  }
}

/** Visits every state at any depth (Map ItemProcessor/Iterator, Parallel branches). */
export function eachState(def: Record<string, any>, f: (name: string, s: Record<string, any>) => void): void {
  const visit = (states: Record<string, any>) => {
    for (const [name, s] of Object.entries(states)) {
      f(name, s);
      if (s.Type === 'Map') visit((s.ItemProcessor ?? s.Iterator).States);
      if (s.Type === 'Parallel') for (const b of s.Branches) visit(b.States);
    }
  };
  visit(def.States);
}

/**
 * The definition as the library can run it: DISTRIBUTED Maps become INLINE
 * (same items, same processor), and each change is described. ItemReader,
 * ItemBatcher and ResultWriter would change what the processor sees: refused.
 */
export function runnableDefinition(sm: StateMachineInfo): { definition: Record<string, any>; notes: string[] } {
  const def = structuredClone(sm.definition);
  const notes: string[] = [];
  if (def.QueryLanguage === 'JSONata') throw new Error(`${sm.name}: JSONata definitions are not rehearsed (aws-local-stepfunctions runs JSONPath)`);
  eachState(def, (name, s) => {
    if (s.QueryLanguage === 'JSONata' || s.Assign !== undefined) throw new Error(`${sm.name}: state ${name} uses JSONata or variables, which the rehearsal cannot run`);
    if (s.Type !== 'Map') return;
    const pc = s.ItemProcessor?.ProcessorConfig;
    if (pc?.Mode !== 'DISTRIBUTED') return;
    for (const f of ['ItemReader', 'ItemBatcher', 'ResultWriter']) {
      if (s[f] !== undefined) throw new Error(`${sm.name}: DISTRIBUTED Map ${name} uses ${f}, which the rehearsal cannot run`);
    }
    s.ItemProcessor.ProcessorConfig = { Mode: 'INLINE' };
    delete s.ToleratedFailurePercentage;
    delete s.ToleratedFailureCount;
    delete s.Label;
    notes.push(`${sm.name}: Map ${name} is DISTRIBUTED on AWS (${pc.ExecutionType ?? 'STANDARD'} child executions); rehearsed INLINE`);
  });
  return { definition: def, notes };
}

// ---- EventBridge event patterns ----

// One matcher for the rehearsal and the tests (event-pattern.ts): an operator
// it does not know throws, so no pattern passes silently.
export function eventMatches(pattern: Record<string, unknown>, event: Record<string, unknown>): boolean {
  return matchesPattern(pattern, event);
}

function jsonPath(doc: unknown, p: string): unknown {
  if (p === '$') return doc;
  return p.replace(/^\$\.?/, '').split('.').reduce<unknown>((o, k) => (o && typeof o === 'object' ? (o as Record<string, unknown>)[k] : undefined), doc);
}

/** The target input EventBridge builds: Input, InputPath or InputTransformer, else the whole event. */
export function targetInput(t: RuleInfo['targets'][number], event: Record<string, unknown>): string {
  if (t.input !== undefined) return t.input;
  if (t.inputPath) return JSON.stringify(jsonPath(event, t.inputPath));
  if (t.inputTransformer) {
    const vars: Record<string, unknown> = {};
    for (const [k, p] of Object.entries(t.inputTransformer.InputPathsMap ?? {})) vars[k] = jsonPath(event, p);
    return t.inputTransformer.InputTemplate.replace(/<([A-Za-z0-9_.-]+)>/g, (whole, k: string) => {
      if (k === 'aws.events.event.json') return JSON.stringify(event);
      if (!(k in vars)) return whole;
      const v = vars[k];
      // Inside a quoted template a value is inserted as string content.
      return v === undefined || v === null ? '' : typeof v === 'string' ? JSON.stringify(v).slice(1, -1) : JSON.stringify(v);
    });
  }
  return JSON.stringify(event);
}

// ---- Step Functions ----

export class StepFunctions {
  readonly executions: ExecutionRecord[] = [];
  readonly notes: string[] = [];
  readonly deliveryFailures: DeliveryFailure[] = [];
  /** AWS/States metrics per "MetricName|StateMachineArn" in the current alarm period. */
  private readonly metrics = new Map<string, number>();
  private readonly alarmState = new Map<string, 'OK' | 'ALARM'>();
  private readonly prepared = new Map<string, { machine: StateMachine; definition: Record<string, any>; handlers: Record<string, (i: any) => Promise<any>>; waits: string[]; retries: string[] }>();
  private readonly snsClients = new Map<string, SNSClient>();

  constructor(readonly model: DeployedModel, readonly lambda: LambdaRuntime, readonly gateway: ServiceGateway, readonly o: StepFunctionsOptions = {}) {
    for (const sm of model.stateMachines) this.prepare(sm);
  }

  machine(arnOrName: string): StateMachineInfo {
    const sm = this.model.stateMachines.find((m) => m.arn === arnOrName);
    if (!sm) throw new Error(`no state machine ${arnOrName}; state machines: ${this.model.stateMachines.map((m) => m.arn).join(', ')}`);
    return sm;
  }

  /** The state machine named `name` (e.g. memvault-backup-run) in `region`. */
  byName(name: string, region: string): StateMachineInfo {
    const sm = this.model.stateMachines.find((m) => m.name === name && m.region === region);
    if (!sm) throw new Error(`no state machine ${name} in ${region}; state machines: ${this.model.stateMachines.map((m) => `${m.name} (${m.region})`).join(', ')}`);
    return sm;
  }

  private prepare(sm: StateMachineInfo): void {
    const { definition, notes } = runnableDefinition(sm);
    this.notes.push(...notes);
    const handlers: Record<string, (i: any) => Promise<any>> = {};
    const resources = new Map<string, string>();
    const waits: string[] = [];
    const retries: string[] = [];
    eachState(definition, (name, s) => {
      if (s.Type === 'Wait') waits.push(name);
      if (Array.isArray(s.Retry)) retries.push(name);
      if (s.Type !== 'Task') return;
      const key = JSON.stringify([s.Resource, s.Parameters?.FunctionName, s.Parameters?.TopicArn]);
      if (resources.has(name) && resources.get(name) !== key) throw new Error(`${sm.name}: two Task states named ${name} with different resources`);
      resources.set(name, key);
      handlers[name] = this.taskHandler(sm, name, s);
    });
    const machine = new StateMachine(definition as never, { validationOptions: { checkPaths: true, checkArn: true } });
    this.prepared.set(sm.arn, { machine, definition, handlers, waits, retries });
  }

  private denied(sm: StateMachineInfo, action: string, resource: string, why: string): TaskError {
    const role = sm.roleArn.split('/').pop();
    return new TaskError(
      action.startsWith('lambda:') ? 'Lambda.AWSLambdaException' : 'SNS.AuthorizationErrorException',
      `User: arn:aws:sts::${this.model.stacks[0]?.account}:assumed-role/${role}/${randomUUID().slice(0, 8)} is not authorized to perform: ${action} on resource: ${resource} (${why}) ` +
        `(Service: ${action.split(':')[0]}, Status Code: 403, Error Code: AccessDeniedException)`,
    );
  }

  private taskHandler(sm: StateMachineInfo, state: string, s: Record<string, any>): (input: any) => Promise<any> {
    const resource = String(s.Resource);
    const lambdaArn = /^arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:[^:]+$/.test(resource) ? resource : undefined;
    const invokeIntegration = /^arn:aws[a-z-]*:states:::lambda:invoke$/.test(resource);
    const snsPublish = /^arn:aws[a-z-]*:states:::sns:publish$/.test(resource);
    if (!lambdaArn && !invokeIntegration && !snsPublish) throw new Error(`${sm.name}: state ${state}: Task resource ${resource} is not rehearsed`);
    const limit = (value: unknown) => {
      const size = Buffer.byteLength(JSON.stringify(value ?? null));
      if (size > DATA_LIMIT) throw new TaskError('States.DataLimitExceeded', `The state/task '${state}' returned a result with a size exceeding the maximum number of bytes service limit (${size} > ${DATA_LIMIT})`);
      return value;
    };
    const invoke = async (fnArn: string, payload: unknown) => {
      const d = this.gateway.authorize(sm.roleArn, 'lambda:InvokeFunction', fnArn);
      if (!d.allowed) throw this.denied(sm, 'lambda:InvokeFunction', fnArn, d.reason);
      try {
        return await this.lambda.invoke(fnArn, payload);
      } catch (err) {
        if (err instanceof LambdaInvokeError) {
          throw new TaskError(err.errorType, JSON.stringify({ errorType: err.errorType, errorMessage: err.errorMessage, trace: err.trace }));
        }
        throw err;
      }
    };
    if (lambdaArn) return async (input) => limit(await invoke(lambdaArn, input));
    if (invokeIntegration) {
      return async (input) => {
        const fnArn = String(input?.FunctionName ?? '');
        const payload = await invoke(fnArn, input?.Payload);
        return limit({ ExecutedVersion: '$LATEST', Payload: payload, StatusCode: 200 });
      };
    }
    return async (input) => {
      const topicArn = String(input?.TopicArn ?? '');
      const region = topicArn.split(':')[3];
      const client = this.snsClient(sm.roleArn, region);
      try {
        const out = await client.send(new PublishCommand({ TopicArn: topicArn, Message: typeof input.Message === 'string' ? input.Message : JSON.stringify(input.Message), Subject: input.Subject }));
        return limit({ MessageId: out.MessageId, SdkHttpMetadata: { HttpStatusCode: 200 } });
      } catch (err) {
        const e = err as Error;
        throw new TaskError(`SNS.${e.name}`, e.message);
      }
    };
  }

  private snsClient(roleArn: string, region: string): SNSClient {
    const key = `${roleArn}|${region}`;
    let c = this.snsClients.get(key);
    if (!c) {
      c = new SNSClient({ region, endpoint: this.gateway.url, credentials: this.gateway.credentialsFor(roleArn) });
      this.snsClients.set(key, c);
    }
    return c;
  }

  /** StartExecution and wait for the end; never throws for a failed execution. */
  async start(stateMachineArn: string, input: unknown, name = randomUUID()): Promise<ExecutionRecord> {
    const sm = this.machine(stateMachineArn);
    const p = this.prepared.get(sm.arn)!;
    if (JSON.stringify(p.definition).includes('"DISTRIBUTED"') || this.notes.some((n) => n.startsWith(`${sm.name}:`))) {
      const d = this.gateway.authorize(sm.roleArn, 'states:StartExecution', sm.arn);
      if (!d.allowed) this.notes.push(`${sm.name}: its role may not start the child executions of its DISTRIBUTED Map (${d.reason})`);
    }
    const executionArn = sm.arn.replace(':stateMachine:', ':execution:') + `:${name}`;
    const invocations: Record<string, number> = {};
    const retried: Record<string, number> = {};
    const failures: ExecutionRecord['failures'] = [];
    const tasks: ExecutionRecord['tasks'] = [];
    const handlers: Record<string, (i: any) => Promise<any>> = {};
    for (const [state, h] of Object.entries(p.handlers)) {
      const res = this.resourceOf(p.definition, state);
      handlers[state] = async (i) => {
        const fn = res.split(':').pop()!;
        invocations[fn] = (invocations[fn] ?? 0) + 1;
        const t: ExecutionRecord['tasks'][number] = { state, resource: res, input: i };
        tasks.push(t);
        try {
          t.output = await h(i);
          return t.output;
        } catch (err) {
          t.error = `${(err as Error).name}: ${(err as Error).message}`;
          throw err;
        }
      };
    }
    const waitMs = this.o.waitMs ?? 5;
    const retryMs = this.o.retryMs ?? 5;
    const startedAt = Date.now();
    const execution = p.machine.run(input as never, {
      overrides: {
        taskResourceLocalHandlers: handlers,
        waitTimeOverrides: Object.fromEntries(p.waits.map((w) => [w, waitMs])),
        retryIntervalOverrides: Object.fromEntries(p.retries.map((r) => [r, retryMs])),
      },
      context: {
        Execution: { Id: executionArn, Name: name, RoleArn: sm.roleArn, StartTime: new Date(startedAt).toISOString(), Input: input },
        StateMachine: { Id: sm.arn, Name: sm.name },
      } as never,
    });
    const following = (async () => {
      for await (const ev of execution.eventLogs as AsyncIterable<any>) {
        if (ev.type === 'StateRetried') retried[ev.state.name] = (retried[ev.state.name] ?? 0) + 1;
        if (ev.type === 'StateFailed') failures.push({ state: ev.state.name, error: String(ev.Error), cause: String(ev.Cause ?? '') });
      }
    })();
    let rec: ExecutionRecord;
    try {
      const output = await execution.result;
      rec = { executionArn, stateMachineArn: sm.arn, name, input, status: 'SUCCEEDED', output, startedAt, durationMs: Date.now() - startedAt, invocations, retried, failures, tasks };
    } catch (err) {
      const inner = err instanceof ExecutionError ? (err.cause as Error) : (err as Error);
      const status: ExecutionStatus = (err as Error).name === 'ExecutionTimeoutError' ? 'TIMED_OUT' : (err as Error).name === 'ExecutionAbortedError' ? 'ABORTED' : 'FAILED';
      rec = { executionArn, stateMachineArn: sm.arn, name, input, status, error: inner?.name ?? 'Error', cause: inner?.message, startedAt, durationMs: Date.now() - startedAt, invocations, retried, failures, tasks };
    }
    await following.catch(() => undefined);
    this.executions.push(rec);
    this.afterExecution(sm, rec);
    return rec;
  }

  private resourceOf(def: Record<string, any>, state: string): string {
    let r = '';
    eachState(def, (n, s) => { if (n === state && s.Type === 'Task') r = String(s.Parameters?.FunctionName ?? s.Resource); });
    return r;
  }

  /** EventBridge and CloudWatch, after an execution ended. */
  private afterExecution(sm: StateMachineInfo, rec: ExecutionRecord): void {
    const account = this.model.stacks.find((s) => s.name === sm.stack)!.account;
    const event = {
      version: '0', id: randomUUID(), 'detail-type': 'Step Functions Execution Status Change', source: 'aws.states', account,
      time: new Date().toISOString(), region: sm.region, resources: [rec.executionArn],
      detail: {
        executionArn: rec.executionArn, stateMachineArn: sm.arn, name: rec.name, status: rec.status,
        startDate: rec.startedAt, stopDate: rec.startedAt + rec.durationMs, input: JSON.stringify(rec.input),
        output: rec.output === undefined ? null : JSON.stringify(rec.output), error: rec.error ?? null, cause: rec.cause ?? null,
      },
    };
    for (const rule of this.model.rules) {
      if (rule.region !== sm.region || rule.state !== 'ENABLED' || !eventMatches(rule.eventPattern, event)) continue;
      for (const t of rule.targets) {
        if (!/:sns:/.test(t.arn)) { this.notes.push(`${rule.name}: target ${t.arn} is not rehearsed (only SNS topics)`); continue; }
        this.deliver(`rule ${rule.name}`, 'events.amazonaws.com', t.arn, targetInput(t, event), { 'aws:SourceArn': rule.arn, 'aws:SourceAccount': account });
      }
    }
    const metric = rec.status === 'FAILED' ? 'ExecutionsFailed' : rec.status === 'TIMED_OUT' ? 'ExecutionsTimedOut' : rec.status === 'ABORTED' ? 'ExecutionsAborted' : 'ExecutionsSucceeded';
    const key = `${metric}|${sm.arn}`;
    this.metrics.set(key, (this.metrics.get(key) ?? 0) + 1);
    for (const alarm of this.model.alarms) this.evaluate(alarm, account);
  }

  private evaluate(alarm: AlarmInfo, account: string): void {
    if (alarm.namespace !== 'AWS/States' || !alarm.dimensions.StateMachineArn) return;
    const value = this.metrics.get(`${alarm.metricName}|${alarm.dimensions.StateMachineArn}`) ?? 0;
    const breaching = compare(alarm.comparison, value, alarm.threshold);
    const before = this.alarmState.get(alarm.arn) ?? 'OK';
    if (breaching && before === 'OK') {
      this.alarmState.set(alarm.arn, 'ALARM');
      const message = JSON.stringify({
        AlarmName: alarm.name, AlarmDescription: alarm.description ?? null, AWSAccountId: account, NewStateValue: 'ALARM',
        NewStateReason: `Threshold Crossed: 1 datapoint [${value}] was ${alarm.comparison} the threshold (${alarm.threshold}).`,
        StateChangeTime: new Date().toISOString(), Region: alarm.region, AlarmArn: alarm.arn, OldStateValue: 'OK',
        Trigger: { MetricName: alarm.metricName, Namespace: alarm.namespace, Statistic: 'SUM', Dimensions: Object.entries(alarm.dimensions).map(([name, value]) => ({ name, value })), Threshold: alarm.threshold },
      });
      for (const a of alarm.alarmActions) {
        if (/:sns:/.test(a)) this.deliver(`alarm ${alarm.name}`, 'cloudwatch.amazonaws.com', a, message, { 'aws:SourceArn': alarm.arn, 'aws:SourceAccount': account });
      }
    } else if (!breaching && before === 'ALARM') this.alarmState.set(alarm.arn, 'OK');
  }

  /** Ends the current 5-minute alarm period: counts restart, alarms without breaching data return to OK. */
  nextAlarmPeriod(): void {
    this.metrics.clear();
    for (const alarm of this.model.alarms) this.alarmState.set(alarm.arn, 'OK');
  }

  private deliver(source: string, principal: string, topicArn: string, message: string, context: Record<string, string>): void {
    try {
      this.gateway.publishAsService(principal, topicArn, message, context);
    } catch (err) {
      // EventBridge and CloudWatch drop a delivery they may not make (a FailedInvocations metric, nothing else).
      this.deliveryFailures.push({ source, principal, topicArn, error: `${(err as Error).name}: ${(err as Error).message}` });
    }
  }

  close(): void {
    for (const c of this.snsClients.values()) c.destroy();
  }
}

function compare(op: string, v: number, t: number): boolean {
  switch (op) {
    case 'GreaterThanOrEqualToThreshold': return v >= t;
    case 'GreaterThanThreshold': return v > t;
    case 'LessThanThreshold': return v < t;
    case 'LessThanOrEqualToThreshold': return v <= t;
    default: throw new Error(`alarm comparison ${op} is not rehearsed`);
  }
}
