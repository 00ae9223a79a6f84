// Database credentials from AWS Secrets Manager, for every database kind
// (postgres, vector, redis, mongodb), as a source (`secretArn` in the
// component's settings) and as a restore target (`secretArn` in the target
// options). On AWS this is the only way credentials reach the handlers: the
// stacks set no environment variables with passwords, and synth refuses
// settings that read one (infra/deploy-config.ts).
//
// The secret is JSON in the layout RDS, DocumentDB and ElastiCache (and their
// rotation functions) use:
//   {"username": "...", "password": "...", "host": "...", "port": 5432, "dbname": "..."}
// (DocumentDB secrets have no dbname; ElastiCache user secrets only username
// and password), or a connection string in a `uri` field. What each kind reads
// is documented with its settings; parseDatabaseSecret only checks the shape.
//
// Reads are cached for one handler invocation (secretScope, which lazyHandler
// wraps around every invocation): a redis backup connecting once per logical
// database, or a restore and its validation in one process, reads the secret
// once, while a rotated secret is seen by the next invocation. Outside a scope
// (the CLI) every read goes to Secrets Manager.
//
// Errors name the component's field and the secret's ARN, never a value: the
// message of an error ends up in the execution history and in alerts.
import { AsyncLocalStorage } from 'node:async_hooks';
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { NotFoundError, PermanentError, ThrottledError, RetryableError } from '../core/errors.ts';

export const SECRET_ARN = /^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$/;
export const SECRET_ARN_MESSAGE = 'expected a Secrets Manager secret ARN (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME)';

/** The fields memvault reads from a database secret (other fields, e.g. engine, are ignored). */
export interface DatabaseSecret {
  username?: string;
  password?: string;
  host?: string;
  port?: number;
  dbname?: string;
  /** A full connection string (mongodb://..., postgres://..., rediss://...). */
  uri?: string;
  /** DocumentDB secrets: TLS required. */
  ssl?: boolean;
}

// The SDK loads on first use, so configs without a secret never pay its memory.
let sdkModule: Promise<typeof import('@aws-sdk/client-secrets-manager')> | undefined;
const sdk = () => (sdkModule ??= import('@aws-sdk/client-secrets-manager'));

let clientFactory = async (region: string): Promise<SecretsManagerClient> => new (await sdk()).SecretsManagerClient({ region });
const clients = new Map<string, Promise<SecretsManagerClient>>();

/** Tests may replace how the Secrets Manager client of a region is built. */
export function setSecretsClientFactory(f: (region: string) => SecretsManagerClient): void {
  clientFactory = async (region) => f(region);
  clients.clear();
}

function clientFor(region: string): Promise<SecretsManagerClient> {
  let c = clients.get(region);
  if (!c) {
    c = clientFactory(region);
    c.catch(() => clients.delete(region));
    clients.set(region, c);
  }
  return c;
}

const scope = new AsyncLocalStorage<Map<string, Promise<DatabaseSecret>>>();

/** Runs `fn` with its own secret cache: each secret is read at most once inside it. */
export function secretScope<T>(fn: () => Promise<T>): Promise<T> {
  return scope.run(new Map(), fn);
}

const THROTTLING = /Throttl|TooManyRequests|RequestLimitExceeded/;
const TRANSIENT = /InternalServiceError|InternalFailure|ServiceUnavailable|TimeoutError|NetworkingError|ECONNRESET|ETIMEDOUT|EAI_AGAIN/;

/**
 * Reads and parses the database secret `arn` for `field` (e.g.
 * `components.episodic.secretArn` or `restore target of episodic: secretArn`).
 * Throttling is a ThrottledError and a transient failure a RetryableError (the
 * state machine retries both); a missing secret is a NotFoundError; anything
 * else (no permission, no value, not a JSON object) a PermanentError.
 */
export function readDatabaseSecret(arn: string, field: string): Promise<DatabaseSecret> {
  const cache = scope.getStore();
  const cached = cache?.get(arn);
  if (cached) return cached;
  const p = fetchSecret(arn, field);
  if (cache) {
    cache.set(arn, p);
    // A failed read is not remembered: a retry inside the invocation reads again.
    p.catch(() => cache.delete(arn));
  }
  return p;
}

async function fetchSecret(arn: string, field: string): Promise<DatabaseSecret> {
  if (!SECRET_ARN.test(arn)) throw new PermanentError(`${field}: ${SECRET_ARN_MESSAGE}, got ${JSON.stringify(arn)}`);
  const region = arn.split(':')[3];
  let out;
  try {
    const client = await clientFor(region);
    out = await client.send(new (await sdk()).GetSecretValueCommand({ SecretId: arn }));
  } catch (err) {
    const name = (err as Error).name ?? '';
    const code = (err as { code?: string }).code ?? '';
    if (THROTTLING.test(name)) throw new ThrottledError(`${field}: Secrets Manager throttled reading ${arn} (${name}); retry later`, { cause: err });
    if (TRANSIENT.test(name) || TRANSIENT.test(code)) throw new RetryableError(`${field}: Secrets Manager failed reading ${arn} (${name || code}); retry later`, { cause: err });
    if (name === 'ResourceNotFoundException') throw new NotFoundError(`${field}: secret ${arn} does not exist (or is scheduled for deletion)`);
    if (name === 'AccessDeniedException') {
      throw new PermanentError(`${field}: cannot read ${arn}: AccessDeniedException (the handler's role needs secretsmanager:GetSecretValue on it, and kms:Decrypt on its key when it is a customer managed key)`, { cause: err });
    }
    throw new PermanentError(`${field}: cannot read ${arn}: ${name}`, { cause: err });
  }
  const text = out.SecretString ?? (out.SecretBinary ? Buffer.from(out.SecretBinary).toString('utf8') : undefined);
  if (text === undefined) throw new PermanentError(`${field}: secret ${arn} has no value`);
  return parseDatabaseSecret(text, arn, field);
}

/** Checks the JSON layout; the message never quotes the secret's text. */
export function parseDatabaseSecret(text: string, arn: string, field: string): DatabaseSecret {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new PermanentError(`${field}: secret ${arn} is not JSON; store {"username", "password", "host", "port", "dbname"} (the RDS layout) or {"uri": "..."}`);
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new PermanentError(`${field}: secret ${arn} is not a JSON object; store {"username", "password", "host", "port", "dbname"} (the RDS layout) or {"uri": "..."}`);
  }
  const d = doc as Record<string, unknown>;
  const out: DatabaseSecret = {};
  for (const k of ['username', 'password', 'host', 'dbname', 'uri'] as const) {
    if (d[k] === undefined || d[k] === null) continue;
    if (typeof d[k] !== 'string') throw new PermanentError(`${field}: secret ${arn}: field "${k}" must be a string, got ${typeof d[k]}`);
    out[k] = d[k] as string;
  }
  if (d.port !== undefined && d.port !== null && d.port !== '') {
    const port = Number(d.port);
    if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new PermanentError(`${field}: secret ${arn}: field "port" must be a port number`);
    out.port = port;
  }
  if (d.ssl !== undefined) out.ssl = d.ssl === true || d.ssl === 'true';
  return out;
}

/** The secret's `field`, or a PermanentError naming the component's field, the ARN and what is missing. */
export function requireSecretField<K extends keyof DatabaseSecret>(s: DatabaseSecret, key: K, arn: string, field: string, why: string): NonNullable<DatabaseSecret[K]> {
  const v = s[key];
  if (v === undefined || v === '') throw new PermanentError(`${field}: secret ${arn} has no "${key}" field (${why})`);
  return v as NonNullable<DatabaseSecret[K]>;
}

// A URL's user info: user (no ':' or '@'), ':', then the password up to the
// last '@' before the host (an unencoded '@' in a password is taken as URL
// parsers take it). Quotes and whitespace end a URL inside a log line.
const URL_PASSWORD = /\b([a-z][a-z0-9+.-]*:\/\/[^:@/?#\s"'\\]*):[^/?#\s"'\\]*@/gi;

/** A URL with its password replaced by *** (for messages and logs): postgres://u:***@h/db. */
export function redactUrl(url: string): string {
  return url.replace(URL_PASSWORD, '$1:***@');
}

/** `text` with the password of every URL in it replaced by *** (log lines, error messages). */
export function redactUrlsIn(text: string): string {
  return text.replace(URL_PASSWORD, '$1:***@');
}

/** Whether a URL carries a password in its user info. */
export function urlHasPassword(url: string): boolean {
  URL_PASSWORD.lastIndex = 0;
  const r = URL_PASSWORD.test(url);
  URL_PASSWORD.lastIndex = 0;
  return r;
}

/**
 * Every string in `value` (at any depth) that is a URL with a password, as a
 * problem naming its field and showing the URL redacted. Restore requests use
 * it: such a URL would be kept in the execution history and passed from state
 * to state; the target's secretArn names the credentials instead.
 */
export function passwordsInUrls(value: unknown, field: string): string[] {
  const out: string[] = [];
  const walk = (v: unknown, f: string) => {
    if (typeof v === 'string') {
      if (urlHasPassword(v)) out.push(`${f}: ${redactUrl(v)} carries a password, which would be recorded in the execution history; remove it from the URL and name a Secrets Manager secret with the credentials in secretArn`);
    } else if (Array.isArray(v)) v.forEach((x, i) => walk(x, `${f}.${i}`));
    else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) walk(x, `${f}.${k}`);
  };
  walk(value, field);
  return out;
}
