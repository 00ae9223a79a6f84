// Local key file provider (the embedded default): a 32-byte random key stored
// base64 in a file of mode 0600. It wraps the vault master secret with
// AES-256-GCM; the key id is a fingerprint of the key, never the key.
//
// A key file is used only when it is a regular file (not a symlink), owned by
// the user running memvault, and grants group and others no access: a key
// another user owns could be swapped for theirs, one others can read is no
// longer secret. Checked on the open descriptor, at init and on every load;
// refused with the command that fixes it.
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

  /** Creates a new key file; one already there is never overwritten but loaded, with load's checks. */
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
    let fh: fs.FileHandle;
    try {
      fh = await fs.open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        throw new ConfigError(`encryption.key: key file ${file} does not exist (run \`memvault init\` to create it)`);
      }
      if (code === 'ELOOP') {
        throw new ConfigError(`encryption.key: key file ${file} is a symbolic link; memvault reads a key only from a regular file: point encryption.key at the file itself`);
      }
      throw err;
    }
    try {
      checkKeyFile(file, await fh.stat());
      text = (await fh.readFile('utf8')).trim();
    } finally {
      await fh.close();
    }
    if (!text.startsWith(PREFIX)) throw new ConfigError(`encryption.key: ${file} is not a memvault key file`);
    const key = Buffer.from(text.slice(PREFIX.length), 'base64');
    if (key.length !== 32) throw new ConfigError(`encryption.key: ${file} holds a key of ${key.length} bytes, expected 32`);
    return new LocalKeyProvider(key, file);
  }

  /** True when something (even a dangling symlink) is at `file`: init never creates a key over it. */
  static async exists(file: string): Promise<boolean> {
    return fs.lstat(file).then(() => true, () => false);
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

/** Refuses a key file that is not a regular file, not the current user's, or open to group or others. */
function checkKeyFile(file: string, st: { mode: number; uid: number; isFile(): boolean }): void {
  if (!st.isFile()) throw new ConfigError(`encryption.key: ${file} is not a regular file; point encryption.key at a memvault key file`);
  if (process.platform === 'win32' || typeof process.getuid !== 'function') return;
  const problems: string[] = [];
  const uid = process.getuid();
  if (st.uid !== uid) {
    problems.push(
      `encryption.key: key file ${file} is owned by uid ${st.uid}, not by the user running memvault (uid ${uid}); ` +
        `a key another user controls can be replaced or read by them: run \`chown ${uid} ${file}\` (as root) if the file is yours, or run \`memvault init\` with a key file of your own`,
    );
  }
  if ((st.mode & 0o077) !== 0) {
    problems.push(
      `encryption.key: key file ${file} has mode 0${(st.mode & 0o777).toString(8)}, which gives group or others access to the key; run \`chmod 600 ${file}\``,
    );
  }
  if (problems.length > 0) throw new ConfigError(problems);
}
