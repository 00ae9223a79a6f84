// Vault cryptography.
//
// One random 32-byte master secret per vault, wrapped by each key provider
// (local key file, or KMS per region). From it, HKDF-SHA-256 derives:
//   - the data key: AES-256-GCM for chunks and manifests,
//   - the id key: HMAC-SHA-256 chunk ids, so ids reveal nothing about content,
//   - the gear seed: the content-defined chunker's per-vault gear table, so
//     chunk boundaries leak nothing either.
// Sealed object layout: [version=1][12-byte nonce][ciphertext][16-byte tag],
// with the object's own key as additional authenticated data, so an object
// moved to another name fails to open. Chunks use the same layout with the
// header byte saying how the plaintext is encoded (2 raw, 3 zstd) and bound
// into the AAD with the key, so the encoding needs no byte (and no copy) of its
// own inside the ciphertext, and cannot be flipped.
import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync, randomBytes, randomFillSync, webcrypto } from 'node:crypto';
import { IntegrityError } from './errors.ts';
import { CHUNK_RAW, CHUNK_ZSTD, chunkAad } from './chunk-codec.ts';

export interface VaultKeys {
  dataKey: Buffer;
  idKey: Buffer;
  /** HMAC-SHA-256 key that authenticates vault.json (its chunker settings and key wrappings). */
  configKey: Buffer;
  gear: Uint32Array;
  /** The same keys for WebCrypto, whose operations run on libuv's thread pool (in parallel with the chunker). */
  web?: Promise<{ data: webcrypto.CryptoKey; id: webcrypto.CryptoKey }>;
}

const subtle = webcrypto.subtle;

function webKeys(k: VaultKeys) {
  k.web ??= Promise.all([
    subtle.importKey('raw', k.dataKey, { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']),
    subtle.importKey('raw', k.idKey, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']),
  ]).then(([data, id]) => ({ data, id }));
  return k.web;
}

/** chunkId() off the main thread. */
export async function chunkIdAsync(k: VaultKeys, data: Uint8Array): Promise<string> {
  const { id } = await webKeys(k);
  return Buffer.from(await subtle.sign('HMAC', id, data)).toString('hex');
}

/** seal() off the main thread; same layout (WebCrypto appends the tag to the ciphertext). */
export async function sealAsync(k: VaultKeys, plaintext: Uint8Array, aad: string): Promise<Buffer> {
  const { data } = await webKeys(k);
  const nonce = randomBytes(12);
  const ct = await subtle.encrypt({ name: 'AES-GCM', iv: nonce, additionalData: Buffer.from(aad), tagLength: 128 }, data, plaintext);
  return Buffer.concat([Uint8Array.of(VERSION), nonce, new Uint8Array(ct)]);
}

export { CHUNK_RAW, CHUNK_ZSTD };

/**
 * Seals a chunk on the thread pool and returns the object as two parts,
 * [header + nonce] and [ciphertext + tag], for Storage.put to write without
 * concatenating them.
 */
export async function sealChunkAsync(k: VaultKeys, plaintext: Uint8Array, kind: typeof CHUNK_RAW | typeof CHUNK_ZSTD, aad: string): Promise<Buffer[]> {
  const { data } = await webKeys(k);
  const head = Buffer.allocUnsafe(13);
  head[0] = kind;
  randomFillSync(head, 1, 12);
  const ct = await subtle.encrypt({ name: 'AES-GCM', iv: head.subarray(1), additionalData: chunkAad(kind, aad), tagLength: 128 }, data, plaintext);
  return [head, Buffer.from(ct)];
}

/** Opens a sealed chunk on the thread pool; returns its encoding (CHUNK_RAW / CHUNK_ZSTD) and plaintext. */
export async function openChunkAsync(k: VaultKeys, blob: Buffer, aad: string): Promise<{ kind: number; plain: Buffer }> {
  const kind = blob[0];
  if (blob.length < 1 + 12 + 16 || (kind !== CHUNK_RAW && kind !== CHUNK_ZSTD && kind !== VERSION)) {
    throw new IntegrityError(`${aad}: not a memvault object (bad header or truncated)`, aad);
  }
  if (kind === VERSION) {
    // A chunk written before the encoding moved into the header: [flag 0 raw | 1 zstd][payload] inside.
    const plain = await openAsync(k, blob, aad);
    return { kind: plain[0] === 0 ? CHUNK_RAW : plain[0] === 1 ? CHUNK_ZSTD : -1, plain: plain.subarray(1) };
  }
  const { data } = await webKeys(k);
  try {
    const pt = await subtle.decrypt({ name: 'AES-GCM', iv: blob.subarray(1, 13), additionalData: chunkAad(kind, aad), tagLength: 128 }, data, blob.subarray(13));
    return { kind, plain: Buffer.from(pt) };
  } catch {
    throw new IntegrityError(`${aad}: authentication failed (object corrupt, truncated or moved)`, aad);
  }
}

/** open() off the main thread. */
export async function openAsync(k: VaultKeys, blob: Buffer, aad: string): Promise<Buffer> {
  if (blob.length < 1 + 12 + 16 || blob[0] !== VERSION) {
    throw new IntegrityError(`${aad}: not a memvault object (bad header or truncated)`, aad);
  }
  const { data } = await webKeys(k);
  try {
    const pt = await subtle.decrypt({ name: 'AES-GCM', iv: blob.subarray(1, 13), additionalData: Buffer.from(aad), tagLength: 128 }, data, blob.subarray(13));
    return Buffer.from(pt);
  } catch {
    throw new IntegrityError(`${aad}: authentication failed (object corrupt, truncated or moved)`, aad);
  }
}

export function deriveKeys(master: Buffer, vaultId: string): VaultKeys {
  const salt = Buffer.from(`memvault:${vaultId}`);
  const k = (info: string) => Buffer.from(hkdfSync('sha256', master, salt, info, 32));
  const gearSeed = k('gear');
  const gear = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    gear[i] = createHmac('sha256', gearSeed).update(Uint8Array.of(i)).digest().readUInt32LE(0);
  }
  return { dataKey: k('data'), idKey: k('chunk-id'), configKey: k('vault-config'), gear };
}

const VERSION = 1;

export function seal(key: Buffer, plaintext: Uint8Array, aad: string): Buffer {
  const nonce = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, nonce);
  c.setAAD(Buffer.from(aad));
  const body = c.update(plaintext);
  const fin = c.final();
  return Buffer.concat([Uint8Array.of(VERSION), nonce, body, fin, c.getAuthTag()]);
}

export function open(key: Buffer, blob: Buffer, aad: string): Buffer {
  if (blob.length < 1 + 12 + 16 || blob[0] !== VERSION) {
    throw new IntegrityError(`${aad}: not a memvault object (bad header or truncated)`, aad);
  }
  const nonce = blob.subarray(1, 13);
  const tag = blob.subarray(blob.length - 16);
  const d = createDecipheriv('aes-256-gcm', key, nonce);
  d.setAAD(Buffer.from(aad));
  d.setAuthTag(tag);
  try {
    return Buffer.concat([d.update(blob.subarray(13, blob.length - 16)), d.final()]);
  } catch {
    throw new IntegrityError(`${aad}: authentication failed (object corrupt, truncated or moved)`, aad);
  }
}

export function chunkId(idKey: Buffer, data: Uint8Array): string {
  return createHmac('sha256', idKey).update(data).digest('hex');
}

export function sha256(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}
