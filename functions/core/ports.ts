// The small interfaces the domain core depends on. Adapters implement them:
// storage (file://, s3://), keys (local key file, KMS), alerts (stdout, file,
// SNS), clock. Core code never imports the AWS SDK.

/** An object store holding one vault. Keys are '/'-separated relative names. */
export interface Storage {
  /** Human-readable location, e.g. file:///srv/vault or s3://bucket/prefix. */
  readonly url: string;
  /**
   * The directory the objects are files in, for a local (file://) backend: the
   * chunk-pool workers store chunks there themselves, with the same protocol as put.
   */
  readonly localRoot?: string;
  /**
   * Reads a whole object. Throws NotFoundError when absent. With `maxBytes`,
   * an object larger than that is refused before its content is read (an
   * IntegrityError naming the key, its size and the limit; never retried).
   */
  get(key: string, o?: GetOptions): Promise<Buffer>;
  /**
   * Reads `length` bytes of an object from byte `offset` (pack files: one chunk, or a run of
   * neighbouring chunks). Throws NotFoundError when the object is absent, and an IntegrityError
   * naming the key when the object ends before `offset + length` (damaged or truncated).
   */
  getRange(key: string, offset: number, length: number): Promise<Buffer>;
  /**
   * Writes a whole object atomically: readers see the old state or the new, never a part.
   * `data` may be a list of parts, stored as their concatenation (saves a copy where the
   * backend can write them as they are, e.g. writev for files).
   */
  put(key: string, data: Uint8Array | readonly Uint8Array[]): Promise<void>;
  /**
   * Writes an object in pieces as they come, for backends that can without holding
   * it in memory (file://: a temporary file renamed at commit). Atomic like put():
   * nothing is visible under `key` before commit(); abort() (or a crash) leaves at
   * most a temporary that sweepTemporary removes. Optional: PackWriter falls back
   * to put() where a backend has none.
   */
  openWrite?(key: string): Promise<ObjectWriter>;
  /** True when the object exists. */
  has(key: string): Promise<boolean>;
  /** Lists objects whose key starts with prefix, in no particular order. */
  list(prefix: string): AsyncIterable<StoredObject>;
  /** Deletes an object; deleting a missing object is not an error. */
  delete(key: string): Promise<void>;
  /**
   * Removes the temporary objects of runs that died while writing (file://:
   * `<key>.tmp-<12 hex>` files) last modified more than `olderThanMs` ago;
   * never a finished object. Backends whose writes are atomic have none
   * (S3: zeros). Optional: wrappers pass it through when the inner has it.
   */
  sweepTemporary?(olderThanMs: number): Promise<SweepReport>;
}

export interface ObjectWriter {
  /** Appends the parts, in order. */
  write(parts: readonly Uint8Array[]): Promise<void>;
  /** Makes the object durable and visible under its key. */
  commit(): Promise<void>;
  /** Drops what was written; the key is left as it was. */
  abort(): Promise<void>;
}

export interface GetOptions {
  /** Refuse an object larger than this many bytes without reading it (IntegrityError). */
  maxBytes?: number;
}

export interface SweepReport {
  /** Temporary objects removed. */
  removed: number;
  /** Their total size in bytes. */
  bytes: number;
}

/** The message of the IntegrityError for a range past the end of an object. */
export function shortRangeMessage(url: string, key: string, offset: number, length: number, got: number): string {
  return `${url}: object ${key} ends before bytes ${offset}-${offset + length - 1} (read ${got} of ${length}); the object is truncated or damaged`;
}

/** The message of the IntegrityError for an object larger than the reader's limit. */
export function tooLargeMessage(url: string, key: string, size: number | string, maxBytes: number): string {
  return `${url}: object ${key} is ${size} bytes, more than the ${maxBytes} expected; refusing to read it (damaged or planted object)`;
}

export interface StoredObject {
  key: string;
  size: number;
  /** Last modification time, when the backend knows it. */
  modified?: Date;
}

/** Wraps and unwraps the vault's master secret (envelope encryption). */
export interface KeyProvider {
  /** 'local' or 'kms' */
  readonly type: string;
  /** Identifies the wrapping key without revealing it (fingerprint or KMS key ARN). */
  readonly keyId: string;
  wrap(secret: Buffer, context: Record<string, string>): Promise<WrappedSecret>;
  /** Throws WrongKeyError when this provider's key did not wrap the secret. */
  unwrap(wrapped: WrappedSecret, context: Record<string, string>): Promise<Buffer>;
}

export interface WrappedSecret {
  type: string;
  keyId: string;
  /** base64 */
  blob: string;
}

export type AlertSeverity = 'info' | 'warning' | 'error';

export interface Alert {
  severity: AlertSeverity;
  /** Short line: what happened to what, e.g. "backup failed: memory-db". */
  subject: string;
  message: string;
  component?: string;
  step?: string;
  cause?: string;
  details?: Record<string, unknown>;
  time: string;
}

export interface AlertSink {
  send(alert: Alert): Promise<void>;
}

export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };
