// The vault: a prefix of immutable objects in a Storage backend.
//
//   vault.json                          format, vault id, chunker params, the master
//                                       secret wrapped by each key provider
//   chunks/<id[0:2]>/<id>               sealed chunk: [2 raw | 3 zstd][nonce][ciphertext][tag], the
//                                       header byte bound in the AAD with the key (crypto.ts)
//   manifests/<component>/<time>.<type>.<id>   sealed, zstd-compressed JSON manifest
//   locks/<backup|prune>-<id>           who is writing or pruning (plain JSON)
//
// Chunk ids are HMAC-SHA-256 of the plaintext under the vault's id key, so the
// same content anywhere in the vault is stored once. Reading a chunk checks the
// AES-GCM tag (bound to the object key) and then the id itself.
//
// Compression: a zstd-1 probe of the chunk's first 64 KiB decides. Nearly
// incompressible data (random, already compressed: the probe saves < 5%) is
// stored raw; data that compresses a little (float32 weights, ~7%) gets zstd
// level 1, which saves as much there as level 3 at less CPU (like restic's
// "auto" mode); compressible data (text, JSON, SQLite pages) gets level 3.
import os from 'node:os';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import zlib from 'node:zlib';
import { promisify } from 'node:util';
import type { KeyProvider, Storage, WrappedSecret } from './ports.ts';
import { type VaultKeys, CHUNK_RAW, CHUNK_ZSTD, deriveKeys, seal, open, chunkId, chunkIdAsync, sealChunkAsync, openChunkAsync } from './crypto.ts';
import { type ChunkerParams, DEFAULT_CHUNKER } from './chunker.ts';
import { ZSTD_CHUNK, chunkKey, compressionLevel, maxSealedChunkBytes, worthCompressing, zstdOptions } from './chunk-codec.ts';
import { type Manifest, type ManifestRef, parseManifestKey } from './manifest.ts';
import { IntegrityError, LockedError, NotFoundError, PermanentError, WrongKeyError } from './errors.ts';

const zstdCompress = promisify(zlib.zstdCompress);
const zstdDecompress = promisify(zlib.zstdDecompress);
/** zlib's output buffer size: its 16 KiB default makes a 1 MiB chunk 64 callbacks and copies. */

export const VAULT_CONFIG_KEY = 'vault.json';
const CHECK_PLAINTEXT = 'memvault key check';

// Largest objects read (Storage.get maxBytes): a bigger one is damage or planted, refused unread.
/** vault.json: a few KiB of JSON, one wrapping per key provider. */
export const MAX_VAULT_DOC_BYTES = 1024 * 1024;
/** A sealed manifest: compressed JSON, ~100 bytes per file entry even uncompressed; 512 MiB is millions of files. */
export const MAX_MANIFEST_BYTES = 512 * 1024 * 1024;
/** A lock object: a line of JSON. */
export const MAX_LOCK_BYTES = 64 * 1024;

export interface VaultDoc {
  format: 'memvault/1';
  vaultId: string;
  createdAt: string;
  chunker: ChunkerParams;
  keys: WrappedSecret[];
  /** Sealed known plaintext: proves a candidate master secret is this vault's. */
  check: string;
}

export { chunkKey };

export function parseChunkKey(key: string): string | null {
  const m = /^chunks\/[0-9a-f]{2}\/([0-9a-f]{64})$/.exec(key);
  return m ? m[1] : null;
}

export interface EncodedChunk {
  id: string;
  /** The sealed object as parts (header, ciphertext): Storage.put writes them without joining. */
  parts: Buffer[];
  /** Stored size in bytes. */
  size: number;
  compressed: boolean;
  /** The sealed object as one buffer (a copy; for tests and tools). */
  readonly blob: Buffer;
}

export class Vault {
  private constructor(
    readonly storage: Storage,
    readonly doc: VaultDoc,
    readonly keys: VaultKeys,
  ) {}

  get id(): string { return this.doc.vaultId; }
  get chunker(): ChunkerParams { return this.doc.chunker; }

  /**
   * Creates a vault: a new master secret, wrapped by every given provider.
   * With `fromSecret` (replica vaults), the given secret and id are reused, so
   * objects copied between the two vaults open in both.
   */
  static async init(storage: Storage, providers: KeyProvider[], from?: { secret: Buffer; doc: VaultDoc }): Promise<Vault> {
    if (await storage.has(VAULT_CONFIG_KEY)) {
      throw new PermanentError(`${storage.url} already holds a vault; refusing to overwrite it`);
    }
    const vaultId = from?.doc.vaultId ?? randomBytes(8).toString('hex');
    const secret = from?.secret ?? randomBytes(32);
    const context = { vault: vaultId };
    const wrapped = await Promise.all(providers.map((p) => p.wrap(secret, context)));
    const keys = deriveKeys(secret, vaultId);
    const doc: VaultDoc = {
      format: 'memvault/1',
      vaultId,
      createdAt: from?.doc.createdAt ?? new Date().toISOString(),
      chunker: from?.doc.chunker ?? DEFAULT_CHUNKER,
      keys: wrapped,
      check: seal(keys.dataKey, Buffer.from(CHECK_PLAINTEXT), `check:${vaultId}`).toString('base64'),
    };
    await storage.put(VAULT_CONFIG_KEY, Buffer.from(JSON.stringify(doc, null, 2)));
    return new Vault(storage, doc, keys);
  }

  static async readDoc(storage: Storage): Promise<VaultDoc> {
    let raw: Buffer;
    try {
      raw = await storage.get(VAULT_CONFIG_KEY, { maxBytes: MAX_VAULT_DOC_BYTES });
    } catch (err) {
      if (err instanceof NotFoundError) throw new NotFoundError(`${storage.url} holds no vault (run \`memvault init\`)`);
      throw err;
    }
    let doc: VaultDoc;
    try {
      doc = JSON.parse(raw.toString('utf8'));
    } catch {
      throw new IntegrityError(`${storage.url}/${VAULT_CONFIG_KEY} is not valid JSON`, VAULT_CONFIG_KEY);
    }
    if (doc.format !== 'memvault/1') throw new IntegrityError(`${storage.url}: unsupported vault format ${String(doc.format)}`, VAULT_CONFIG_KEY);
    return doc;
  }

  /** Opens a vault with a key provider. Throws WrongKeyError if it is not one of the vault's keys. */
  static async open(storage: Storage, provider: KeyProvider): Promise<Vault> {
    const { vault } = await Vault.openWithSecret(storage, provider);
    return vault;
  }

  static async openWithSecret(storage: Storage, provider: KeyProvider): Promise<{ vault: Vault; secret: Buffer }> {
    const doc = await Vault.readDoc(storage);
    const candidates = doc.keys.filter((k) => k.type === provider.type && k.keyId === provider.keyId);
    if (candidates.length === 0) {
      throw new WrongKeyError(
        `${storage.url}: ${provider.type} key ${provider.keyId} is not a key of this vault; it has ${doc.keys.map((k) => `${k.type} key ${k.keyId}`).join(', ')}`,
      );
    }
    const secret = await provider.unwrap(candidates[0], { vault: doc.vaultId });
    const keys = deriveKeys(secret, doc.vaultId);
    try {
      open(keys.dataKey, Buffer.from(doc.check, 'base64'), `check:${doc.vaultId}`);
    } catch {
      throw new WrongKeyError(`${storage.url}: the unwrapped secret does not open this vault (wrong key or damaged vault.json)`);
    }
    return { vault: new Vault(storage, doc, keys), secret };
  }

  /** Adds a wrapping of the master secret for another provider (e.g. the DR region's KMS key). */
  static async addKey(storage: Storage, current: KeyProvider, extra: KeyProvider): Promise<void> {
    const { vault, secret } = await Vault.openWithSecret(storage, current);
    if (vault.doc.keys.some((k) => k.type === extra.type && k.keyId === extra.keyId)) return;
    const doc = { ...vault.doc, keys: [...vault.doc.keys, await extra.wrap(secret, { vault: vault.id })] };
    await storage.put(VAULT_CONFIG_KEY, Buffer.from(JSON.stringify(doc, null, 2)));
  }

  // ---- chunks ----

  chunkId(data: Uint8Array): string {
    return chunkId(this.keys.idKey, data);
  }

  /** The chunk id computed on the thread pool, so hashing overlaps with chunking. */
  chunkIdAsync(data: Uint8Array): Promise<string> {
    return chunkIdAsync(this.keys, data);
  }

  /** Compresses (unless incompressible) and seals a chunk. */
  async encodeChunk(data: Buffer, id?: string): Promise<EncodedChunk> {
    id ??= await this.chunkIdAsync(data);
    let payload: Buffer = data;
    let compressed = false;
    const level = compressionLevel(data);
    if (level > 0) {
      const z = await zstdCompress(data, zstdOptions(data.length, level));
      if (worthCompressing(z.length, data.length)) {
        payload = z;
        compressed = true;
      }
    }
    const parts = await sealChunkAsync(this.keys, payload, compressed ? CHUNK_ZSTD : CHUNK_RAW, chunkKey(id));
    return {
      id, parts, compressed,
      size: parts[0].length + parts[1].length,
      get blob() { return Buffer.concat(parts); },
    };
  }

  async putChunk(enc: EncodedChunk): Promise<void> {
    await this.storage.put(chunkKey(enc.id), enc.parts);
  }

  /**
   * Opens a sealed chunk (AES-GCM authentication, bound to the chunk's key) and
   * checks its id. `checkId: false` skips recomputing the keyed id: restores do,
   * because they check each entry's SHA-256 end to end; verify keeps it.
   */
  async decodeChunk(id: string, blob: Buffer, o: { checkId?: boolean; size?: number } = {}): Promise<Buffer> {
    const key = chunkKey(id);
    const { kind, plain } = await openChunkAsync(this.keys, blob, key);
    let data: Buffer;
    if (kind === CHUNK_RAW) data = plain;
    else if (kind === CHUNK_ZSTD) {
      try {
        // One output buffer when the plaintext size is known (the manifest records it).
        data = await zstdDecompress(plain, { chunkSize: o.size ? Math.min(ZSTD_CHUNK, Math.max(64 * 1024, o.size)) : ZSTD_CHUNK });
      } catch {
        throw new IntegrityError(`chunk ${id}: cannot decompress`, key);
      }
    } else throw new IntegrityError(`chunk ${id}: unknown encoding`, key);
    if (o.checkId !== false && (await this.chunkIdAsync(data)) !== id) throw new IntegrityError(`chunk ${id}: content does not match its id`, key);
    if (o.size !== undefined && data.length !== o.size) throw new IntegrityError(`chunk ${id}: ${data.length} bytes, the manifest says ${o.size}`, key);
    return data;
  }

  /**
   * Reads, authenticates and checks a chunk. Missing: an IntegrityError naming the chunk.
   * An object larger than the chunk can be sealed as (its manifest size, else the
   * vault's largest chunk) is refused before it is read.
   */
  async getChunk(id: string, o: { checkId?: boolean; size?: number } = {}): Promise<Buffer> {
    let blob: Buffer;
    try {
      blob = await this.storage.get(chunkKey(id), { maxBytes: maxSealedChunkBytes(o.size ?? this.doc.chunker.max) });
    } catch (err) {
      if (err instanceof NotFoundError) throw new IntegrityError(`chunk ${id} is missing from ${this.storage.url}`, chunkKey(id));
      throw err;
    }
    return this.decodeChunk(id, blob, o);
  }

  /** Ids (and stored sizes) of every chunk in the vault. */
  async listChunks(): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for await (const o of this.storage.list('chunks/')) {
      const id = parseChunkKey(o.key);
      if (id) out.set(id, o.size);
    }
    return out;
  }

  // ---- manifests and the catalog ----

  async writeManifest(key: string, m: Manifest): Promise<number> {
    const z = await zstdCompress(Buffer.from(JSON.stringify(m)));
    const blob = seal(this.keys.dataKey, z, key);
    await this.storage.put(key, blob);
    return blob.length;
  }

  async readManifest(ref: ManifestRef | string): Promise<Manifest> {
    const key = typeof ref === 'string' ? ref : ref.key;
    let blob: Buffer;
    try {
      blob = await this.storage.get(key, { maxBytes: MAX_MANIFEST_BYTES });
    } catch (err) {
      if (err instanceof NotFoundError) throw new NotFoundError(`manifest ${key} not found in ${this.storage.url}`);
      throw err;
    }
    const z = open(this.keys.dataKey, blob, key);
    let m: Manifest;
    try {
      m = JSON.parse((await zstdDecompress(z)).toString('utf8'));
    } catch {
      throw new IntegrityError(`manifest ${key}: cannot decode`, key);
    }
    return m;
  }

  // ---- locks ----

  async lock(kind: 'backup' | 'prune', staleMs = 30 * 60_000): Promise<VaultLock> {
    return VaultLock.acquire(this.storage, kind, staleMs);
  }
}

/** The catalog needs no key: it reads manifest object keys only. */
export async function listCatalog(storage: Storage, component?: string): Promise<ManifestRef[]> {
  const refs: ManifestRef[] = [];
  for await (const o of storage.list(component ? `manifests/${component}/` : 'manifests/')) {
    const r = parseManifestKey(o.key);
    if (r) refs.push(r);
  }
  refs.sort((a, b) => b.time.getTime() - a.time.getTime() || b.key.localeCompare(a.key));
  return refs;
}


/** A lock left by a process on this host that no longer runs (e.g. killed) is stale at once. */
function deadLocalProcess(d: LockDoc): boolean {
  if (d.host !== os.hostname() || d.pid === process.pid) return false;
  try {
    process.kill(d.pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
  // A killed process nobody has reaped yet (a zombie) still answers signal 0.
  try {
    const stat = readFileSync(`/proc/${d.pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
  } catch {
    return false;
  }
}

interface LockDoc {
  kind: 'backup' | 'prune';
  id: string;
  host: string;
  pid: number;
  time: string;
}

/**
 * Cooperative vault locks, as in restic: backups take shared locks, prune an
 * exclusive one. Each side writes its lock first and then looks for the other,
 * so of two racing parties at least one sees the other and backs off. Locks
 * are refreshed while held; one not refreshed for `staleMs` is ignored.
 */
export class VaultLock {
  private timer: NodeJS.Timeout | undefined;
  private constructor(private readonly storage: Storage, readonly key: string, private readonly doc: LockDoc) {}

  static async acquire(storage: Storage, kind: 'backup' | 'prune', staleMs: number): Promise<VaultLock> {
    const id = randomBytes(6).toString('hex');
    const doc: LockDoc = { kind, id, host: os.hostname(), pid: process.pid, time: new Date().toISOString() };
    const key = `locks/${kind}-${id}`;
    await storage.put(key, Buffer.from(JSON.stringify(doc)));
    const others = await VaultLock.active(storage, staleMs);
    const conflict = others.find((o) => o.id !== id && (kind === 'prune' || o.kind === 'prune'));
    if (conflict) {
      await storage.delete(key);
      throw new LockedError(
        `${storage.url} is locked by a ${conflict.kind} on ${conflict.host} (pid ${conflict.pid}) since ${conflict.time}; try again when it has finished`,
      );
    }
    const lock = new VaultLock(storage, key, doc);
    lock.timer = setInterval(() => {
      lock.doc.time = new Date().toISOString();
      storage.put(key, Buffer.from(JSON.stringify(lock.doc))).catch(() => undefined);
    }, Math.max(1000, staleMs / 6));
    lock.timer.unref();
    return lock;
  }

  static async active(storage: Storage, staleMs: number): Promise<LockDoc[]> {
    const out: LockDoc[] = [];
    for await (const o of storage.list('locks/')) {
      try {
        const d = JSON.parse((await storage.get(o.key, { maxBytes: MAX_LOCK_BYTES })).toString('utf8')) as LockDoc;
        if (Date.now() - Date.parse(d.time) < staleMs && !deadLocalProcess(d)) out.push(d);
      } catch {
        // a lock removed while listing, or garbage: not active
      }
    }
    return out;
  }

  async release(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.storage.delete(this.key);
  }
}
