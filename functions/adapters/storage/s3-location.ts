// s3:// vault locations, and an S3 storage that loads the AWS SDK only when it
// is first used: the SDK costs ~30 MiB of memory, which a file:// vault (or a
// command that never touches the vault) should not pay.
import type { GetOptions, Storage, StoredObject, SweepReport } from '../../core/ports.ts';
import { ConfigError } from '../../core/errors.ts';

export interface S3Location {
  /** s3://bucket/prefix */
  url: string;
  endpoint?: string;
  region?: string;
  forcePathStyle?: boolean;
}

/** Parses s3://bucket/prefix into bucket and normalized prefix ('' when absent). */
export function parseS3Url(url: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([^/]+)(?:\/(.*))?$/.exec(url);
  if (!m || !m[1]) throw new ConfigError(`storage url "${url}": expected s3://bucket/prefix (prefix optional)`);
  return { bucket: m[1], prefix: normalizePrefix(m[2] ?? '') };
}

export function normalizePrefix(prefix: string): string {
  return prefix.split('/').filter((s) => s !== '').join('/');
}

/** S3Storage.fromLocation(loc), with the S3 module imported on the first call. */
export class LazyS3Storage implements Storage {
  readonly url: string;
  private inner: Promise<Storage> | undefined;

  constructor(private readonly loc: S3Location) {
    const { bucket, prefix } = parseS3Url(loc.url); // bad urls fail now, not at first use
    this.url = prefix ? `s3://${bucket}/${prefix}` : `s3://${bucket}`;
  }

  private load(): Promise<Storage> {
    return (this.inner ??= import('./s3.ts').then((m) => m.S3Storage.fromLocation(this.loc)));
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
