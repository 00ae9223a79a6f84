// A storage whose backend module (and its SDK) is imported on first use: an SDK
// costs tens of MiB of memory, which a command that never touches the vault,
// and a Lambda bundle that leaves the SDK out, should not pay.
import type { GetOptions, Storage, StoredObject, SweepReport } from '../../core/ports.ts';
import { PermanentError } from '../../core/errors.ts';

/** Error codes of a connection that failed on the way (transient, retried): Node's and undici's. */
export const NETWORK_CODES: ReadonlySet<string> = new Set([
  'ECONNRESET', 'ETIMEDOUT', 'ECONNREFUSED', 'ECONNABORTED', 'EPIPE',
  'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ENETDOWN', 'UND_ERR_SOCKET',
]);

/**
 * An object store's name for a vault key: the vault's base prefix + key. A key that is
 * empty, absolute or has empty, '.' or '..' segments (escaping or blurring the vault
 * prefix) is refused, naming the vault.
 */
export function prefixedKey(url: string, base: string, key: string): string {
  if (!key || key.startsWith('/') || key.split('/').some((s) => s === '..' || s === '.' || s === '')) {
    throw new PermanentError(`${url}: invalid object key "${key}"`);
  }
  return base + key;
}

export abstract class LazyStorage implements Storage {
  abstract readonly url: string;
  private inner: Promise<Storage> | undefined;

  /** Imports the backend module and makes the storage (called once). */
  protected abstract open(): Promise<Storage>;

  private load(): Promise<Storage> {
    return (this.inner ??= this.open());
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
