// The vault secret's wrappings: `memvault key list | add | remove | rotate`.
//
// A vault has one master secret; vault.json holds it wrapped by each key that
// may open the vault (local key files, KMS keys: one per region for the DR
// copy). Adding a wrapping lets another key open the vault; removing one
// revokes that key: from then on it opens nothing. Rotation adds a new key and
// removes the old one in one step. Objects are not re-encrypted: the master
// secret stays. What revocation does not undo: whoever held the old key AND a
// copy of vault.json from before (or the master secret itself) can still
// unwrap it; against that, re-encrypting under a new secret is the remedy (a
// new vault and a copy of the backups into it), which this does not do.
//
// Guard rails: the key the configuration opens the vault with is never removed
// by `remove` (that would lock the operator out: rotate switches it), the last
// wrapping is never removed, and a new key proves it opens the vault before any
// old one is removed.
import type { KeyProvider, Storage, WrappedSecret } from './ports.ts';
import { Vault } from './vault.ts';
import { NotFoundError, UsageError } from './errors.ts';

export interface KeyEntry {
  type: string;
  keyId: string;
  /** The key this configuration opens the vault with. */
  current: boolean;
}

export interface KeyListing {
  vault: string;
  keys: KeyEntry[];
}

/** The vault's wrappings, authenticated (vault.json's MAC checked under the current key). */
export async function listKeys(storage: Storage, current: KeyProvider): Promise<KeyListing> {
  const v = await Vault.open(storage, current);
  return { vault: storage.url, keys: v.doc.keys.map((k) => ({ type: k.type, keyId: k.keyId, current: k.type === current.type && k.keyId === current.keyId })) };
}

const same = (k: WrappedSecret, p: { type: string; keyId: string }) => k.type === p.type && k.keyId === p.keyId;

/** Adds a wrapping for `extra`; false when the vault already has it. */
export async function addKey(storage: Storage, current: KeyProvider, extra: KeyProvider): Promise<boolean> {
  let added = false;
  await Vault.updateKeys(storage, current, async (keys, wrap) => {
    if (keys.some((k) => same(k, extra))) return keys;
    added = true;
    return [...keys, await wrap(extra)];
  });
  // The new wrapping must open the vault before anyone relies on it.
  if (added) await Vault.open(storage, extra);
  return added;
}

/** Removes the wrapping of key `keyId` (revokes it). Never the current key, never the last. */
export async function removeKey(storage: Storage, current: KeyProvider, keyId: string): Promise<WrappedSecret> {
  let removed: WrappedSecret | undefined;
  await Vault.updateKeys(storage, current, async (keys) => {
    const hits = keys.filter((k) => k.keyId === keyId);
    if (hits.length === 0) {
      throw new NotFoundError(`${storage.url}: no key ${keyId}; it has ${keys.map((k) => `${k.type} key ${k.keyId}`).join(', ')}`);
    }
    if (hits.some((k) => same(k, current))) {
      throw new UsageError(`${storage.url}: key ${keyId} is the key this configuration opens the vault with; removing it would lock you out. Use \`memvault key rotate\` to replace it, or point the configuration at another key of the vault first`);
    }
    const rest = keys.filter((k) => k.keyId !== keyId);
    if (rest.length === 0) throw new UsageError(`${storage.url}: key ${keyId} is the vault's only key`);
    removed = hits[0];
    return rest;
  });
  return removed!;
}

/**
 * Replaces `current` by `next` in the vault's wrappings: adds next, proves it
 * opens the vault, then removes current. After it, only next (and any other
 * key the vault had) opens the vault.
 */
export async function rotateKey(storage: Storage, current: KeyProvider, next: KeyProvider): Promise<void> {
  if (same({ type: current.type, keyId: current.keyId, blob: '' }, next)) throw new UsageError(`${storage.url}: the new key is the current key`);
  await addKey(storage, current, next);
  await Vault.updateKeys(storage, next, async (keys) => keys.filter((k) => !same(k, current)));
}
