// Lambda, as the rehearsal runs it: each function from its bundled asset in
// cdk.out, never from the source.
//
//   - create: Lambda's checks at CreateFunction, here the 4 KB environment
//     rule (the JSON of the whole Variables map, quotes escaped), failing
//     naming the function; the task root is a copy of the asset with a
//     node_modules that holds only @aws-sdk (the Node 24 runtime provides the
//     SDK; anything else the bundle left external fails as it would on AWS).
//   - an instance is one child process of the runtime's node (Node 24, from
//     node_modules/.bin) running rehearsal/bootstrap.mjs, with exactly the
//     template's environment plus what Lambda sets (AWS_LAMBDA_FUNCTION_NAME,
//     AWS_REGION, ..., role credentials, AWS_ENDPOINT_URL of the gateway), a
//     heap limit derived from MemorySize, and its own /tmp: a fresh directory
//     bound over /tmp in a private mount namespace (unshare -m), so nothing
//     written to /tmp by one function (or one instance) is seen by another.
//   - invoke: an idle warm instance, else a new one (a cold start, measured
//     from spawn to handler ready, plus the first invocation's duration). An
//     invocation past the function's Timeout is killed with its instance and
//     fails as Sandbox.Timedout; an instance that exits mid-invocation fails it
//     as Runtime.ExitError; handler errors keep their name (errorType).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, realpathSync, rmSync, statSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { environmentSize, LAMBDA_ENV_LIMIT, type FunctionInfo } from './template.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BOOTSTRAP = fileURLToPath(new URL('./bootstrap.mjs', import.meta.url));

/** What an instance needs from the gateway (rehearsal/gateway.ts). */
export interface CredentialSource {
  url: string;
  credentialsFor(roleArn: string): { accessKeyId: string; secretAccessKey: string; sessionToken: string };
}

/** A failed invocation as Lambda reports it (and Step Functions sees it: Error = errorType). */
export class LambdaInvokeError extends Error {
  constructor(readonly errorType: string, readonly errorMessage: string, readonly trace: string[] = []) {
    super(errorMessage);
    this.name = errorType;
  }
}

export class LambdaCreateError extends Error {
  override name = 'LambdaCreateError';
}

export interface ColdStart { initMs: number; firstInvokeMs: number }

export interface FunctionStats {
  name: string;
  arn: string;
  bundleBytes: number;
  environmentBytes: number;
  memorySize: number;
  timeoutSeconds: number;
  coldStarts: ColdStart[];
  invocations: number;
  errors: number;
  timeouts: number;
}

export interface LogLine { fn: string; requestId?: string; stream: 'stdout' | 'stderr'; text: string; time: number }

export interface LambdaOptions {
  /** Directory for task roots and instances' /tmp (must not be under /tmp: it is hidden there). */
  workDir: string;
  gateway: CredentialSource;
  /** Replace a function's Timeout (seconds), e.g. to rehearse a timeout quickly. */
  timeoutOverride?: (fn: FunctionInfo) => number | undefined;
  /**
   * What to do with a function over Lambda's 4 KB environment limit: refuse to create it, as Lambda
   * does (default), or create it and list it in `refused` (to rehearse the rest of a deployment anyway).
   */
  environmentLimit?: 'enforce' | 'report';
  /** Every line a function instance writes (stdout / stderr), as CloudWatch Logs would get it. */
  onLog?: (l: LogLine) => void;
}

/**
 * Where an instance sees the host's /tmp: its own /tmp is bound over /tmp, so a
 * repository, node or work directory that lives under the host's /tmp (a clone
 * in /tmp, say) is reached through this view inside the instance's namespace.
 */
export const HOST_TMP_VIEW = '/run/memvault-rehearsal/host-tmp';

/** A host path as an instance sees it (host /tmp paths through HOST_TMP_VIEW). */
export function instancePath(p: string): string {
  return p === '/tmp' || p.startsWith('/tmp/') ? `${HOST_TMP_VIEW}${p.slice('/tmp'.length)}` : p;
}

/** The node of the Lambda runtime: Node 24 from node_modules/.bin. */
export function runtimeNode(): string {
  const bin = path.join(ROOT, 'node_modules', '.bin', 'node');
  const node = existsSync(bin) ? realpathSync(bin) : process.execPath;
  const v = spawnSync(node, ['-p', 'process.versions.node'], { encoding: 'utf8' });
  const major = Number(String(v.stdout).split('.')[0]);
  if (v.status !== 0 || major !== 24) throw new LambdaCreateError(`the Lambda runtime is nodejs24.x, but ${node} is Node ${String(v.stdout).trim() || '(did not run)'}; run npm install (node is a pinned dev dependency)`);
  return node;
}

/** Checks that a private /tmp can be made (unshare -m + bind mount); throws saying what is needed. */
export function checkPrivateTmp(workDir: string): void {
  const probe = path.join(workDir, 'probe-tmp');
  mkdirSync(probe, { recursive: true });
  const r = spawnSync('unshare', ['-m', 'sh', '-c', 'mount --bind "$0" /tmp && test -z "$(ls -A /tmp)"', probe], { encoding: 'utf8' });
  rmSync(probe, { recursive: true, force: true });
  if (r.error || r.status !== 0) {
    throw new LambdaCreateError(
      'each rehearsed Lambda instance needs its own /tmp, made with `unshare -m` and `mount --bind` (root or CAP_SYS_ADMIN, util-linux unshare); ' +
        `this machine refused: ${r.error?.message ?? (r.stderr.trim() || `exit ${r.status}`)}. The rehearsal does not share /tmp between functions instead.`,
    );
  }
}

interface Instance {
  id: number;
  proc: ChildProcess;
  tmp: string;
  busy: boolean;
  invoked: number;
  startedAt: number;
  ready: Promise<number>;
  pending?: { id: string; resolve: (v: unknown) => void; reject: (e: Error) => void };
  dead: boolean;
}

class EmulatedFunction {
  readonly stats: FunctionStats;
  private readonly idle: Instance[] = [];
  private readonly all = new Set<Instance>();
  private next = 0;
  readonly taskRoot: string;

  constructor(readonly info: FunctionInfo, private readonly rt: LambdaRuntime) {
    const bundle = path.join(info.assetDir, 'index.mjs');
    if (!existsSync(bundle)) throw new LambdaCreateError(`${info.name}: asset ${info.assetDir} has no index.mjs`);
    const envBytes = environmentSize(info.environment);
    if (envBytes > LAMBDA_ENV_LIMIT) {
      const e = new LambdaCreateError(
        `${info.name} (${info.stack}.${info.logicalId}): Lambda would refuse to create it: its environment variables are ${envBytes} bytes ` +
          `as Lambda counts them (the JSON of the Variables map), over the ${LAMBDA_ENV_LIMIT}-byte limit`,
      );
      if (rt.o.environmentLimit !== 'report') throw e;
      rt.refused.push(e.message);
    }
    this.stats = {
      name: info.name, arn: info.arn, bundleBytes: statSync(bundle).size, environmentBytes: envBytes,
      memorySize: info.memorySize, timeoutSeconds: info.timeoutSeconds, coldStarts: [], invocations: 0, errors: 0, timeouts: 0,
    };
    // The task root: the asset as Lambda unpacks it, plus the SDK the runtime provides.
    this.taskRoot = path.join(rt.o.workDir, 'task', info.name);
    rmSync(this.taskRoot, { recursive: true, force: true });
    cpSync(info.assetDir, this.taskRoot, { recursive: true });
    mkdirSync(path.join(this.taskRoot, 'node_modules'), { recursive: true });
    // Resolved inside the instance, so through its view of the host's /tmp.
    symlinkSync(instancePath(realpathSync(path.join(ROOT, 'node_modules', '@aws-sdk'))), path.join(this.taskRoot, 'node_modules', '@aws-sdk'));
  }

  get timeoutMs(): number {
    return (this.rt.o.timeoutOverride?.(this.info) ?? this.info.timeoutSeconds) * 1000;
  }

  private env(tmp: string): Record<string, string> {
    const f = this.info;
    const creds = this.rt.o.gateway.credentialsFor(f.roleArn);
    const logGroup = f.logGroupName ?? `/aws/lambda/${f.name}`;
    return {
      // Lambda's reserved variables.
      PATH: `${path.dirname(instancePath(this.rt.node))}:/usr/local/bin:/usr/bin:/bin`,
      LANG: 'en_US.UTF-8',
      TZ: ':UTC',
      LAMBDA_TASK_ROOT: instancePath(this.taskRoot),
      LAMBDA_RUNTIME_DIR: path.dirname(instancePath(BOOTSTRAP)),
      _HANDLER: f.handler,
      AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs24.x',
      AWS_LAMBDA_FUNCTION_NAME: f.name,
      AWS_LAMBDA_FUNCTION_VERSION: '$LATEST',
      AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(f.memorySize),
      AWS_LAMBDA_INITIALIZATION_TYPE: 'on-demand',
      AWS_LAMBDA_LOG_GROUP_NAME: logGroup,
      AWS_LAMBDA_LOG_STREAM_NAME: `${new Date().toISOString().slice(0, 10).replaceAll('-', '/')}/[$LATEST]${randomUUID().replaceAll('-', '')}`,
      AWS_REGION: f.region,
      AWS_DEFAULT_REGION: f.region,
      AWS_ACCESS_KEY_ID: creds.accessKeyId,
      AWS_SECRET_ACCESS_KEY: creds.secretAccessKey,
      AWS_SESSION_TOKEN: creds.sessionToken,
      // The rehearsal's AWS: every SDK call goes to the gateway (IAM evaluation, fakes, s3rver).
      AWS_ENDPOINT_URL: this.rt.o.gateway.url,
      AWS_REQUEST_CHECKSUM_CALCULATION: 'WHEN_REQUIRED',
      AWS_RESPONSE_CHECKSUM_VALIDATION: 'WHEN_REQUIRED',
      // Exactly the template's variables (create() refuses reserved keys, as Lambda does).
      ...f.environment,
    };
  }

  private spawnInstance(): Instance {
    const id = ++this.next;
    const tmp = path.join(this.rt.o.workDir, 'tmp', `${this.info.name}-${id}`);
    mkdirSync(tmp, { recursive: true });
    // Lambda's Node runtime gives V8 about 90% of the function's memory as old space.
    const heapMb = Math.max(64, Math.floor(this.info.memorySize * 0.9));
    const startedAt = performance.now();
    // In a private mount namespace: the host's /tmp stays reachable at HOST_TMP_VIEW
    // (for paths under it), then the instance's own directory is bound over /tmp.
    const proc = spawn('unshare', ['-m', 'sh', '-c', 'mkdir -p "$0" && mount --bind /tmp "$0" && mount --bind "$1" /tmp && cd "$2" && shift 2 && exec "$@"',
      HOST_TMP_VIEW, tmp, instancePath(this.taskRoot), instancePath(this.rt.node), `--max-old-space-size=${heapMb}`, instancePath(BOOTSTRAP)], {
      env: this.env(tmp),
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      detached: true,
    });
    const inst: Instance = { id, proc, tmp, busy: false, invoked: 0, startedAt, ready: undefined as never, dead: false };
    for (const stream of ['stdout', 'stderr'] as const) {
      let buf = '';
      proc[stream]!.setEncoding('utf8');
      proc[stream]!.on('data', (d: string) => {
        buf += d;
        let i: number;
        while ((i = buf.indexOf('\n')) >= 0) {
          this.rt.log({ fn: this.info.name, requestId: inst.pending?.id, stream, text: buf.slice(0, i), time: Date.now() });
          buf = buf.slice(i + 1);
        }
      });
    }
    inst.ready = new Promise<number>((resolve, reject) => {
      const onMsg = (m: any) => {
        if (m?.type === 'ready') { proc.off('message', onMsg); resolve(m.initMs as number); }
        else if (m?.type === 'init-error') { proc.off('message', onMsg); reject(new LambdaInvokeError(m.error.errorType, m.error.errorMessage, m.error.trace)); }
      };
      proc.on('message', onMsg);
      proc.once('exit', (code, sig) => reject(new LambdaInvokeError('Runtime.ExitError', `RequestId: init Error: Runtime exited with error: ${sig ? `signal: ${sig}` : `exit status ${code}`}`)));
    });
    inst.ready.catch(() => undefined);
    proc.on('message', (m: any) => {
      if (m?.type === 'result' && inst.pending && m.id === inst.pending.id) {
        const p = inst.pending;
        inst.pending = undefined;
        if (m.ok) p.resolve(JSON.parse(m.payload));
        else p.reject(new LambdaInvokeError(m.error.errorType, m.error.errorMessage, m.error.trace));
      } else if (m?.type === 'crash' && inst.pending) {
        const p = inst.pending;
        inst.pending = undefined;
        p.reject(new LambdaInvokeError(m.error.errorType, m.error.errorMessage, m.error.trace));
      }
    });
    proc.once('exit', (code, sig) => {
      inst.dead = true;
      this.discard(inst);
      if (inst.pending) {
        const p = inst.pending;
        inst.pending = undefined;
        p.reject(new LambdaInvokeError('Runtime.ExitError', `RequestId: ${p.id} Error: Runtime exited with error: ${sig ? `signal: ${sig}` : `exit status ${code}`}`));
      }
    });
    this.all.add(inst);
    return inst;
  }

  private discard(inst: Instance): void {
    this.all.delete(inst);
    const i = this.idle.indexOf(inst);
    if (i >= 0) this.idle.splice(i, 1);
    if (!inst.dead && inst.proc.pid) {
      try { process.kill(-inst.proc.pid, 'SIGKILL'); } catch { /* gone already */ }
    }
    rmSync(inst.tmp, { recursive: true, force: true });
  }

  async invoke(event: unknown): Promise<unknown> {
    let inst = this.idle.pop();
    let cold = false;
    if (!inst) { inst = this.spawnInstance(); cold = true; }
    inst.busy = true;
    this.stats.invocations++;
    const requestId = randomUUID();
    const timeoutMs = this.timeoutMs;
    const t0 = performance.now();
    let timer: NodeJS.Timeout | undefined;
    const instance = inst;
    let initMs: number | undefined;
    let t1 = 0;
    try {
      // The init phase (module load) of a cold start is not counted against the invocation's timeout here.
      initMs = await instance.ready;
      t1 = performance.now();
      return await new Promise<unknown>((resolve, reject) => {
        instance.pending = { id: requestId, resolve, reject };
        timer = setTimeout(() => {
          const p = instance.pending;
          instance.pending = undefined;
          this.stats.timeouts++;
          this.discard(instance);
          p?.reject(new LambdaInvokeError('Sandbox.Timedout', `RequestId: ${requestId} Error: Task timed out after ${(timeoutMs / 1000).toFixed(2)} seconds`));
        }, timeoutMs);
        instance.proc.send({ type: 'invoke', id: requestId, event, remainingMs: timeoutMs, functionArn: this.info.arn });
      });
    } catch (err) {
      this.stats.errors++;
      throw err;
    } finally {
      clearTimeout(timer);
      if (cold) this.stats.coldStarts.push({ initMs: initMs ?? performance.now() - t0, firstInvokeMs: initMs === undefined ? NaN : performance.now() - t1 });
      instance.invoked++;
      instance.busy = false;
      if (this.all.has(instance) && !instance.dead) this.idle.push(instance);
    }
  }

  /**
   * Kills the instances running an invocation now, as Lambda does at a timeout: no
   * handler code runs after (no `finally`, no release); the invocations fail.
   * Returns how many were killed.
   */
  killBusy(): number {
    const busy = [...this.all].filter((i) => i.busy && i.pending);
    for (const inst of busy) this.discard(inst);
    return busy.length;
  }

  /** How many invocations are running now. */
  get running(): number {
    return [...this.all].filter((i) => i.busy && i.pending).length;
  }

  async close(): Promise<void> {
    for (const inst of [...this.all]) this.discard(inst);
  }
}

/** Reserved keys Lambda refuses in a function's environment. */
const RESERVED = ['_HANDLER', 'AWS_REGION', 'AWS_DEFAULT_REGION', 'AWS_EXECUTION_ENV', 'AWS_LAMBDA_FUNCTION_NAME', 'AWS_LAMBDA_FUNCTION_MEMORY_SIZE',
  'AWS_LAMBDA_FUNCTION_VERSION', 'AWS_LAMBDA_LOG_GROUP_NAME', 'AWS_LAMBDA_LOG_STREAM_NAME', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY',
  'AWS_SESSION_TOKEN', 'LAMBDA_TASK_ROOT', 'LAMBDA_RUNTIME_DIR', 'AWS_LAMBDA_RUNTIME_API'];

export class LambdaRuntime {
  readonly node: string;
  readonly logs: LogLine[] = [];
  /** Functions Lambda would have refused (environmentLimit 'report'). */
  readonly refused: string[] = [];
  private readonly fns = new Map<string, EmulatedFunction>();

  constructor(readonly o: LambdaOptions) {
    if (path.resolve(o.workDir).startsWith('/tmp/') || path.resolve(o.workDir) === '/tmp') {
      throw new LambdaCreateError(`workDir ${o.workDir}: must not be under /tmp (each instance's /tmp hides it)`);
    }
    mkdirSync(o.workDir, { recursive: true });
    checkPrivateTmp(o.workDir);
    this.node = runtimeNode();
  }

  log(l: LogLine): void {
    this.logs.push(l);
    this.o.onLog?.(l);
  }

  /** CreateFunction: Lambda's checks, then the task root. Throws naming the function. */
  create(info: FunctionInfo): void {
    const reserved = Object.keys(info.environment).filter((k) => RESERVED.includes(k));
    if (reserved.length) throw new LambdaCreateError(`${info.name}: Lambda refuses reserved environment variable(s) ${reserved.join(', ')}`);
    this.fns.set(info.arn, new EmulatedFunction(info, this));
  }

  has(arn: string): boolean {
    return this.fns.has(arn.replace(/:\$LATEST$/, ''));
  }

  /** Synchronous invoke (RequestResponse); rejects with LambdaInvokeError as Lambda reports a failed invocation. */
  invoke(arn: string, event: unknown): Promise<unknown> {
    const f = this.fns.get(arn.replace(/:\$LATEST$/, ''));
    if (!f) return Promise.reject(new LambdaInvokeError('ResourceNotFoundException', `Function not found: ${arn}`));
    return f.invoke(event);
  }

  stats(): FunctionStats[] {
    return [...this.fns.values()].map((f) => f.stats);
  }

  /**
   * Kills the running invocations of a function, as Lambda kills one at its
   * timeout (the rehearsal's cases use it to leave what a timed-out invocation
   * leaves without waiting out the template's Timeout). Returns how many.
   */
  killRunning(arn: string): number {
    return this.fns.get(arn.replace(/:\$LATEST$/, ''))?.killBusy() ?? 0;
  }

  /** How many invocations of the function are running now. */
  running(arn: string): number {
    return this.fns.get(arn.replace(/:\$LATEST$/, ''))?.running ?? 0;
  }

  /** Log lines of one function (or all), for checks that nothing secret was logged. */
  logsOf(fnName?: string): LogLine[] {
    return fnName ? this.logs.filter((l) => l.fn === fnName) : this.logs;
  }

  async close(): Promise<void> {
    await Promise.all([...this.fns.values()].map((f) => f.close()));
  }
}
