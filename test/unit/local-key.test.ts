// The local key file is used only when it is the current user's own regular
// file that nobody else can access: `memvault init` no longer adopts a key
// file of another user, one readable by others, a symlink or a FIFO, and every
// command that loads the key refuses the same, saying how to fix it. Real
// files; the other-user cases run as root (chown) and as an unprivileged user
// through the real CLI.
import { beforeEach, describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { LocalKeyProvider } from '../../functions/adapters/keys/local.ts';
import { ConfigError } from '../../functions/core/errors.ts';
import { initVaults } from '../../functions/ops.ts';
import { openVault } from '../../functions/services.ts';
import { makeFixture, type Fixture } from '../helpers/fixture.ts';
import { cli } from '../helpers/cli.ts';

const isRoot = process.getuid?.() === 0;
const keyText = () => `memvault-key-v1:${randomBytes(32).toString('base64')}\n`;

async function refusal(p: Promise<unknown>): Promise<ConfigError> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(ConfigError);
  return err as ConfigError;
}

describe('local key file checks', () => {
  let f: Fixture;
  let keyFile: string;
  const vaultJson = () => path.join(f.dir, 'vault-primary', 'vault.json');
  beforeEach(async () => {
    f = await makeFixture({ data: { kind: 'files', path: 'src' } }, { secondary: false, init: false });
    keyFile = path.join(f.dir, 'memvault.key');
  });

  it('init creates the key as the current user, mode 0600, and every later load accepts it (root too)', async () => {
    const r = await initVaults(f.cfg);
    expect(r.key.created).toBe(true);
    const st = await fs.stat(keyFile);
    expect(st.mode & 0o777).toBe(0o600);
    expect(st.uid).toBe(process.getuid!());
    expect((await openVault(f.cfg)).id).toBe(r.primary.vaultId);
  });

  it('init refuses an existing key file that group or others can read, with the chmod that fixes it, and changes nothing', async () => {
    const text = keyText();
    await fs.writeFile(keyFile, text, { mode: 0o640 });
    await fs.chmod(keyFile, 0o640);
    const err = await refusal(initVaults(f.cfg));
    expect(err.message).toBe(`encryption.key: key file ${keyFile} has mode 0640, which gives group or others access to the key; run \`chmod 600 ${keyFile}\``);
    await expect(fs.access(vaultJson())).rejects.toThrow(); // no vault made with that key
    expect((await fs.stat(keyFile)).mode & 0o777).toBe(0o640); // refused, not silently tightened
    expect(await fs.readFile(keyFile, 'utf8')).toBe(text);

    // Fixed as told: init adopts it.
    await fs.chmod(keyFile, 0o600);
    const r = await initVaults(f.cfg);
    expect(r.key.created).toBe(false);
    expect(r.primary.created).toBe(true);
  });

  it('every command that loads the key refuses one opened to others later (CLI exit 2, the fix named)', async () => {
    await initVaults(f.cfg);
    await fs.chmod(keyFile, 0o604);
    const err = await refusal(openVault(f.cfg));
    expect(err.message).toContain(`run \`chmod 600 ${keyFile}\``);
    const r = await cli(['verify', '--config', f.cfgFile]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`key file ${keyFile} has mode 0604`);
    expect(r.stderr).toContain(`chmod 600 ${keyFile}`);
  });

  it.skipIf(!isRoot)('refuses a key file owned by another user, naming the owner and the chown', async () => {
    await fs.writeFile(keyFile, keyText(), { mode: 0o600 });
    await fs.chown(keyFile, 65534, 65534);
    const err = await refusal(initVaults(f.cfg));
    expect(err.message).toContain(`key file ${keyFile} is owned by uid 65534, not by the user running memvault (uid 0)`);
    expect(err.message).toContain(`run \`chown 0 ${keyFile}\``);
    await expect(fs.access(vaultJson())).rejects.toThrow();
    // Both problems at once are both named.
    await fs.chmod(keyFile, 0o644);
    const both = await refusal(LocalKeyProvider.load(keyFile));
    expect(both.problems).toHaveLength(2);
    expect(both.message).toMatch(/chown 0/);
    expect(both.message).toMatch(/chmod 600/);
  });

  it('refuses a symlink, even to a good key file, and init does not create a key through a dangling one', async () => {
    const real = path.join(f.dir, 'real.key');
    await fs.writeFile(real, keyText(), { mode: 0o600 });
    await LocalKeyProvider.load(real); // a good key file on its own
    await fs.symlink(real, keyFile);
    const err = await refusal(initVaults(f.cfg));
    expect(err.message).toContain(`key file ${keyFile} is a symbolic link`);
    await expect(fs.access(vaultJson())).rejects.toThrow();

    await fs.rm(keyFile);
    const target = path.join(f.dir, 'elsewhere.key');
    await fs.symlink(target, keyFile);
    await refusal(initVaults(f.cfg));
    await expect(fs.access(target)).rejects.toThrow(); // nothing written through the link
  });

  it('refuses what is not a regular file (a FIFO is not waited on, a directory is named)', async () => {
    execFileSync('mkfifo', ['-m', '600', keyFile]);
    const err = await refusal(LocalKeyProvider.load(keyFile));
    expect(err.message).toContain(`${keyFile} is not a regular file`);
    await fs.rm(keyFile);
    await fs.mkdir(keyFile, { mode: 0o700 });
    await refusal(initVaults(f.cfg));
  });

  it.skipIf(!isRoot)('as an unprivileged user: init works with a key it creates, and refuses root\'s key readable by all', async () => {
    const nobody = { uid: 65534, gid: 65534 };
    await fs.chmod(f.dir, 0o777);
    for (let d = path.dirname(f.dir); d !== path.dirname(d); d = path.dirname(d)) {
      if (!((await fs.stat(d)).mode & 0o001)) return; // a parent directory the user cannot pass
    }
    const ok = await cli(['init', '--config', f.cfgFile, '--json'], nobody);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout).key.created).toBe(true);
    expect((await fs.stat(keyFile)).uid).toBe(65534);

    await fs.rm(keyFile);
    await fs.rm(path.join(f.dir, 'vault-primary'), { recursive: true, force: true });
    await fs.writeFile(keyFile, keyText(), { mode: 0o644 });
    await fs.chmod(keyFile, 0o644);
    const r = await cli(['init', '--config', f.cfgFile], nobody);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`is owned by uid 0, not by the user running memvault (uid 65534)`);
    expect(r.stderr).toContain(`chmod 600 ${keyFile}`);
    await expect(fs.access(vaultJson())).rejects.toThrow();
  });
});
