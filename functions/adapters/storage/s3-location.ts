// s3:// vault locations, and an S3 storage that loads the AWS SDK only when it
// is first used: the SDK costs ~30 MiB of memory, which a file:// vault (or a
// command that never touches the vault) should not pay.
import type { Storage } from '../../core/ports.ts';
import { LazyStorage } from './lazy.ts';
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
export class LazyS3Storage extends LazyStorage {
  readonly url: string;

  constructor(private readonly loc: S3Location) {
    super();
    const { bucket, prefix } = parseS3Url(loc.url); // bad urls fail now, not at first use
    this.url = prefix ? `s3://${bucket}/${prefix}` : `s3://${bucket}`;
  }

  protected open(): Promise<Storage> {
    return import('./s3.ts').then((m) => m.S3Storage.fromLocation(this.loc));
  }
}
