// Room before writing (issue 13, "ensure sufficient disk space for restore
// operations"): a restore into a file system that cannot hold the backup's bytes,
// or its number of files, fails before it writes anything, naming the component,
// the target, what it needs and what there is. A real small file system: a tmpfs
// of a few MiB and a few inodes (mounting needs root, as the ENOSPC tests of
// file-storage.test.ts; without it these tests are skipped, as those are).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { cli } from '../helpers/cli.ts';
import { makeFixture, writeTree, type Fixture } from '../helpers/fixture.ts';

const mnt = path.join('/tmp', `memvault-space-${process.pid}`);
let mounted = false;
let f: Fixture;

beforeAll(async () => {
  await fs.mkdir(mnt, { recursive: true });
  try {
    // 24 MiB and 60 inodes: the 32 MiB of weights do not fit, nor do 100 small files.
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=24m,nr_inodes=60', 'tmpfs', mnt], { stdio: 'ignore' });
    mounted = true;
  } catch {
    // not root or no mount privilege: these tests are skipped
  }
  f = await makeFixture({
    weights: { kind: 'files', path: 'weights' },
    notes: { kind: 'files', path: 'notes' },
    small: { kind: 'files', path: 'small' },
  }, { secondary: false });
  await writeTree(path.join(f.dir, 'weights'), { 'model.bin': randomBytes(32 * 1024 * 1024) });
  await writeTree(path.join(f.dir, 'notes'), Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`n${i}.md`, `note ${i}\n`])));
  await writeTree(path.join(f.dir, 'small'), { 'a.json': '{"a":1}\n' });
  const b = await cli(['backup', '--config', f.cfgFile, '--type', 'full']);
  expect(b.code, b.stderr).toBe(0);
}, 120_000);

afterAll(() => {
  if (mounted) execFileSync('umount', ['-l', mnt]);
});

async function entriesUnder(dir: string): Promise<string[]> {
  return fs.readdir(dir, { recursive: true }).catch(() => []);
}

describe('restores check the target has room before writing', () => {
  it('bytes: 32 MiB into 24 MiB fails naming component, target, need and free space; nothing written', async (ctx) => {
    if (!mounted) ctx.skip();
    const target = path.join(mnt, 'r1');
    const r = await cli(['restore', '--latest', '--config', f.cfgFile, '--component', 'weights', '--target', target]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`weights: restoring backup \\S+ needs 0\\.03 GiB \\(\\+16 MiB margin\\) in ${target}/weights; the file system of ${target} has 0\\.02 GiB free`));
    expect(await entriesUnder(path.join(target, 'weights'))).toEqual([]);
  }, 60_000);

  it('inodes: 100 files into a file system with 60 inodes (57 left) fails naming the inodes', async (ctx) => {
    if (!mounted) ctx.skip();
    const target = path.join(mnt, 'r2');
    const r = await cli(['restore', '--latest', '--config', f.cfgFile, '--component', 'notes', '--target', target]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/notes: restoring backup \S+ needs 100 inodes \(files and directories\) in .*; the file system of .* has \d+ free/);
    expect(await entriesUnder(path.join(target, 'notes'))).toEqual([]);
  }, 60_000);

  it('a backup that fits restores there byte for byte', async (ctx) => {
    if (!mounted) ctx.skip();
    const target = path.join(mnt, 'r3');
    const r = await cli(['restore', '--latest', '--config', f.cfgFile, '--component', 'small', '--target', target]);
    expect(r.code, r.stderr).toBe(0);
    expect(await fs.readFile(path.join(target, 'small', 'a.json'), 'utf8')).toBe('{"a":1}\n');
  }, 60_000);

  it('the restore state machine fails the component at restore-component with InsufficientSpaceError, and alerts naming it', async (ctx) => {
    if (!mounted) ctx.skip();
    const input = JSON.stringify({ mode: 'latest', components: ['weights'], target: { dir: path.join(mnt, 'sm'), outsideSandbox: true } });
    const r = await cli(['run', 'restore', '--config', f.cfgFile, '--input', input]);
    expect(r.code).toBe(1);
    expect(r.stdout + r.stderr).toMatch(/InsufficientSpaceError/);
    const alerts = (await fs.readFile(f.alertsFile, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { component?: string; message: string });
    expect(alerts.some((a) => a.component === 'weights' && /needs 0\.03 GiB/.test(a.message))).toBe(true);
    expect(await entriesUnder(path.join(mnt, 'sm'))).toEqual([]);
  }, 120_000);
});
