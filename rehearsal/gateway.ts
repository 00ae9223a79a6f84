// The rehearsal's AWS: one HTTP server on loopback that every rehearsed
// function's SDK clients talk to (AWS_ENDPOINT_URL points all services at it),
// so that each AWS call is decided by the template's IAM policies before it
// does anything:
//   1. the caller is the role whose credentials signed the request (the access
//      key of the SigV4 Authorization header or presigned query; an unknown
//      key is rejected as AWS rejects it, an unsigned request too); service
//      and region come from the signature's credential scope;
//   2. the operation and its resources come from the request: S3 from method,
//      path (path-style: the SDK uses it for an IP endpoint) and query; KMS,
//      SSM and Secrets Manager from X-Amz-Target (JSON protocol); SNS and RDS
//      from the form body's Action (query protocol);
//   3. each IAM action the real service would check is evaluated (iam.ts:
//      identity policies + bucket / key / topic policy + request context),
//      including the KMS permissions S3 checks for the caller on SSE-KMS
//      objects (kms:GenerateDataKey to write, kms:Decrypt to read); a denial
//      is answered with that service's AccessDenied in its wire format;
//   4. allowed S3 calls are proxied unchanged, bodies streamed, to the
//      S3-compatible server; the other services are fakes that keep state and
//      answer AWS's errors (fakes/*.ts).
// Every call is recorded in `calls` (caller, action, resources, decision,
// status, error), every SNS message in `published`. authorize() and
// publishAsService() give the same decisions for calls made outside the
// gateway: a state machine's role invoking a function, a schedule's role
// starting an execution, EventBridge and CloudWatch publishing to the topic.
//
// Signatures are not verified (the access key identifies the role; nothing
// here defends against forgery), and TLS is not used: requests are evaluated
// with aws:SecureTransport true, as the SDK's HTTPS calls to AWS would be.
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { PolicyEvaluator, isServicePrincipal, type PolicyDocument } from './iam.ts';
import { AwsError, parseQuery, queryError, queryResponse, requestId, xmlEscape, type CallContext } from './fakes/common.ts';
import { KmsFake, type KmsKeySpec } from './fakes/kms.ts';
import { SNS_NS, SnsFake } from './fakes/sns.ts';
import { SecretsManagerFake } from './fakes/secrets-manager.ts';
import { SsmFake } from './fakes/ssm.ts';
import { RDS_NS, RdsFake, type RdsFakeOptions } from './fakes/rds.ts';

export type { PolicyDocument } from './iam.ts';

export interface GatewayOptions {
  account: string;
  /** The S3-compatible server on loopback; allowed S3 calls are forwarded there. */
  s3Endpoint: string;
  /** Resolved identity policies per role. */
  principals: { roleArn: string; policies: PolicyDocument[] }[];
  /** Resolved bucket, key and topic policies. */
  resourcePolicies: { resourceArn: string; policy: PolicyDocument }[];
  kmsKeys: KmsKeySpec[];
  topics: { topicArn: string; kmsMasterKeyId?: string }[];
  seed?: {
    parameters?: { name: string; value: string; type?: string; region?: string; keyId?: string }[];
    secrets?: { name: string; value: string; region?: string; kmsKeyId?: string }[];
    rdsInstances?: { id: string; region: string; engine: string; engineVersion?: string; kmsKeyId?: string; allocatedGiB?: number; instanceClass?: string }[];
    rdsClusters?: { id: string; region: string; engine: string; engineVersion?: string; kmsKeyId?: string; allocatedGiB?: number; instanceClass?: string }[];
  };
  /** Default encryption of buckets (from the template): objects written without an SSE header are encrypted with this key. */
  bucketEncryption?: { bucket: string; kmsKeyArn: string }[];
  /** Region of seeds that name none. @default 'us-east-1' */
  region?: string;
  /** Pace and limits of the RDS fake (Describe calls to availability, snapshot quota, copies in flight). */
  rds?: RdsFakeOptions;
  /** Seed of the KMS keys' secrets: the same seed decrypts what an earlier gateway encrypted. @default random */
  kmsSeed?: string;
}

export interface CallRecord {
  principal: string;
  service: string;
  /** The first IAM action checked (s3:ListBucket for ListObjectsV2), else service:Operation. */
  action: string;
  /** The API operation (ListObjectsV2, Decrypt, Publish...). */
  operation: string;
  resources: string[];
  region: string;
  allowed: boolean;
  status: number;
  error?: string;
  /** Every IAM check made for the call, with the reason of a denial. */
  checks: { action: string; resource: string; allowed: boolean; reason: string }[];
}

export interface Gateway {
  url: string;
  credentialsFor(roleArn: string): { accessKeyId: string; secretAccessKey: string; sessionToken: string };
  authorize(principal: string, action: string, resource: string, context?: Record<string, string | string[]>): { allowed: boolean; reason: string };
  publishAsService(servicePrincipal: string, topicArn: string, message: string, context: Record<string, string>): void;
  calls: CallRecord[];
  published: { topicArn: string; subject?: string; message: string; principal: string }[];
  /** The KMS fake (to disable a key mid-rehearsal). */
  kms: KmsFake;
  /** The RDS fake (to make an instance busy, to list snapshots). */
  rds: RdsFake;
  close(): Promise<void>;
}

interface Caller {
  roleArn: string;
  secretAccessKey: string;
  sessionToken: string;
}

// How each service says "denied", and its status.
const DENIED: Record<string, [string, number]> = {
  s3: ['AccessDenied', 403],
  kms: ['AccessDeniedException', 400],
  ssm: ['AccessDeniedException', 400],
  secretsmanager: ['AccessDeniedException', 400],
  sns: ['AuthorizationError', 403],
  rds: ['AccessDenied', 403],
};
const JSON_TARGETS: Record<string, string> = { kms: 'TrentService', ssm: 'AmazonSSM', secretsmanager: 'secretsmanager' };

export async function startGateway(o: GatewayOptions): Promise<Gateway> {
  const evaluator = await PolicyEvaluator.create(o);
  const region = o.region ?? 'us-east-1';
  const s3 = new URL(o.s3Endpoint);
  if (s3.protocol !== 'http:') throw new Error(`s3Endpoint: expected http://HOST:PORT of the S3-compatible server, got ${o.s3Endpoint}`);
  const kms = new KmsFake(o.account, o.kmsKeys, o.kmsSeed ? Buffer.from(o.kmsSeed) : randomBytes(32));
  const sns = new SnsFake(o.account, o.topics, kms);
  const rds = new RdsFake(o.account, o.seed ?? {}, kms, o.rds);
  const secrets = new SecretsManagerFake(o.account, o.seed?.secrets ?? [], region, kms);
  const jsonFakes: Record<string, { handle(op: string, input: Record<string, unknown>, ctx: CallContext): Record<string, unknown> }> = {
    kms,
    secretsmanager: secrets,
    ssm: new SsmFake(o.account, o.seed?.parameters ?? [], region, kms),
  };
  const bucketKeys = new Map<string, string>();
  for (const [i, b] of (o.bucketEncryption ?? []).entries()) {
    const r = /^arn:aws[a-z-]*:kms:([a-z0-9-]+):/.exec(b.kmsKeyArn)?.[1];
    if (!r || !kms.find(b.kmsKeyArn, r)) throw new Error(`bucketEncryption[${i}].kmsKeyArn: ${b.kmsKeyArn} is not one of kmsKeys`);
    bucketKeys.set(b.bucket, b.kmsKeyArn);
  }
  // Objects written with an explicit SSE-KMS key: their key (S3 remembers it per object).
  const objectKeys = new Map<string, string>();

  const callers = new Map<string, Caller>();
  const byRole = new Map<string, string>();
  const calls: CallRecord[] = [];

  const credentialsFor = (roleArn: string) => {
    if (!evaluator.hasPrincipal(roleArn)) throw new Error(`credentialsFor: ${roleArn} is not one of the gateway's principals`);
    let id = byRole.get(roleArn);
    if (!id) {
      id = `ASIA${randomBytes(10).toString('hex').toUpperCase().slice(0, 16)}`;
      callers.set(id, { roleArn, secretAccessKey: randomBytes(30).toString('base64'), sessionToken: randomBytes(48).toString('base64') });
      byRole.set(roleArn, id);
    }
    const c = callers.get(id)!;
    return { accessKeyId: id, secretAccessKey: c.secretAccessKey, sessionToken: c.sessionToken };
  };

  /** A call context whose checks are recorded in rec and denied with the service's error. */
  const contextFor = (rec: CallRecord, service: string, extra: Record<string, string | string[]> = {}): CallContext => ({
    region: rec.region,
    account: o.account,
    principal: rec.principal,
    authorize(action, resource, context) {
      const d = evaluator.decide({
        principal: rec.principal,
        action,
        resource,
        context: { 'aws:RequestedRegion': rec.region, 'aws:ResourceAccount': o.account, ...extra, ...context },
      });
      rec.checks.push({ action, resource, allowed: d.allowed, reason: d.reason });
      if (!rec.resources.includes(resource)) rec.resources.push(resource);
      if (rec.checks.length === 1) rec.action = action;
      if (!d.allowed) {
        rec.allowed = false;
        const [code, status] = DENIED[service] ?? ['AccessDenied', 403];
        throw new AwsError(code, d.reason, status, { accessDenied: true });
      }
    },
  });

  const newRecord = (principal: string, service: string, operation: string, r: string): CallRecord => {
    const rec: CallRecord = { principal, service, action: `${service}:${operation}`, operation, resources: [], region: r, allowed: true, status: 0, checks: [] };
    calls.push(rec);
    return rec;
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://gateway');
    const auth = credentialScope(req, url);
    const guess = auth?.service ?? guessService(req);
    if (!auth) {
      return sendError(res, guess, new AwsError(guess === 's3' ? 'AccessDenied' : 'MissingAuthenticationTokenException', 'Request is missing Authentication Token', 403), req.method === 'HEAD');
    }
    const caller = callers.get(auth.accessKeyId);
    if (!caller) {
      const e =
        auth.service === 's3'
          ? new AwsError('InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist in our records.', 403)
          : auth.service in JSON_TARGETS
            ? new AwsError('UnrecognizedClientException', 'The security token included in the request is invalid.', 400)
            : new AwsError('InvalidClientTokenId', 'The security token included in the request is invalid.', 403);
      calls.push({ principal: `unknown access key ${auth.accessKeyId}`, service: auth.service, action: `${auth.service}:?`, operation: '?', resources: [], region: auth.region, allowed: false, status: e.status, error: e.code, checks: [] });
      return sendError(res, auth.service, e, req.method === 'HEAD');
    }
    if (auth.service === 's3') return handleS3(req, res, url, caller.roleArn, auth.region);
    const body = await readBody(req, 16 * 1024 * 1024);
    if (auth.service in JSON_TARGETS) {
      const target = String(req.headers['x-amz-target'] ?? '');
      const [prefix, op = ''] = target.split('.');
      const rec = newRecord(caller.roleArn, auth.service, op || '?', auth.region);
      const fake = jsonFakes[auth.service];
      try {
        if (prefix !== JSON_TARGETS[auth.service] || !op) throw new AwsError('UnknownOperationException', `unknown X-Amz-Target ${target}`);
        if (!fake) throw new AwsError('UnknownOperationException', `the rehearsal has no ${auth.service} yet`);
        let input: Record<string, unknown>;
        try {
          input = body.length ? (JSON.parse(body.toString('utf8')) as Record<string, unknown>) : {};
        } catch {
          throw new AwsError('SerializationException', 'the request body is not JSON');
        }
        const out = fake.handle(op, input, contextFor(rec, auth.service));
        rec.status = 200;
        return sendJson(res, 200, out);
      } catch (err) {
        const e = asAwsError(err);
        rec.status = e.status;
        rec.error = e.code;
        return sendJson(res, e.status, { __type: e.code, message: e.message }, e.code);
      }
    }
    const queryFake = auth.service === 'sns' ? { fake: sns, ns: SNS_NS } : auth.service === 'rds' ? { fake: rds, ns: RDS_NS } : undefined;
    if (queryFake) {
      const p = parseQuery(body.toString('utf8'));
      const op = p.get('Action') ?? '';
      const rec = newRecord(caller.roleArn, auth.service, op || '?', auth.region);
      try {
        const out = queryFake.fake.handle(op, p, contextFor(rec, auth.service));
        rec.status = 200;
        return sendXml(res, 200, queryResponse(op, queryFake.ns, out));
      } catch (err) {
        const e = asAwsError(err);
        rec.status = e.status;
        rec.error = e.code;
        return sendXml(res, e.status, queryError(queryFake.ns, e));
      }
    }
    const rec = newRecord(caller.roleArn, auth.service, '?', auth.region);
    const e = new AwsError('UnknownService', `the rehearsal's gateway does not serve ${auth.service}`, 400);
    rec.status = e.status;
    rec.error = e.code;
    return sendJson(res, e.status, { __type: e.code, message: e.message }, e.code);
  }

  async function handleS3(req: IncomingMessage, res: ServerResponse, url: URL, roleArn: string, r: string): Promise<void> {
    const op = s3Operation(req, url);
    const rec = newRecord(roleArn, 's3', op.operation, r);
    const ctx = contextFor(rec, 's3');
    const head = req.method === 'HEAD';
    let body: Buffer | undefined;
    let readKms: string | undefined;
    let wroteKms: string | undefined;
    try {
      for (const c of op.checks) ctx.authorize(c.action, c.resource, c.context);
      if (op.operation === 'DeleteObjects') {
        body = await readBody(req, 16 * 1024 * 1024);
        for (const key of deleteKeys(body)) ctx.authorize('s3:DeleteObject', `arn:aws:s3:::${op.bucket}/${key}`);
      }
      // SSE-KMS: S3 asks KMS for the caller, so the caller needs the key.
      const via = { viaService: `s3.${r}.amazonaws.com` };
      if (op.writes) {
        const sse = String(req.headers['x-amz-server-side-encryption'] ?? '');
        const named = req.headers['x-amz-server-side-encryption-aws-kms-key-id'];
        const keyRef = sse.startsWith('aws:kms') ? (named ? String(named) : undefined) : sse ? undefined : bucketKeys.get(op.bucket);
        if (keyRef) {
          const k = kms.find(keyRef, /^arn:[^:]+:kms:([^:]+):/.exec(keyRef)?.[1] ?? r);
          if (!k) throw new AwsError('KMS.NotFoundException', `Invalid keyId ${keyRef}`, 400);
          const objectArn = `arn:aws:s3:::${op.bucket}/${op.key}`;
          kms.authorize(ctx, 'GenerateDataKey', k, { keyId: keyRef, encryptionContext: { 'aws:s3:arn': objectArn }, ...via });
          if (op.operation === 'CreateMultipartUpload') kms.authorize(ctx, 'Decrypt', k, { keyId: keyRef, encryptionContext: { 'aws:s3:arn': objectArn }, ...via });
          if (k.state !== 'Enabled') throw new AwsError('KMS.DisabledException', `${k.arn} is ${k.state}`, 400);
          wroteKms = k.arn;
        }
      }
      if (op.reads) readKms = objectKeys.get(`${op.reads.bucket}/${op.reads.key}`) ?? bucketKeys.get(op.reads.bucket);
      if (readKms && op.reads && op.operation === 'CopyObject') {
        const k = kms.find(readKms, /^arn:[^:]+:kms:([^:]+):/.exec(readKms)![1])!;
        kms.authorize(ctx, 'Decrypt', k, { encryptionContext: { 'aws:s3:arn': `arn:aws:s3:::${op.reads.bucket}/${op.reads.key}` }, ...via });
      }
    } catch (err) {
      req.resume();
      const e = asAwsError(err);
      rec.status = e.status;
      rec.error = e.code;
      return sendError(res, 's3', e, head);
    }
    const headers: http.OutgoingHttpHeaders = { ...req.headers, host: s3.host };
    delete headers.expect;
    delete headers.connection;
    if (typeof headers.authorization === 'string') headers.authorization = headers.authorization.replace(/Credential=[^/]+\//, 'Credential=S3RVER/');
    const upstreamUrl = new URL(url.pathname + url.search, o.s3Endpoint);
    if (upstreamUrl.searchParams.has('X-Amz-Credential')) {
      upstreamUrl.searchParams.set('X-Amz-Credential', upstreamUrl.searchParams.get('X-Amz-Credential')!.replace(/^[^/]+\//, 'S3RVER/'));
    }
    await new Promise<void>((resolve) => {
      const up = http.request(upstreamUrl, { method: req.method, headers }, (ur) => {
        const status = ur.statusCode ?? 502;
        const getsBody = op.operation === 'GetObject' && status >= 200 && status < 300;
        if (getsBody && readKms) {
          const k = kms.find(readKms, /^arn:[^:]+:kms:([^:]+):/.exec(readKms)![1])!;
          try {
            kms.authorize(ctx, 'Decrypt', k, { encryptionContext: { 'aws:s3:arn': `arn:aws:s3:::${op.bucket}/${op.key}` }, viaService: `s3.${r}.amazonaws.com` });
            if (k.state !== 'Enabled') throw new AwsError('KMS.DisabledException', `${k.arn} is ${k.state}`, 400);
          } catch (err) {
            ur.destroy();
            const e = asAwsError(err);
            rec.status = e.status;
            rec.error = e.code;
            sendError(res, 's3', e, head);
            return resolve();
          }
        }
        const out = { ...ur.headers };
        const sseKey = status < 300 ? (wroteKms ?? (op.operation === 'GetObject' || op.operation === 'HeadObject' ? readKms : undefined)) : undefined;
        if (sseKey) {
          out['x-amz-server-side-encryption'] = 'aws:kms';
          out['x-amz-server-side-encryption-aws-kms-key-id'] = sseKey;
        }
        if (status < 300 && (op.operation === 'PutObject' || op.operation === 'CompleteMultipartUpload' || op.operation === 'CopyObject')) {
          const k = `${op.bucket}/${op.key}`;
          if (wroteKms && wroteKms !== bucketKeys.get(op.bucket)) objectKeys.set(k, wroteKms);
          else objectKeys.delete(k);
        }
        rec.status = status;
        if (status >= 400) rec.error = `s3 ${status}`;
        res.writeHead(status, out);
        ur.pipe(res);
        ur.on('end', resolve);
        ur.on('error', () => {
          res.destroy();
          resolve();
        });
      });
      up.on('error', (err) => {
        rec.status = 502;
        rec.error = `S3 server unreachable: ${err.message}`;
        if (!res.headersSent) sendError(res, 's3', new AwsError('ServiceUnavailable', `the S3 server at ${o.s3Endpoint} is unreachable: ${err.message}`, 503), head);
        else res.destroy();
        resolve();
      });
      if (body) up.end(body);
      else req.pipe(up);
    });
  }

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { __type: 'InternalFailure', message: `rehearsal gateway: ${(err as Error)?.stack ?? String(err)}` }, 'InternalFailure');
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;

  return {
    url: `http://127.0.0.1:${port}`,
    credentialsFor,
    authorize(principal, action, resource, context) {
      const rec = newRecord(principal, action.split(':')[0], action.split(':')[1] ?? action, /^arn:[^:]+:[^:]+:([a-z0-9-]*):/.exec(resource)?.[1] || region);
      try {
        contextFor(rec, rec.service).authorize(action, resource, context);
        rec.status = 200;
        return { allowed: true, reason: rec.checks[0].reason };
      } catch (err) {
        const e = asAwsError(err);
        rec.status = e.status;
        rec.error = e.code;
        return { allowed: false, reason: e.message };
      }
    },
    publishAsService(servicePrincipal, topicArn, message, context) {
      if (!isServicePrincipal(servicePrincipal)) throw new Error(`publishAsService: ${servicePrincipal} is not a service principal (NAME.amazonaws.com)`);
      const r = /^arn:[^:]+:sns:([a-z0-9-]+):/.exec(topicArn)?.[1] ?? region;
      const rec = newRecord(servicePrincipal, 'sns', 'Publish', r);
      try {
        sns.publish({ TopicArn: topicArn, Message: message }, contextFor(rec, 'sns', context));
        rec.status = 200;
      } catch (err) {
        const e = asAwsError(err);
        rec.status = e.status;
        rec.error = e.code;
        throw e;
      }
    },
    calls,
    published: sns.published,
    kms,
    rds,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

// ---- request parsing ----

/** Access key, region and service of a SigV4-signed request (header or presigned query). */
function credentialScope(req: IncomingMessage, url: URL): { accessKeyId: string; region: string; service: string } | undefined {
  const h = req.headers.authorization;
  const cred = typeof h === 'string' ? /Credential=([^,\s]+)/.exec(h)?.[1] : (url.searchParams.get('X-Amz-Credential') ?? undefined);
  if (!cred) return undefined;
  const m = /^([^/]+)\/\d{8}\/([^/]+)\/([^/]+)\/aws4_request$/.exec(cred);
  return m ? { accessKeyId: m[1], region: m[2], service: m[3] } : undefined;
}

function guessService(req: IncomingMessage): string {
  const t = String(req.headers['x-amz-target'] ?? '');
  for (const [svc, prefix] of Object.entries(JSON_TARGETS)) if (t.startsWith(`${prefix}.`)) return svc;
  return String(req.headers['content-type'] ?? '').includes('x-www-form-urlencoded') ? 'sns' : 's3';
}

interface S3Op {
  operation: string;
  bucket: string;
  key: string;
  checks: { action: string; resource: string; context?: Record<string, string | string[]> }[];
  /** An object write that S3 encrypts (SSE-KMS applies). */
  writes: boolean;
  /** The object whose bytes S3 reads for the caller (GetObject, the source of CopyObject). */
  reads?: { bucket: string; key: string };
}

const BUCKET_GET: Record<string, [string, string]> = {
  location: ['GetBucketLocation', 's3:GetBucketLocation'],
  uploads: ['ListMultipartUploads', 's3:ListBucketMultipartUploads'],
  versions: ['ListObjectVersions', 's3:ListBucketVersions'],
  policy: ['GetBucketPolicy', 's3:GetBucketPolicy'],
  encryption: ['GetBucketEncryption', 's3:GetEncryptionConfiguration'],
  versioning: ['GetBucketVersioning', 's3:GetBucketVersioning'],
  tagging: ['GetBucketTagging', 's3:GetBucketTagging'],
  acl: ['GetBucketAcl', 's3:GetBucketAcl'],
  lifecycle: ['GetBucketLifecycleConfiguration', 's3:GetLifecycleConfiguration'],
  'object-lock': ['GetObjectLockConfiguration', 's3:GetBucketObjectLockConfiguration'],
  cors: ['GetBucketCors', 's3:GetBucketCORS'],
  replication: ['GetBucketReplication', 's3:GetReplicationConfiguration'],
};

/** The S3 operation of a path-style request and the IAM checks S3 makes for it. */
export function s3Operation(req: Pick<IncomingMessage, 'method' | 'headers'>, url: URL): S3Op {
  const [, rawBucket = '', ...rest] = url.pathname.split('/');
  const bucket = decodeURIComponent(rawBucket);
  const key = decodeURIComponent(rest.join('/'));
  const q = url.searchParams;
  const method = req.method ?? 'GET';
  const bucketArn = `arn:aws:s3:::${bucket}`;
  const objectArn = `${bucketArn}/${key}`;
  const op = (operation: string, action: string, resource: string, extra: Partial<S3Op> = {}, context?: Record<string, string | string[]>): S3Op => ({
    operation, bucket, key, checks: [{ action, resource, context }], writes: false, ...extra,
  });
  if (!bucket) return op('ListBuckets', 's3:ListAllMyBuckets', '*');
  if (!key) {
    if (method === 'GET' || method === 'HEAD') {
      if (method === 'HEAD') return op('HeadBucket', 's3:ListBucket', bucketArn);
      for (const [sub, [operation, action]] of Object.entries(BUCKET_GET)) if (q.has(sub)) return op(operation, action, bucketArn);
      const context: Record<string, string> = {};
      for (const [k, name] of [['prefix', 's3:prefix'], ['delimiter', 's3:delimiter'], ['max-keys', 's3:max-keys']] as const) {
        const v = q.get(k);
        if (v !== null) context[name] = v;
      }
      return op(q.get('list-type') === '2' ? 'ListObjectsV2' : 'ListObjects', 's3:ListBucket', bucketArn, {}, context);
    }
    if (method === 'POST' && q.has('delete')) return { operation: 'DeleteObjects', bucket, key, checks: [], writes: false };
    if (method === 'PUT') return op('CreateBucket', 's3:CreateBucket', bucketArn);
    if (method === 'DELETE') return op('DeleteBucket', 's3:DeleteBucket', bucketArn);
    return op(`${method} bucket`, 's3:ListBucket', bucketArn);
  }
  const versioned = q.has('versionId');
  switch (method) {
    case 'GET':
      if (q.has('tagging')) return op('GetObjectTagging', versioned ? 's3:GetObjectVersionTagging' : 's3:GetObjectTagging', objectArn);
      if (q.has('acl')) return op('GetObjectAcl', versioned ? 's3:GetObjectVersionAcl' : 's3:GetObjectAcl', objectArn);
      if (q.has('uploadId')) return op('ListParts', 's3:ListMultipartUploadParts', objectArn);
      return op('GetObject', versioned ? 's3:GetObjectVersion' : 's3:GetObject', objectArn, { reads: { bucket, key } });
    case 'HEAD':
      return op('HeadObject', versioned ? 's3:GetObjectVersion' : 's3:GetObject', objectArn);
    case 'PUT': {
      const source = req.headers['x-amz-copy-source'];
      if (source) {
        const src = decodeURIComponent(String(source).replace(/^\//, '').split('?')[0]);
        const [sb, ...sk] = src.split('/');
        const s: S3Op = {
          operation: q.has('uploadId') ? 'UploadPartCopy' : 'CopyObject',
          bucket,
          key,
          checks: [
            { action: 's3:PutObject', resource: objectArn, context: sseContext(req) },
            { action: 's3:GetObject', resource: `arn:aws:s3:::${src}` },
          ],
          writes: !q.has('uploadId'),
          reads: { bucket: sb, key: sk.join('/') },
        };
        return s;
      }
      if (q.has('tagging')) return op('PutObjectTagging', 's3:PutObjectTagging', objectArn);
      if (q.has('acl')) return op('PutObjectAcl', 's3:PutObjectAcl', objectArn);
      if (q.has('uploadId')) return op('UploadPart', 's3:PutObject', objectArn);
      return op('PutObject', 's3:PutObject', objectArn, { writes: true }, sseContext(req));
    }
    case 'POST':
      if (q.has('uploads')) return op('CreateMultipartUpload', 's3:PutObject', objectArn, { writes: true }, sseContext(req));
      if (q.has('uploadId')) return op('CompleteMultipartUpload', 's3:PutObject', objectArn);
      if (q.has('restore')) return op('RestoreObject', 's3:RestoreObject', objectArn);
      return op('POST object', 's3:PutObject', objectArn);
    case 'DELETE':
      if (q.has('uploadId')) return op('AbortMultipartUpload', 's3:AbortMultipartUpload', objectArn);
      if (q.has('tagging')) return op('DeleteObjectTagging', 's3:DeleteObjectTagging', objectArn);
      return op('DeleteObject', versioned ? 's3:DeleteObjectVersion' : 's3:DeleteObject', objectArn);
  }
  return op(`${method} object`, 's3:GetObject', objectArn);
}

function sseContext(req: Pick<IncomingMessage, 'headers'>): Record<string, string> {
  const out: Record<string, string> = {};
  const sse = req.headers['x-amz-server-side-encryption'];
  if (sse) out['s3:x-amz-server-side-encryption'] = String(sse);
  const key = req.headers['x-amz-server-side-encryption-aws-kms-key-id'];
  if (key) out['s3:x-amz-server-side-encryption-aws-kms-key-id'] = String(key);
  return out;
}

/** The keys of a DeleteObjects request body (<Delete><Object><Key>k</Key></Object>...). */
function deleteKeys(body: Buffer): string[] {
  const unescape = (s: string) => s.replace(/&(lt|gt|amp|quot|apos|#(\d+)|#x([0-9a-fA-F]+));/g, (_m, n: string, d?: string, x?: string) =>
    d ? String.fromCodePoint(Number(d)) : x ? String.fromCodePoint(parseInt(x, 16)) : ({ lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" } as Record<string, string>)[n]);
  return [...body.toString('utf8').matchAll(/<Key>([\s\S]*?)<\/Key>/g)].map((m) => unescape(m[1]));
}

async function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of req) {
    n += (c as Buffer).length;
    if (n > max) throw new AwsError('RequestEntityTooLarge', `request body over ${max} bytes`, 413);
    parts.push(c as Buffer);
  }
  return Buffer.concat(parts);
}

function asAwsError(err: unknown): AwsError {
  if (err instanceof AwsError) return err;
  return new AwsError('InternalFailure', `rehearsal gateway: ${(err as Error)?.stack ?? String(err)}`, 500);
}

function sendJson(res: ServerResponse, status: number, body: unknown, errorType?: string): void {
  const text = JSON.stringify(body, (_k, v: unknown) => {
    if (v && typeof v === 'object' && (v as { type?: string }).type === 'Buffer' && Array.isArray((v as { data?: unknown }).data)) {
      return Buffer.from((v as { data: number[] }).data).toString('base64');
    }
    if (v instanceof Uint8Array) return Buffer.from(v).toString('base64');
    return v;
  });
  res.writeHead(status, {
    'content-type': 'application/x-amz-json-1.1',
    'content-length': Buffer.byteLength(text),
    'x-amzn-requestid': requestId(),
    ...(errorType ? { 'x-amzn-errortype': errorType } : {}),
  });
  res.end(text);
}

function sendXml(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'content-type': 'text/xml', 'content-length': Buffer.byteLength(text), 'x-amzn-requestid': requestId() });
  res.end(text);
}

function sendError(res: ServerResponse, service: string, e: AwsError, head: boolean): void {
  if (service === 's3') {
    const id = requestId();
    const text = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${xmlEscape(e.code)}</Code><Message>${xmlEscape(e.message)}</Message><RequestId>${id}</RequestId><HostId>${createHash('sha256').update(id).digest('base64')}</HostId></Error>`;
    res.writeHead(e.status, { 'content-type': 'application/xml', 'x-amz-request-id': id, ...(head ? {} : { 'content-length': Buffer.byteLength(text) }) });
    res.end(head ? undefined : text);
    return;
  }
  if (service === 'sns') return sendXml(res, e.status, queryError(SNS_NS, e));
  if (service === 'rds') return sendXml(res, e.status, queryError('http://rds.amazonaws.com/doc/2014-10-31/', e));
  sendJson(res, e.status, { __type: e.code, message: e.message }, e.code);
}
