// The vault: a prefix of immutable objects in a Storage backend (format memvault/2).
//
//   vault.json                          format, vault id, chunker params, the master
//                                       secret wrapped by each key provider
//   packs/<id[0:2]>/<id>                many sealed chunks, then a sealed header listing them
//                                       (packs.ts); each chunk [2 raw | 3 zstd][nonce][ciphertext][tag],
//                                       the codec byte and the chunk id bound in the AAD (crypto.ts)
//   index/<id>                          sealed, append-only chunk index: chunk id -> pack, offset,
//                                       length, codec (chunk-index.ts); written after its packs,
//                                       before any manifest that needs them
//   manifests/<component>/<time>.<type>.<id>   sealed, zstd-compressed JSON manifest
//   locks/<backup|prune>-<id>           who is writing or pruning (plain JSON)
//
// memvault/1 vaults (one object chunks/<id[0:2]>/<id> per chunk) are refused
// with a message naming their format: `memvault migrate` packs their chunks
// (the sealed bytes unchanged), writes the index, then rewrites vault.json.
//
// Chunk ids are HMAC-SHA-256 of the plaintext under the vault's id key, so the
// same content anywhere in the vault is stored once. Reading a chunk reads its
// range of the pack, checks the AES-GCM tag (bound to the chunk id) and then
// the id itself (or the entry's SHA-256). A chunk whose index entry names a
// pack that is not there is not present, for dedup or restore.
//
// Compression: a zstd-1 probe of the chunk's first 64 KiB decides. Nearly
// incompressible data (random, already compressed: the probe saves < 5%) is
// stored raw; data that compresses a little (float32 weights, ~7%) gets zstd
// level 1, which saves as much there as level 3 at less CPU (like restic's
// "auto" mode); compressible data (text, JSON, SQLite pages) gets level 3.
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import zlib from 'node:zlib';
import { promisify } from 'node:util';
import type { KeyProvider, Storage, WrappedSecret } from './ports.ts';
import { type VaultKeys, CHUNK_RAW, CHUNK_ZSTD, deriveKeys, seal, open, chunkId, chunkIdAsync, sealChunkAsync, openChunkAsync } from './crypto.ts';
import { type ChunkerParams, DEFAULT_CHUNKER } from './chunker.ts';
import { ZSTD_CHUNK, chunkKey, compressionLevel, maxSealedChunkBytes, worthCompressing, zstdOptions } from './chunk-codec.ts';
import { type EntryPart, type Manifest, type ManifestHeader, type ManifestRef, parseManifestKey } from './manifest.ts';
import { loadEntries } from './entry-log.ts';
import { IntegrityError, NotFoundError, PermanentError, WrongKeyError } from './errors.ts';
import { type LockKind, MAX_LOCK_BYTES, VaultLock } from './lock.ts';
import type { SeenMemory } from './catalog.ts';
import { type ChunkIndex, type ChunkLoc, loadIndex } from './chunk-index.ts';
import { PACK_PREFIX, PackWriter, packKey, parsePackKey, readPackHeader } from './packs.ts';

export { VaultLock };

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
/** A lock object: a line of JSON (read by lock.ts). */
export { MAX_LOCK_BYTES };
/** Heads and retention records: a few hundred bytes of sealed JSON. */
export const MAX_RECORD_BYTES = 64 * 1024;

/** The vault format this code reads and writes. */
export const VAULT_FORMAT = 'memvault/2';
export type VaultFormat = 'memvault/1' | 'memvault/2';

export interface VaultDoc {
  format: VaultFormat;
  vaultId: string;
  createdAt: string;
  chunker: ChunkerParams;
  keys: WrappedSecret[];
  /** Sealed known plaintext: proves a candidate master secret is this vault's. */
  check: string;
  /**
   * HMAC-SHA-256 (key derived from the vault secret) over every other field:
   * chunker settings and key wrappings changed by someone without the secret
   * are refused, never obeyed.
   */
  mac: string;
}

/**
 * Chunker settings a vault may have. Outside these a hostile vault.json could
 * make a backup write one object per few bytes or buffer gigabytes per chunk.
 */
export const CHUNKER_BOUNDS = { min: 64 * 1024, max: 64 * 1024 * 1024 };

/** The authentication code of vault.json's fields (under the key derived from the vault secret). */
export function docMac(key: Buffer, d: Omit<VaultDoc, 'mac'>): string {
  const fields = [d.format, d.vaultId, d.createdAt, d.chunker.min, d.chunker.avg, d.chunker.max, d.check,
    ...d.keys.flatMap((k) => [k.type, k.keyId, k.blob])];
  return createHmac('sha256', key).update(JSON.stringify(fields)).digest('hex');
}

/** Bounds-checks every field of vault.json before any of it is used. */
export function checkVaultDoc(doc: unknown, where: string, o: { requireMac?: boolean; allowV1?: boolean } = {}): VaultDoc {
  const bad = (what: string): never => { throw new IntegrityError(`${where}: ${what}; the vault's configuration is damaged or was tampered with`, VAULT_CONFIG_KEY); };
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) bad('not a JSON object');
  const d = doc as Partial<VaultDoc>;
  if (d.format === 'memvault/1' && !o.allowV1) {
    throw new VaultFormatError(`${where}: this vault is in format memvault/1 (one object per chunk); this memvault reads memvault/2 (pack files and a chunk index). Run \`memvault migrate\` once to convert it (resumable; it holds the vault's prune lock while it runs)`);
  }
  if (d.format !== 'memvault/1' && d.format !== VAULT_FORMAT) {
    throw new VaultFormatError(`${where}: unsupported vault format ${JSON.stringify(d.format)}; this memvault reads ${VAULT_FORMAT}: a newer memvault made it, upgrade memvault to use this vault`);
  }
  if (typeof d.vaultId !== 'string' || !/^[0-9a-f]{16}$/.test(d.vaultId)) bad(`vaultId ${JSON.stringify(d.vaultId)} is not 16 hex digits`);
  if (typeof d.createdAt !== 'string' || Number.isNaN(Date.parse(d.createdAt))) bad(`createdAt ${JSON.stringify(d.createdAt)} is not a time`);
  const c = d.chunker as ChunkerParams | undefined;
  const int = (n: unknown) => typeof n === 'number' && Number.isInteger(n);
  if (!c || !int(c.min) || !int(c.avg) || !int(c.max)) bad(`chunker ${JSON.stringify(c)} is not {min, avg, max} in bytes`);
  if (!(c!.min >= CHUNKER_BOUNDS.min && c!.min <= c!.avg && c!.avg <= c!.max && c!.max <= CHUNKER_BOUNDS.max)) {
    bad(`chunker ${JSON.stringify(c)} is out of bounds (${CHUNKER_BOUNDS.min} <= min <= avg <= max <= ${CHUNKER_BOUNDS.max})`);
  }
  if ((c!.avg & (c!.avg - 1)) !== 0) bad(`chunker avg ${c!.avg} is not a power of two`);
  if (!Array.isArray(d.keys) || d.keys.length === 0 || d.keys.length > 64
    || !d.keys.every((k) => k && typeof k.type === 'string' && typeof k.keyId === 'string' && typeof k.blob === 'string' && k.blob.length < 16384)) {
    bad('keys is not a list of key wrappings');
  }
  if (typeof d.check !== 'string' || d.check.length > 1024) bad('check is missing');
  if (d.mac === undefined && o.requireMac !== false) {
    throw new IntegrityError(`${where}: it carries no authentication code (mac). A vault made by memvault before vault.json was authenticated has none: if this vault is yours and its settings are as you made them, run \`memvault init --authenticate-vault-config\` once; otherwise someone removed it, and nothing will be written`, VAULT_CONFIG_KEY);
  }
  if (d.mac !== undefined && (typeof d.mac !== 'string' || !/^[0-9a-f]{64}$/.test(d.mac))) bad('its authentication code (mac) is malformed');
  return d as VaultDoc;
}

export { chunkKey };

/** A vault of a format this code does not open (permanent: a retry cannot fix it). */
export class VaultFormatError extends PermanentError {
  override name = 'VaultFormatError';
}

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

/** getChunks: chunks of a pack at most this far apart are read in one request, the gap dropped. */
const READ_GAP = 256 * 1024;
/** getChunks: the most bytes one request reads. */
const READ_RUN = 8 * 1024 * 1024;

export class Vault {
  /** Manifests opened by this process, by key (objects never change): the catalog reads each once. */
  readonly catalogCache = new Map<string, unknown>();
  /** This machine's memory of the vault's history, when there is one (not on Lambda). */
  seen: SeenMemory | null = null;

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
    const unsigned = {
      format: VAULT_FORMAT as VaultFormat,
      vaultId,
      createdAt: from?.doc.createdAt ?? new Date().toISOString(),
      chunker: from?.doc.chunker ?? DEFAULT_CHUNKER,
      keys: wrapped,
      check: seal(keys.dataKey, Buffer.from(CHECK_PLAINTEXT), `check:${vaultId}`).toString('base64'),
    };
    const doc: VaultDoc = { ...unsigned, mac: docMac(keys.configKey, unsigned) };
    checkVaultDoc(doc, `${storage.url}/${VAULT_CONFIG_KEY}`);
    await storage.put(VAULT_CONFIG_KEY, Buffer.from(JSON.stringify(doc, null, 2)));
    return new Vault(storage, doc, keys);
  }

  static async readDoc(storage: Storage, o: { allowV1?: boolean } = {}): Promise<VaultDoc> {
    let raw: Buffer;
    try {
      raw = await storage.get(VAULT_CONFIG_KEY, { maxBytes: MAX_VAULT_DOC_BYTES });
    } catch (err) {
      if (err instanceof NotFoundError) throw new NotFoundError(`${storage.url} holds no vault (run \`memvault init\`)`);
      throw err;
    }
    let doc: unknown;
    try {
      doc = JSON.parse(raw.toString('utf8'));
    } catch {
      throw new IntegrityError(`${storage.url}/${VAULT_CONFIG_KEY} is not valid JSON`, VAULT_CONFIG_KEY);
    }
    return checkVaultDoc(doc, `${storage.url}/${VAULT_CONFIG_KEY}`, o);
  }

  /** Opens a vault with a key provider. Throws WrongKeyError if it is not one of the vault's keys. */
  static async open(storage: Storage, provider: KeyProvider): Promise<Vault> {
    const { vault } = await Vault.openWithSecret(storage, provider);
    return vault;
  }

  static async openWithSecret(storage: Storage, provider: KeyProvider, o: { allowV1?: boolean } = {}): Promise<{ vault: Vault; secret: Buffer }> {
    const doc = await Vault.readDoc(storage, o);
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
    const { mac, ...unsigned } = doc;
    const want = Buffer.from(docMac(keys.configKey, unsigned), 'hex');
    if (!timingSafeEqual(want, Buffer.from(mac, 'hex'))) {
      throw new IntegrityError(`${storage.url}/${VAULT_CONFIG_KEY} fails its authentication: its settings or key wrappings were changed without the vault key; nothing was written (restore vault.json from the other vault or a copy)`, VAULT_CONFIG_KEY);
    }
    return { vault: new Vault(storage, doc, keys), secret };
  }

  /**
   * Gives a vault.json written before it was authenticated its authentication
   * code, on the operator's word (`memvault init --authenticate-vault-config`):
   * the settings are bounds-checked and the key must open the vault first.
   * Returns false when it already had one (and it holds).
   */
  static async authenticateConfig(storage: Storage, provider: KeyProvider): Promise<boolean> {
    const raw = JSON.parse((await storage.get(VAULT_CONFIG_KEY, { maxBytes: MAX_VAULT_DOC_BYTES })).toString('utf8')) as unknown;
    const where = `${storage.url}/${VAULT_CONFIG_KEY}`;
    const doc = checkVaultDoc(raw, where, { requireMac: false, allowV1: true });
    if (doc.mac !== undefined) {
      await Vault.openWithSecret(storage, provider, { allowV1: true });
      return false;
    }
    const candidates = doc.keys.filter((k) => k.type === provider.type && k.keyId === provider.keyId);
    if (candidates.length === 0) throw new WrongKeyError(`${storage.url}: ${provider.type} key ${provider.keyId} is not a key of this vault`);
    const keys = deriveKeys(await provider.unwrap(candidates[0], { vault: doc.vaultId }), doc.vaultId);
    try {
      open(keys.dataKey, Buffer.from(doc.check, 'base64'), `check:${doc.vaultId}`);
    } catch {
      throw new WrongKeyError(`${storage.url}: the unwrapped secret does not open this vault (wrong key or damaged vault.json)`);
    }
    const { mac: _none, ...unsigned } = doc;
    await storage.put(VAULT_CONFIG_KEY, Buffer.from(JSON.stringify({ ...unsigned, mac: docMac(keys.configKey, unsigned) }, null, 2)));
    return true;
  }

  /** Adds a wrapping of the master secret for another provider (e.g. the DR region's KMS key). */
  static async addKey(storage: Storage, current: KeyProvider, extra: KeyProvider): Promise<void> {
    const { vault, secret } = await Vault.openWithSecret(storage, current);
    if (vault.doc.keys.some((k) => k.type === extra.type && k.keyId === extra.keyId)) return;
    const { mac: _old, ...rest } = vault.doc;
    const unsigned = { ...rest, keys: [...vault.doc.keys, await extra.wrap(secret, { vault: vault.id })] };
    const doc: VaultDoc = { ...unsigned, mac: docMac(vault.keys.configKey, unsigned) };
    await storage.put(VAULT_CONFIG_KEY, Buffer.from(JSON.stringify(doc, null, 2)));
  }

  /**
   * Rewrites the vault's key wrappings (memvault key add/remove/rotate, core/keys.ts):
   * opens with `current` (so only a holder of a vault key changes them), lets `change`
   * return the new list, and stores vault.json re-authenticated. The master secret,
   * and so every object, stays as it is. Returns the old and the new list.
   */
  static async updateKeys(
    storage: Storage, current: KeyProvider,
    change: (keys: WrappedSecret[], wrap: (p: KeyProvider) => Promise<WrappedSecret>) => Promise<WrappedSecret[]>,
  ): Promise<{ before: WrappedSecret[]; after: WrappedSecret[] }> {
    const { vault, secret } = await Vault.openWithSecret(storage, current);
    const before = vault.doc.keys;
    const after = await change([...before], (p) => p.wrap(secret, { vault: vault.id }));
    const { mac: _old, ...rest } = vault.doc;
    const unsigned = { ...rest, keys: after };
    const doc: VaultDoc = { ...unsigned, mac: docMac(vault.keys.configKey, unsigned) };
    checkVaultDoc(doc, `${storage.url}/${VAULT_CONFIG_KEY}`);
    await storage.put(VAULT_CONFIG_KEY, Buffer.from(JSON.stringify(doc, null, 2)));
    return { before, after };
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
   * Stores chunks in one pack and indexes them (tools and tests; backups go through
   * BackupWriter, which fills packs to their target size).
   */
  async putChunk(...encs: EncodedChunk[]): Promise<void> {
    const ix = await this.chunkIndex();
    const w = new PackWriter(this.storage, this.keys.dataKey, ix);
    for (const enc of encs) {
      ix.add(enc.id);
      await w.add(enc.id, enc.parts);
    }
    await w.flush();
  }

  private index: Promise<ChunkIndex> | null = null;
  /** Packs whose header was read and matched the index in this process (restores check each once). */
  private readonly checkedPacks = new Map<string, Promise<Map<string, ChunkLoc>>>();

  /** Every pack object (key -> size). */
  async listPacks(): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for await (const o of this.storage.list(PACK_PREFIX)) if (parsePackKey(o.key)) out.set(o.key, o.size);
    return out;
  }

  /**
   * The chunk index, read now (under the caller's lock): index objects that open, without
   * the entries of packs that are missing. Backups use it as their set of stored chunks
   * and add theirs to it; restores and verify find chunks in it.
   */
  async listChunks(): Promise<ChunkIndex> {
    const p = (async () => loadIndex(this.storage, this.keys.dataKey, { packs: await this.listPacks() }))();
    this.index = p;
    p.catch(() => { if (this.index === p) this.index = null; });
    return p;
  }

  /** The chunk index read once per process (listChunks reads it again). */
  chunkIndex(): Promise<ChunkIndex> {
    return this.index ?? this.listChunks();
  }

  /** Where a chunk is; an IntegrityError naming it (and any damaged index object) when nowhere. */
  async locate(id: string): Promise<ChunkLoc> {
    const ix = await this.chunkIndex();
    const loc = ix.get(id);
    if (loc) return loc;
    const why = ix.damaged.length
      ? `; index object(s) ${ix.damaged.map((d) => d.key).join(', ')} are damaged (${ix.damaged[0].problem}): run \`memvault verify\``
      : ix.missingPacks.size ? `; the index names packs that are missing: ${[...ix.missingPacks].slice(0, 3).map(packKey).join(', ')}` : '';
    throw new IntegrityError(`chunk ${id} is missing from ${this.storage.url} (in no index object of a pack that is there)${why}`, ix.damaged[0]?.key ?? chunkKey(id));
  }

  /**
   * Reads a pack's header once per process and checks it against the index: a restore
   * refuses a pack whose header is damaged (named), as verify reports it.
   */
  checkPack(pack: string): Promise<Map<string, ChunkLoc>> {
    let p = this.checkedPacks.get(pack);
    if (!p) {
      p = (async () => {
        const key = packKey(pack);
        let size: number | undefined;
        for await (const o of this.storage.list(key)) if (o.key === key) size = o.size;
        if (size === undefined) throw new IntegrityError(`pack ${key} is missing from ${this.storage.url}`, key);
        const entries = await readPackHeader(this.storage, this.keys.dataKey, key, size);
        return new Map(entries.map((e) => [e.id, { pack, offset: e.offset, length: e.length, kind: e.kind }]));
      })();
      this.checkedPacks.set(pack, p);
      p.catch(() => this.checkedPacks.delete(pack));
    }
    return p;
  }

  /** The locations of chunks, each pack's header checked against them. */
  async locateChecked(id: string): Promise<ChunkLoc> {
    const loc = await this.locate(id);
    const header = await this.checkPack(loc.pack);
    const h = header.get(id);
    if (!h || h.offset !== loc.offset || h.length !== loc.length) {
      throw new IntegrityError(`pack ${packKey(loc.pack)}: its header does not list chunk ${id} where the index has it`, packKey(loc.pack));
    }
    return loc;
  }

  /**
   * Reads, authenticates and checks a chunk from its pack. Missing (no index entry, or its
   * pack gone): an IntegrityError naming the chunk and the pack.
   */
  async getChunk(id: string, o: { checkId?: boolean; size?: number } = {}): Promise<Buffer> {
    return (await this.getChunks([{ id, size: o.size }], { checkId: o.checkId }))[0];
  }

  /**
   * Reads several chunks; neighbours in one pack (contiguous ranges, up to 8 MiB) come in
   * one ranged read. A chunk that fails its checks is read once more before it is called
   * damaged: a bad read (a flipped bit or a cut body on the way) is not damage at rest.
   */
  async getChunks(chunks: readonly { id: string; size?: number }[], o: { checkId?: boolean } = {}): Promise<Buffer[]> {
    const locs = await Promise.all(chunks.map((c) => this.locateChecked(c.id)));
    chunks.forEach((c, i) => {
      // The index is authenticated, but a chunk larger than its manifest size allows is refused unread.
      const max = maxSealedChunkBytes(c.size ?? this.doc.chunker.max);
      if (locs[i].length > max) throw new IntegrityError(`chunk ${c.id} in pack ${packKey(locs[i].pack)}: ${locs[i].length} bytes, more than the ${max} expected`, packKey(locs[i].pack));
    });
    const out: Buffer[] = new Array(chunks.length);
    // In pack order, whatever the order asked for (a batch of small files names chunks of
    // neighbouring files): chunks of one pack less than READ_GAP apart are read in one request
    // of at most READ_RUN bytes, the gap read and dropped.
    const order = chunks.map((_, i) => i).sort((a, b) => (locs[a].pack < locs[b].pack ? -1 : locs[a].pack > locs[b].pack ? 1 : locs[a].offset - locs[b].offset));
    for (let i = 0; i < order.length;) {
      const start = locs[order[i]].offset;
      let end = start + locs[order[i]].length;
      let j = i + 1;
      while (j < order.length) {
        const l = locs[order[j]];
        if (l.pack !== locs[order[i]].pack || l.offset - end > READ_GAP || Math.max(end, l.offset + l.length) - start > READ_RUN) break;
        end = Math.max(end, l.offset + l.length);
        j++;
      }
      const run = order.slice(i, j);
      const got = await rereadOnce(async () => {
        const key = packKey(locs[run[0]].pack);
        let blob: Buffer;
        try {
          blob = await this.storage.getRange(key, start, end - start);
        } catch (err) {
          if (err instanceof NotFoundError) throw new IntegrityError(`chunk ${chunks[run[0]].id}: its pack ${key} is missing from ${this.storage.url}`, key);
          throw err;
        }
        const res: Buffer[] = [];
        for (const k of run) {
          const c = chunks[k];
          const part = blob.subarray(locs[k].offset - start, locs[k].offset - start + locs[k].length);
          try {
            res.push(await this.decodeChunk(c.id, part, { checkId: o.checkId, size: c.size }));
          } catch (err) {
            if (!(err instanceof IntegrityError)) throw err;
            throw new IntegrityError(`chunk ${c.id} in pack ${key}: ${err.message}`, key);
          }
        }
        return res;
      });
      run.forEach((k, n) => { out[k] = got[n]; });
      i = j;
    }
    return out;
  }

  // ---- manifests and the catalog ----

  /**
   * Writes a sealed manifest; returns its size and the SHA-256 of the sealed object (the chain's
   * digest). A manifest whose entries are in parts is written as format /2, without `entries`.
   */
  async writeManifest(key: string, m: Manifest | ManifestHeader): Promise<{ bytes: number; digest: string }> {
    const stored: ManifestHeader = m.entryParts
      ? { ...m, format: 'memvault-manifest/2', entries: undefined }
      : { ...m, format: 'memvault-manifest/1' };
    const z = await zstdCompress(Buffer.from(JSON.stringify(stored)));
    const blob = seal(this.keys.dataKey, z, key);
    await this.storage.put(key, blob);
    return { bytes: blob.length, digest: createHash('sha256').update(blob).digest('hex') };
  }

  /** A manifest with all its entries in memory (read from its parts when it has them). */
  async readManifest(ref: ManifestRef | string): Promise<Manifest> {
    const h = await this.readManifestHeader(ref);
    return { ...h, entries: await loadEntries(this, h) };
  }

  /** A manifest as stored: entries inline, or entry parts to read with readEntries (entry-log.ts). */
  async readManifestHeader(ref: ManifestRef | string): Promise<ManifestHeader> {
    return (await this.readManifestWithDigest(typeof ref === 'string' ? ref : ref.key)).manifest;
  }

  /** Reads, authenticates and decodes a manifest (as stored); also returns the SHA-256 of the sealed object. */
  async readManifestWithDigest(key: string): Promise<{ manifest: ManifestHeader; digest: string }> {
    return rereadOnce(() => this.readManifestOnce(key));
  }

  private async readManifestOnce(key: string): Promise<{ manifest: ManifestHeader; digest: string }> {
    let blob: Buffer;
    try {
      blob = await this.storage.get(key, { maxBytes: MAX_MANIFEST_BYTES });
    } catch (err) {
      if (err instanceof NotFoundError) throw new NotFoundError(`manifest ${key} not found in ${this.storage.url}`);
      throw err;
    }
    const z = open(this.keys.dataKey, blob, key);
    let m: ManifestHeader;
    try {
      m = JSON.parse((await zstdDecompress(z)).toString('utf8'));
    } catch {
      throw new IntegrityError(`manifest ${key}: cannot decode`, key);
    }
    if (!m || typeof m !== 'object') throw new IntegrityError(`manifest ${key}: not a manifest`, key);
    const ok = m.format === 'memvault-manifest/2'
      ? !('entries' in m) && Array.isArray(m.entryParts) && m.entryParts.every(validPart)
      : Array.isArray(m.entries) && m.entryParts === undefined;
    if (!ok) throw new IntegrityError(`manifest ${key}: not a manifest`, key);
    return { manifest: m, digest: createHash('sha256').update(blob).digest('hex') };
  }

  /** Small sealed JSON records (heads, retention records): authenticated, bound to their key. */
  async writeSealedJson(key: string, value: unknown): Promise<void> {
    await this.storage.put(key, seal(this.keys.dataKey, Buffer.from(JSON.stringify(value)), key));
  }

  async readSealedJson(key: string): Promise<unknown> {
    const blob = await this.storage.get(key, { maxBytes: MAX_RECORD_BYTES });
    const plain = open(this.keys.dataKey, blob, key);
    try {
      return JSON.parse(plain.toString('utf8'));
    } catch {
      throw new IntegrityError(`${key}: cannot decode`, key);
    }
  }

  // ---- locks ----

  async lock(kind: LockKind, staleMs?: number): Promise<VaultLock> {
    return VaultLock.acquire(this.storage, kind, staleMs);
  }
}

function validPart(p: EntryPart): boolean {
  return !!p && Array.isArray(p.chunks) && Number.isSafeInteger(p.size) && p.size >= 0 && typeof p.sha256 === 'string'
    && Number.isSafeInteger(p.count) && p.count >= 0 && p.chunks.every((c) => typeof c?.id === 'string' && Number.isSafeInteger(c.size));
}

/** Runs a read; if it fails its integrity checks, runs it once more (a bad read is not damage at rest). */
export async function rereadOnce<T>(read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (err) {
    if (!(err instanceof IntegrityError) || /is missing from|bytes, more than the/.test(err.message)) throw err;
    return read();
  }
}

/**
 * Manifest object names, without the key: what an auditor who may only list can
 * see. A name proves nothing (anyone with write access to the storage can make
 * one): nothing that deletes, restores, replicates or reports health may act on
 * it; they read the authenticated catalog (core/catalog.ts).
 */
export async function listManifestNames(storage: Storage, component?: string): Promise<ManifestRef[]> {
  const refs: ManifestRef[] = [];
  for await (const o of storage.list(component ? `manifests/${component}/` : 'manifests/')) {
    const r = parseManifestKey(o.key);
    if (r) refs.push(r);
  }
  refs.sort((a, b) => b.time.getTime() - a.time.getTime() || b.key.localeCompare(a.key));
  return refs;
}
