// Local key file provider (the embedded default): a 32-byte random key stored
// base64 in a file of mode 0600. It wraps the vault master secret with
// AES-256-GCM; the key id is a fingerprint of the key, never the key.
import { promises as fs, constants } from 'node:fs';
import path from 'node:path';
import { createHmac, randomBytes } from 'node:crypto';
import type { KeyProvider, WrappedSecret } from '../../core/ports.ts';
import { seal, open } from '../../core/crypto.ts';
import { ConfigError, IntegrityError, WrongKeyError } from '../../core/errors.ts';

const PREFIX = 'memvault-key-v1:';

export class LocalKeyProvider implements KeyProvider {
  readonly type = 'local';
  readonly keyId: string;
  private constructor(private readonly key: Buffer, readonly file: string) {
    this.keyId = createHmac('sha256', key).update('memvault key fingerprint').digest('hex').slice(0, 16);
  }

  /** Creates a new key file (fails if one exists: a key is never overwritten). */
  static async create(file: string): Promise<LocalKeyProvider> {
    const key = randomBytes(32);
    await fs.mkdir(path.dirname(file), { recursive: true });
    try {
      await fs.writeFile(file, `${PREFIX}${key.toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return LocalKeyProvider.load(file);
      throw err;
    }
    return new LocalKeyProvider(key, file);
  }

  static async load(file: string): Promise<LocalKeyProvider> {
    let text: string;
    try {
      text = (await fs.readFile(file, 'utf8')).trim();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new ConfigError(`encryption.key: key file ${file} does not exist (run \`memvault init\` to create it)`);
      }
      throw err;
    }
    if (!text.startsWith(PREFIX)) throw new ConfigError(`encryption.key: ${file} is not a memvault key file`);
    const key = Buffer.from(text.slice(PREFIX.length), 'base64');
    if (key.length !== 32) throw new ConfigError(`encryption.key: ${file} holds a key of ${key.length} bytes, expected 32`);
    const st = await fs.stat(file);
    if ((st.mode & 0o077) !== 0 && process.platform !== 'win32') {
      // Tighten rather than refuse: the key is only ever meant for its owner.
      await fs.chmod(file, 0o600).catch(() => undefined);
    }
    return new LocalKeyProvider(key, file);
  }

  static async exists(file: string): Promise<boolean> {
    return fs.access(file, constants.F_OK).then(() => true, () => false);
  }

  async wrap(secret: Buffer, context: Record<string, string>): Promise<WrappedSecret> {
    return { type: this.type, keyId: this.keyId, blob: seal(this.key, secret, JSON.stringify(context)).toString('base64') };
  }

  async unwrap(w: WrappedSecret, context: Record<string, string>): Promise<Buffer> {
    if (w.type !== this.type || w.keyId !== this.keyId) {
      throw new WrongKeyError(`the key in ${this.file} (id ${this.keyId}) is not a key of this vault (it has ${w.type} key ${w.keyId})`);
    }
    try {
      return open(this.key, Buffer.from(w.blob, 'base64'), JSON.stringify(context));
    } catch (err) {
      if (err instanceof IntegrityError) throw new WrongKeyError(`the key in ${this.file} cannot unwrap this vault's secret`);
      throw err;
    }
  }
}
