// azblob:// vault locations, and an Azure Blob storage that loads
// @azure/storage-blob only when it is first used (as s3-location.ts does for
// the AWS SDK): a file:// or s3:// vault never pays for the Azure client.
//
//   azblob://<account>/<container>/<prefix>     prefix optional
//
// The blob service endpoint is, in order: the location's `endpoint`
// (memvault.yaml), $MEMVAULT_AZURE_BLOB_ENDPOINT, the BlobEndpoint of a
// connection string, else https://<account>.blob.core.windows.net. For
// Azurite and other emulators the endpoint carries the account in its path
// (http://127.0.0.1:10000/devstoreaccount1); sovereign clouds have their own
// suffix (https://<account>.blob.core.chinacloudapi.cn).
import type { GetOptions, Storage, StoredObject, SweepReport } from '../../core/ports.ts';
import { ConfigError } from '../../core/errors.ts';
import { normalizePrefix } from './s3-location.ts';

export interface AzureBlobLocation {
  /** azblob://account/container/prefix */
  url: string;
  /** The blob service endpoint, e.g. http://127.0.0.1:10000/devstoreaccount1 (Azurite). */
  endpoint?: string;
}

// Azure's naming rules: storage accounts 3-24 lowercase letters and digits;
// containers 3-63 of lowercase letters, digits and single hyphens, starting and
// ending with a letter or digit.
const ACCOUNT = /^[a-z0-9]{3,24}$/;
const CONTAINER = /^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$/;

export interface AzureBlobUrl {
  account: string;
  container: string;
  prefix: string;
}

/** Parses azblob://account/container/prefix (prefix optional, normalized). */
export function parseAzblobUrl(url: string): AzureBlobUrl {
  const m = /^azblob:\/\/([^/]+)\/([^/]+)(?:\/(.*))?$/.exec(url);
  if (!m) throw new ConfigError(`storage url "${url}": expected azblob://account/container/prefix (prefix optional)`);
  const [, account, container, prefix] = m;
  if (!ACCOUNT.test(account)) {
    throw new ConfigError(`storage url "${url}": storage account "${account}" must be 3-24 lowercase letters and digits`);
  }
  if (!CONTAINER.test(container)) {
    throw new ConfigError(`storage url "${url}": container "${container}" must be 3-63 lowercase letters, digits and single hyphens`);
  }
  return { account, container, prefix: normalizePrefix(prefix ?? '') };
}

export function azblobUrl(u: AzureBlobUrl): string {
  return `azblob://${u.account}/${u.container}${u.prefix ? `/${u.prefix}` : ''}`;
}

/** AzureBlobStorage.fromLocation(loc), with the Azure module imported on the first call. */
export class LazyAzureBlobStorage implements Storage {
  readonly url: string;
  private inner: Promise<Storage> | undefined;

  constructor(private readonly loc: AzureBlobLocation, private readonly env: NodeJS.ProcessEnv = process.env) {
    this.url = azblobUrl(parseAzblobUrl(loc.url)); // bad urls fail now, not at first use
  }

  private load(): Promise<Storage> {
    return (this.inner ??= import('./azure-blob.ts').then((m) => m.AzureBlobStorage.fromLocation(this.loc, this.env)));
  }

  async get(key: string, o?: GetOptions): Promise<Buffer> { return (await this.load()).get(key, o); }
  async getRange(key: string, offset: number, length: number): Promise<Buffer> { return (await this.load()).getRange(key, offset, length); }
  async put(key: string, data: Uint8Array | readonly Uint8Array[]): Promise<void> { return (await this.load()).put(key, data); }
  async has(key: string): Promise<boolean> { return (await this.load()).has(key); }
  async delete(key: string): Promise<void> { return (await this.load()).delete(key); }
  async *list(prefix: string): AsyncIterable<StoredObject> { yield* (await this.load()).list(prefix); }
  async sweepTemporary(olderThanMs: number): Promise<SweepReport> {
    const inner = await this.load();
    return inner.sweepTemporary ? inner.sweepTemporary(olderThanMs) : { removed: 0, bytes: 0 };
  }
}
