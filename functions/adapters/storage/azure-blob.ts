// azblob:// storage: a vault under a prefix of an Azure Blob Storage container
// (or of Azurite). Objects are block blobs at `${prefix}/${key}`, written with
// one Put Blob each: Azure commits a blob's content in one step, so readers see
// the old blob or the new one, never a part, and put() needs no temporary
// object (sweepTemporary has nothing to remove). A bounded get (maxBytes)
// refuses a blob by its Content-Length before reading the body, and stops a
// body that runs longer than announced.
//
// Credentials come from the environment, never from memvault.yaml:
//   AZURE_STORAGE_CONNECTION_STRING   a connection string (its account must be the url's)
//   AZURE_STORAGE_KEY                 the account key of the url's account
//   AZURE_STORAGE_SAS_TOKEN           a shared access signature (container or account scope)
// The first one set is used. There is no Azure AD (DefaultAzureCredential)
// sign-in: the only dependency is @azure/storage-blob.
//
// Errors are mapped onto the vault's two families as the S3 backend does:
// throttling (ServerBusy, 429, 503), 5xx and network failures become
// TransientStorageError, retried by RetryingStorage and ASL Retry (the SDK's
// own retries are off, so one place decides); a missing blob NotFoundError; a
// wrong key, an expired token or a missing container a PermanentError naming
// the vault url, the account and the action.
// Types only: the SDK itself is loaded with import() (loadAzureSdk), so a bundle that
// leaves it out as an external (the Lambda bundles) never loads it at start-up.
import { NETWORK_CODES as BASE_NETWORK_CODES, prefixedKey } from './lazy.ts';
import type { BlobServiceClient, ContainerClient, StoragePipelineOptions, StorageSharedKeyCredential } from '@azure/storage-blob';
import { shortRangeMessage, tooLargeMessage, type GetOptions, type Storage, type StoredObject, type SweepReport } from '../../core/ports.ts';
import { type AzureBlobLocation, azblobUrl, parseAzblobUrl } from './azure-location.ts';
import {
  ConfigError,
  IntegrityError,
  MemvaultError,
  NotFoundError,
  PermanentError,
  TransientStorageError,
} from '../../core/errors.ts';

export { parseAzblobUrl, type AzureBlobLocation };

export const ENDPOINT_ENV = 'MEMVAULT_AZURE_BLOB_ENDPOINT';

export type AzureSdk = typeof import('@azure/storage-blob');

/** The Azure SDK, loaded on first use. */
export function loadAzureSdk(): Promise<AzureSdk> {
  return import('@azure/storage-blob');
}

export interface AzureBlobStorageOptions {
  account: string;
  container: string;
  /** Blob name prefix of the vault inside the container; '' for the container root. */
  prefix: string;
  /** A ready container client (tests, custom credentials). */
  containerClient: ContainerClient;
  /** Blobs per listing page. @default 5000 (the service's maximum) */
  pageSize?: number;
}

// The service's error codes (x-ms-error-code) a retry can fix.
const TRANSIENT_CODES = new Set(['ServerBusy', 'OperationTimedOut', 'InternalError']);
const NOT_FOUND_CODES = new Set(['BlobNotFound']);
const DENIED_CODES = new Set([
  'AuthenticationFailed',
  'AuthorizationFailure',
  'AuthorizationPermissionMismatch',
  'AuthorizationResourceTypeMismatch',
  'AuthorizationServiceMismatch',
  'AuthorizationSourceIPMismatch',
  'AuthorizationProtocolMismatch',
  'InsufficientAccountPermissions',
  'AccountIsDisabled',
  'KeyVaultEncryptionKeyNotFound',
]);
/** Node's and undici's connection errors, and the Azure SDK's failure to send. */
const NETWORK_CODES = new Set([...BASE_NETWORK_CODES, 'REQUEST_SEND_ERROR']);

interface RestErrorLike {
  name?: string;
  code?: string;
  statusCode?: number;
  message?: string;
  cause?: unknown;
  details?: { errorCode?: string };
}

/** The service's error code: RestError.code, or the x-ms-error-code in the parsed details. */
function errorCode(e: RestErrorLike): string | undefined {
  return e.details?.errorCode ?? e.code;
}

function isNetworkError(err: unknown, depth = 0): boolean {
  if (!err || typeof err !== 'object' || depth > 4) return false;
  const e = err as RestErrorLike;
  if (e.code && NETWORK_CODES.has(e.code)) return true;
  if (e.name === 'TimeoutError' || e.name === 'AbortError') return true;
  if (typeof e.message === 'string' && /socket hang up|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENOTFOUND|EAI_AGAIN/i.test(e.message)) return true;
  return isNetworkError(e.cause, depth + 1);
}

function isNotFound(e: RestErrorLike): boolean {
  const code = errorCode(e);
  if (code && NOT_FOUND_CODES.has(code)) return true;
  // HEAD responses carry no body, so a missing blob is a bare 404 there.
  return e.statusCode === 404 && code !== 'ContainerNotFound';
}

export class AzureBlobStorage implements Storage {
  readonly url: string;
  readonly account: string;
  readonly containerName: string;
  /** Normalized vault prefix without leading or trailing '/'; '' for the container root. */
  readonly prefix: string;
  readonly container: ContainerClient;
  private readonly base: string;
  private readonly pageSize: number;

  constructor(o: AzureBlobStorageOptions) {
    this.account = o.account;
    this.containerName = o.container;
    this.prefix = parseAzblobUrl(`azblob://${o.account}/${o.container}/${o.prefix}`).prefix;
    this.base = this.prefix ? `${this.prefix}/` : '';
    this.url = azblobUrl({ account: o.account, container: o.container, prefix: this.prefix });
    this.container = o.containerClient;
    this.pageSize = o.pageSize ?? 5000;
  }

  /**
   * A storage for an azblob:// location, with credentials from the environment
   * (see the header). Fails with a ConfigError naming the variables when none is set.
   */
  static async fromLocation(loc: AzureBlobLocation, env: NodeJS.ProcessEnv = process.env, o: { pageSize?: number } = {}): Promise<AzureBlobStorage> {
    return AzureBlobStorage.withSdk(await loadAzureSdk(), loc, env, o);
  }

  /** fromLocation with the SDK already loaded. */
  static withSdk(sdk: AzureSdk, loc: AzureBlobLocation, env: NodeJS.ProcessEnv = process.env, o: { pageSize?: number } = {}): AzureBlobStorage {
    const u = parseAzblobUrl(loc.url);
    const service = serviceClient(sdk, u.account, loc.endpoint ?? env[ENDPOINT_ENV], env, azblobUrl(u));
    return new AzureBlobStorage({ ...u, containerClient: service.getContainerClient(u.container), pageSize: o.pageSize });
  }

  private blobName(key: string): string {
    return prefixedKey(this.url, this.base, key);
  }

  /** Maps a RestError or network error onto the vault's error families. */
  private wrap(err: unknown, action: string, key?: string): never {
    if (err instanceof MemvaultError) throw err;
    const e = (err ?? {}) as RestErrorLike;
    const code = errorCode(e);
    const what = key === undefined ? `azblob:${action} ${this.url}` : `azblob:${action} ${key} in ${this.url}`;
    const detail = `${code ?? e.name ?? 'Error'}${e.statusCode ? ` (HTTP ${e.statusCode})` : ''}: ${firstLine(e.message ?? String(err))}`;
    if (key !== undefined && isNotFound(e)) throw new NotFoundError(`${this.url}: object ${key} not found`);
    if (code === 'ContainerNotFound') {
      throw new PermanentError(`${what}: container ${this.containerName} does not exist in storage account ${this.account}`, { cause: err });
    }
    if ((code && DENIED_CODES.has(code)) || e.statusCode === 403 || e.statusCode === 401) {
      throw new PermanentError(
        `${what}: access denied to storage account ${this.account} for ${action}; check AZURE_STORAGE_KEY, ` +
        `AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_SAS_TOKEN and the endpoint (${detail})`,
        { cause: err },
      );
    }
    const status = e.statusCode;
    if ((code && TRANSIENT_CODES.has(code)) || status === 429 || status === 408 || (status !== undefined && status >= 500)) {
      throw new TransientStorageError(`${what}: ${detail}`, { cause: err });
    }
    if (isNetworkError(err)) {
      throw new TransientStorageError(`${what}: cannot reach the blob endpoint ${this.endpoint()}: ${detail}`, { cause: err });
    }
    throw new PermanentError(`${what}: ${detail}`, { cause: err });
  }

  /** The blob service endpoint, without the container and without a SAS query. */
  private endpoint(): string {
    const u = new URL(this.container.url);
    return `${u.origin}${u.pathname.replace(/\/[^/]*$/, '')}`;
  }

  async get(key: string, o: GetOptions = {}): Promise<Buffer> {
    const blob = this.container.getBlobClient(this.blobName(key));
    try {
      const res = await blob.download(0);
      const body = res.readableStreamBody;
      const length = res.contentLength;
      if (o.maxBytes !== undefined && length !== undefined && length > o.maxBytes) {
        (body as { destroy?: () => void } | undefined)?.destroy?.();
        throw new IntegrityError(tooLargeMessage(this.url, key, length, o.maxBytes), key);
      }
      const data = await readBody(body, o.maxBytes, (read) => new IntegrityError(tooLargeMessage(this.url, key, `at least ${read}`, o.maxBytes!), key));
      if (length !== undefined && data.length !== length) {
        throw new TransientStorageError(`azblob:GetBlob ${key} in ${this.url}: body ended after ${data.length} of ${length} bytes`);
      }
      return data;
    } catch (err) {
      this.wrap(err, 'GetBlob', key);
    }
  }

  async getRange(key: string, offset: number, length: number): Promise<Buffer> {
    if (length === 0) return Buffer.alloc(0);
    const blob = this.container.getBlobClient(this.blobName(key));
    try {
      const res = await blob.download(offset, length);
      const data = await readBody(res.readableStreamBody, length, (read) => new IntegrityError(tooLargeMessage(this.url, key, `at least ${read}`, length), key));
      if (data.length < length) {
        // Azure answers what there is of the range: an object shorter than the range is damage.
        const total = /\/(\d+)$/.exec(res.contentRange ?? '');
        if (total && Number(total[1]) < offset + length) throw new IntegrityError(shortRangeMessage(this.url, key, offset, length, data.length), key);
        throw new TransientStorageError(`azblob:GetBlob ${key} (range) in ${this.url}: body ended after ${data.length} of ${length} bytes`);
      }
      return data;
    } catch (err) {
      if ((err as RestErrorLike)?.statusCode === 416) throw new IntegrityError(shortRangeMessage(this.url, key, offset, length, 0), key);
      this.wrap(err, 'GetBlob', key);
    }
  }

  async put(key: string, parts: Uint8Array | readonly Uint8Array[]): Promise<void> {
    const blob = this.container.getBlockBlobClient(this.blobName(key));
    const data = parts instanceof Uint8Array ? parts : Buffer.concat(parts);
    try {
      // One Put Blob (up to 5000 MiB): committed whole or not at all.
      await blob.upload(data, data.byteLength);
    } catch (err) {
      this.wrap(err, 'PutBlob', key);
    }
  }

  async has(key: string): Promise<boolean> {
    const blob = this.container.getBlobClient(this.blobName(key));
    try {
      await blob.getProperties();
      return true;
    } catch (err) {
      if (isNotFound((err ?? {}) as RestErrorLike)) return false;
      this.wrap(err, 'GetBlobProperties', key);
    }
  }

  async *list(prefix: string): AsyncIterable<StoredObject> {
    const pages = this.container.listBlobsFlat({ prefix: this.base + prefix }).byPage({ maxPageSize: this.pageSize });
    for (;;) {
      let next;
      try {
        next = await pages.next();
      } catch (err) {
        this.wrap(err, 'ListBlobs');
      }
      if (next.done) return;
      for (const b of next.value.segment.blobItems) {
        if (!b.name.startsWith(this.base)) continue;
        const key = b.name.slice(this.base.length);
        if (!key || key.endsWith('/')) continue; // folder markers (hierarchical namespace, tools)
        yield { key, size: b.properties.contentLength ?? 0, modified: b.properties.lastModified };
      }
    }
  }

  async delete(key: string): Promise<void> {
    const blob = this.container.getBlobClient(this.blobName(key));
    try {
      await blob.delete();
    } catch (err) {
      if (isNotFound((err ?? {}) as RestErrorLike)) return;
      this.wrap(err, 'DeleteBlob', key);
    }
  }

  /** Nothing to sweep: every put is one Put Blob (no uncommitted blocks are left by memvault). */
  async sweepTemporary(_olderThanMs: number): Promise<SweepReport> {
    return { removed: 0, bytes: 0 };
  }
}

/**
 * The blob service client for an account, with credentials from the environment.
 * The SDK's retries are off: RetryingStorage and the state machines retry.
 */
export function serviceClient(sdk: AzureSdk, account: string, endpoint: string | undefined, env: NodeJS.ProcessEnv, url: string): BlobServiceClient {
  const { AnonymousCredential, BlobServiceClient, StorageSharedKeyCredential } = sdk;
  const options: StoragePipelineOptions = { retryOptions: { maxTries: 1 } };
  const cs = env.AZURE_STORAGE_CONNECTION_STRING;
  if (cs) {
    let client: BlobServiceClient;
    try {
      client = BlobServiceClient.fromConnectionString(cs, options);
    } catch (err) {
      throw new ConfigError(`${url}: AZURE_STORAGE_CONNECTION_STRING is not a valid connection string (${firstLine((err as Error).message)})`);
    }
    if (client.accountName && client.accountName !== account) {
      throw new ConfigError(`${url}: AZURE_STORAGE_CONNECTION_STRING is for storage account ${client.accountName}, not ${account}`);
    }
    if (!endpoint) return client;
    // An explicit endpoint wins over the connection string's BlobEndpoint; its credential stays.
    return new BlobServiceClient(trimSlash(endpoint), client.credential, options);
  }
  const base = trimSlash(endpoint ?? `https://${account}.blob.core.windows.net`);
  if (!/^https?:\/\//.test(base)) throw new ConfigError(`${url}: endpoint "${base}": expected an http(s) URL of the blob service`);
  if (env.AZURE_STORAGE_KEY) {
    let credential: StorageSharedKeyCredential;
    try {
      credential = new StorageSharedKeyCredential(account, env.AZURE_STORAGE_KEY);
    } catch (err) {
      throw new ConfigError(`${url}: AZURE_STORAGE_KEY is not a valid account key (${firstLine((err as Error).message)})`);
    }
    return new BlobServiceClient(base, credential, options);
  }
  if (env.AZURE_STORAGE_SAS_TOKEN) {
    const sas = env.AZURE_STORAGE_SAS_TOKEN.replace(/^\?/, '');
    return new BlobServiceClient(`${base}?${sas}`, new AnonymousCredential(), options);
  }
  throw new ConfigError(
    `${url}: no Azure credentials: set AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_KEY (the account key of ${account}) or AZURE_STORAGE_SAS_TOKEN`,
  );
}

function trimSlash(s: string): string {
  return s.replace(/\/+$/, '');
}

function firstLine(s: string): string {
  return s.split('\n')[0];
}

/**
 * Reads a download body fully into one Buffer; with `maxBytes`, stops
 * (destroying the stream) and throws `tooLarge(bytesRead)` as soon as the body
 * runs past it.
 */
async function readBody(body: NodeJS.ReadableStream | undefined, maxBytes?: number, tooLarge?: (read: number) => Error): Promise<Buffer> {
  if (!body) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of body as AsyncIterable<Uint8Array | string>) {
    const b = typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    n += b.length;
    if (maxBytes !== undefined && n > maxBytes) {
      (body as { destroy?: () => void }).destroy?.();
      throw tooLarge!(n);
    }
    chunks.push(b);
  }
  return Buffer.concat(chunks);
}
