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
import type { Storage } from '../../core/ports.ts';
import { LazyStorage } from './lazy.ts';
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
export class LazyAzureBlobStorage extends LazyStorage {
  readonly url: string;

  constructor(private readonly loc: AzureBlobLocation, private readonly env: NodeJS.ProcessEnv = process.env) {
    super();
    this.url = azblobUrl(parseAzblobUrl(loc.url)); // bad urls fail now, not at first use
  }

  protected open(): Promise<Storage> {
    return import('./azure-blob.ts').then((m) => m.AzureBlobStorage.fromLocation(this.loc, this.env));
  }
}
