// s3:// storage: a vault under a prefix of an S3 bucket, or of any S3-compatible
// endpoint (MinIO, Ceph, s3rver). Objects are stored at `${prefix}/${key}`.
// S3 writes whole objects atomically (one PutObject, no multipart upload), so
// put() needs no temporary object and sweepTemporary has nothing to remove.
// A bounded get (maxBytes) refuses an object by its Content-Length before
// reading the body, and stops a body that runs longer than announced.
//
// SDK errors are mapped onto the two error families: throttling, 5xx and
// network failures become TransientStorageError (retried by RetryingStorage
// and by ASL Retry), a missing object becomes NotFoundError, access denied and
// everything else a PermanentError that names the bucket and the action.
import { NETWORK_CODES, prefixedKey } from './lazy.ts';
import {
  S3Client,
  GetObjectCommand,
  PutObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  DeleteObjectCommand,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { shortRangeMessage, tooLargeMessage, type GetOptions, type Storage, type StoredObject, type SweepReport } from '../../core/ports.ts';
import { normalizePrefix, parseS3Url, type S3Location } from './s3-location.ts';
import {
  ConfigError,
  IntegrityError,
  MemvaultError,
  NotFoundError,
  PermanentError,
  TransientStorageError,
} from '../../core/errors.ts';

export interface S3StorageOptions {
  bucket: string;
  /** Key prefix of the vault inside the bucket; '' for the bucket root. */
  prefix: string;
  region?: string;
  /** An S3-compatible endpoint, e.g. http://127.0.0.1:9000. */
  endpoint?: string;
  /** @default true when endpoint is set, false otherwise */
  forcePathStyle?: boolean;
  /** A ready client (tests, custom credentials); region/endpoint/forcePathStyle are then ignored. */
  client?: S3Client;
}

export { parseS3Url, type S3Location };

export interface S3ClientOptions {
  region?: string;
  endpoint?: string;
  forcePathStyle?: boolean;
  credentials?: S3ClientConfig['credentials'];
}

/**
 * Builds an S3 client. With a custom endpoint: path-style addressing by default,
 * region us-east-1 unless given, and checksums only where the API requires them
 * (S3-compatible servers often reject the SDK's default CRC32 trailers).
 */
export function createS3Client(o: S3ClientOptions = {}): S3Client {
  const config: S3ClientConfig = {};
  if (o.region) config.region = o.region;
  if (o.credentials) config.credentials = o.credentials;
  if (o.endpoint) {
    config.endpoint = o.endpoint;
    config.region ??= 'us-east-1';
    config.forcePathStyle = o.forcePathStyle ?? true;
    config.requestChecksumCalculation = 'WHEN_REQUIRED';
    config.responseChecksumValidation = 'WHEN_REQUIRED';
  } else if (o.forcePathStyle !== undefined) {
    config.forcePathStyle = o.forcePathStyle;
  }
  return new S3Client(config);
}


// Error names and codes a retry can fix.
const TRANSIENT_NAMES = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'ThrottledException',
  'RequestThrottled',
  'RequestThrottledException',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'BandwidthLimitExceeded',
  'ProvisionedThroughputExceededException',
  'ServiceUnavailable',
  'InternalError',
  'RequestTimeout',
  'RequestTimeoutException',
  'TimeoutError',
]);
const NOT_FOUND_NAMES = new Set(['NoSuchKey', 'NotFound']);
const DENIED_NAMES = new Set([
  'AccessDenied',
  'Forbidden',
  'AllAccessDisabled',
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'ExpiredToken',
  'InvalidToken',
]);

interface SdkErrorLike {
  name?: string;
  code?: string;
  message?: string;
  cause?: unknown;
  $metadata?: { httpStatusCode?: number };
}

function status(err: SdkErrorLike): number | undefined {
  return err.$metadata?.httpStatusCode;
}

function isNetworkError(err: unknown, depth = 0): boolean {
  if (!err || typeof err !== 'object' || depth > 4) return false;
  const e = err as SdkErrorLike;
  if (e.code && NETWORK_CODES.has(e.code)) return true;
  if (e.name === 'TimeoutError') return true;
  if (typeof e.message === 'string' && /socket hang up/i.test(e.message)) return true;
  return isNetworkError(e.cause, depth + 1);
}

function isNotFound(err: SdkErrorLike): boolean {
  return (err.name !== undefined && NOT_FOUND_NAMES.has(err.name)) || (status(err) === 404 && err.name !== 'NoSuchBucket');
}

function isTransient(err: SdkErrorLike): boolean {
  const code = status(err);
  if (err.name && TRANSIENT_NAMES.has(err.name)) return true;
  if (code === 429 || (code !== undefined && code >= 500)) return true;
  return isNetworkError(err);
}

export class S3Storage implements Storage {
  readonly url: string;
  readonly bucket: string;
  /** Normalized vault prefix without leading or trailing '/'; '' for the bucket root. */
  readonly prefix: string;
  readonly client: S3Client;
  /** `${prefix}/` or '' — prepended to every key. */
  private readonly base: string;

  constructor(opts: S3StorageOptions) {
    if (!opts.bucket) throw new ConfigError('storage bucket: expected a bucket name, got an empty string');
    this.bucket = opts.bucket;
    this.prefix = normalizePrefix(opts.prefix);
    this.base = this.prefix ? `${this.prefix}/` : '';
    this.url = this.prefix ? `s3://${this.bucket}/${this.prefix}` : `s3://${this.bucket}`;
    this.client =
      opts.client ?? createS3Client({ region: opts.region, endpoint: opts.endpoint, forcePathStyle: opts.forcePathStyle });
  }

  static fromLocation(loc: S3Location): S3Storage {
    const { bucket, prefix } = parseS3Url(loc.url);
    return new S3Storage({ bucket, prefix, region: loc.region, endpoint: loc.endpoint, forcePathStyle: loc.forcePathStyle });
  }

  private objectKey(key: string): string {
    return prefixedKey(this.url, this.base, key);
  }

  /** Maps an SDK or network error onto the vault's error families. */
  private wrap(err: unknown, action: string, key?: string): never {
    if (err instanceof MemvaultError) throw err;
    const e = (err ?? {}) as SdkErrorLike;
    const what = key === undefined ? `${action} ${this.url}` : `${action} ${key} in ${this.url}`;
    const detail = `${e.name ?? 'Error'}${status(e) ? ` (HTTP ${status(e)})` : ''}: ${e.message ?? String(err)}`;
    if (key !== undefined && isNotFound(e)) throw new NotFoundError(`${this.url}: object ${key} not found`);
    if (e.name === 'NoSuchBucket') {
      throw new PermanentError(`${what}: bucket ${this.bucket} does not exist`, { cause: err });
    }
    if ((e.name && DENIED_NAMES.has(e.name)) || status(e) === 403) {
      throw new PermanentError(
        `${what}: access denied to bucket ${this.bucket} for ${action}; check the credentials and the bucket policy (${detail})`,
        { cause: err },
      );
    }
    if (isTransient(e)) throw new TransientStorageError(`${what}: ${detail}`, { cause: err });
    throw new PermanentError(`${what}: ${detail}`, { cause: err });
  }

  async get(key: string, o: GetOptions = {}): Promise<Buffer> {
    const Key = this.objectKey(key);
    try {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key }));
      if (o.maxBytes !== undefined && res.ContentLength !== undefined && res.ContentLength > o.maxBytes) {
        destroyBody(res.Body);
        throw new IntegrityError(tooLargeMessage(this.url, key, res.ContentLength, o.maxBytes), key);
      }
      const data = await bodyToBuffer(res.Body, o.maxBytes, (read) => new IntegrityError(tooLargeMessage(this.url, key, `at least ${read}`, o.maxBytes!), key));
      if (res.ContentLength !== undefined && data.length !== res.ContentLength) {
        throw new TransientStorageError(
          `s3:GetObject ${key} in ${this.url}: body ended after ${data.length} of ${res.ContentLength} bytes`,
        );
      }
      return data;
    } catch (err) {
      this.wrap(err, 's3:GetObject', key);
    }
  }

  /** One ranged GetObject (Range: bytes=offset-end). */
  async getRange(key: string, offset: number, length: number): Promise<Buffer> {
    const Key = this.objectKey(key);
    if (length === 0) return Buffer.alloc(0);
    try {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key, Range: `bytes=${offset}-${offset + length - 1}` }));
      const data = await bodyToBuffer(res.Body, length, (read) => new IntegrityError(tooLargeMessage(this.url, key, `at least ${read}`, length), key));
      if (data.length < length) {
        // The object is shorter than the range (S3 answers what there is): damage, not a bad read.
        if (res.ContentRange && /\/(\d+)$/.test(res.ContentRange) && Number(/\/(\d+)$/.exec(res.ContentRange)![1]) < offset + length) {
          throw new IntegrityError(shortRangeMessage(this.url, key, offset, length, data.length), key);
        }
        throw new TransientStorageError(`s3:GetObject ${key} (range) in ${this.url}: body ended after ${data.length} of ${length} bytes`);
      }
      return data;
    } catch (err) {
      if ((err as SdkErrorLike)?.name === 'InvalidRange' || status((err ?? {}) as SdkErrorLike) === 416) {
        throw new IntegrityError(shortRangeMessage(this.url, key, offset, length, 0), key);
      }
      this.wrap(err, 's3:GetObject', key);
    }
  }

  async put(key: string, parts: Uint8Array | readonly Uint8Array[]): Promise<void> {
    const Key = this.objectKey(key);
    const data = parts instanceof Uint8Array ? parts : Buffer.concat(parts);
    try {
      await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key, Body: data, ContentLength: data.byteLength }));
    } catch (err) {
      this.wrap(err, 's3:PutObject', key);
    }
  }

  async has(key: string): Promise<boolean> {
    const Key = this.objectKey(key);
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key }));
      return true;
    } catch (err) {
      if (isNotFound((err ?? {}) as SdkErrorLike)) return false;
      this.wrap(err, 's3:HeadObject', key);
    }
  }

  async *list(prefix: string): AsyncIterable<StoredObject> {
    const Prefix = this.base + prefix;
    let ContinuationToken: string | undefined;
    do {
      let page;
      try {
        page = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix, ContinuationToken }));
      } catch (err) {
        this.wrap(err, 's3:ListBucket');
      }
      for (const o of page.Contents ?? []) {
        if (!o.Key || !o.Key.startsWith(this.base)) continue;
        const key = o.Key.slice(this.base.length);
        if (!key || key.endsWith('/')) continue; // folder markers made by consoles
        yield { key, size: o.Size ?? 0, modified: o.LastModified };
      }
      if (page.IsTruncated && !page.NextContinuationToken) {
        throw new PermanentError(`s3:ListBucket ${this.url}: truncated listing without a continuation token`);
      }
      ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (ContinuationToken);
  }

  async delete(key: string): Promise<void> {
    const Key = this.objectKey(key);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key }));
    } catch (err) {
      if (isNotFound((err ?? {}) as SdkErrorLike)) return;
      this.wrap(err, 's3:DeleteObject', key);
    }
  }

  /** Nothing to sweep: every put is one atomic PutObject (no multipart uploads left behind). */
  async sweepTemporary(_olderThanMs: number): Promise<SweepReport> {
    return { removed: 0, bytes: 0 };
  }
}

/** Stops a GetObject body that will not be read, so its bytes are not downloaded. */
function destroyBody(body: unknown): void {
  (body as { destroy?: () => void } | undefined)?.destroy?.();
}

/**
 * Reads a GetObject body (a Node Readable with the SDK stream mixin) fully into
 * one Buffer; with `maxBytes`, stops (destroying the stream) and throws
 * `tooLarge(bytesRead)` as soon as the body runs past it.
 */
async function bodyToBuffer(body: unknown, maxBytes?: number, tooLarge?: (read: number) => Error): Promise<Buffer> {
  const check = (n: number) => {
    if (maxBytes !== undefined && n > maxBytes) {
      destroyBody(body);
      throw tooLarge!(n);
    }
  };
  if (body === undefined || body === null) return Buffer.alloc(0);
  if (body instanceof Uint8Array) {
    check(body.byteLength);
    return Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  }
  if (typeof body === 'string') {
    check(Buffer.byteLength(body));
    return Buffer.from(body);
  }
  if (typeof (body as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function') {
    const chunks: Buffer[] = [];
    let n = 0;
    for await (const chunk of body as AsyncIterable<Uint8Array | string>) {
      const b = typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      n += b.length;
      check(n);
      chunks.push(b);
    }
    return Buffer.concat(chunks);
  }
  const mixin = body as { transformToByteArray?: () => Promise<Uint8Array> };
  if (typeof mixin.transformToByteArray === 'function') {
    const bytes = await mixin.transformToByteArray();
    check(bytes.byteLength);
    return Buffer.from(bytes);
  }
  throw new PermanentError('s3:GetObject: unsupported response body type');
}
