// Races between runs that change a vault, made deterministic: one CLI process
// is stopped (SIGSTOP, through the MEMVAULT_TEST_PAUSE seam in core/pause.ts)
// at the critical point, the other operation runs, then the first continues.
// Each must end with every backup reported as successful restorable, byte for
// byte, and `verify --read-data` clean.
import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { makeFixture, writeTree } from '../helpers/fixture.ts';
import { cli, stopped, type CliResult } from '../helpers/cli.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const LAUNCHER = path.join(ROOT, 'cli', 'memvault.mjs');

/** Starts the CLI with extra environment; resolves with its result when it exits. */
function start(args: string[], env: Record<string, string>) {
  const child = spawn(process.execPath, [LAUNCHER, ...args], { cwd: ROOT, env: { ...process.env, MEMVAULT_LOG: 'silent', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => { stdout += d; });
  child.stderr.on('data', (d) => { stderr += d; });
  const done = new Promise<CliResult>((resolve) => child.on('exit', (code) => resolve({ code: code ?? -1, stdout, stderr })));
  return { child, done };
}


const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function setup() {
  const f = await makeFixture({ graph: { kind: 'files', path: 'graph', retention: { keepLast: 1 } } });
  const x = randomBytes(1200 * 1024);
  const tree = path.join(f.dir, 'graph');
  // Backup 1 holds x; backup 2 does not: retention (keepLast 1) forgets backup 1 and prunes x's chunks.
  await writeTree(tree, { 'x.bin': x, 'a.txt': 'one' });
  expect((await cli(['backup', '--config', f.cfgFile, '--type', 'full'])).code).toBe(0);
  await fs.rm(path.join(tree, 'x.bin'));
  await writeTree(tree, { 'a.txt': 'two' });
  expect((await cli(['backup', '--config', f.cfgFile, '--type', 'full'])).code).toBe(0);
  // The tree gets x back: the next backup finds x's chunks in the vault and skips storing them.
  await writeTree(tree, { 'x.bin': x, 'a.txt': 'three' });
  return { f, x };
}

async function restoredX(f: { cfgFile: string; dir: string }, from = 'primary'): Promise<Buffer> {
  const target = path.join(f.dir, `restored-${randomBytes(3).toString('hex')}`);
  const r = await cli(['restore', '--config', f.cfgFile, '--latest', '--target', target, '--from', from]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return fs.readFile(path.join(target, 'graph', 'x.bin'));
}

async function verifyClean(f: { cfgFile: string }, from = 'primary'): Promise<void> {
  const v = await cli(['verify', '--config', f.cfgFile, '--read-data', '--from', from]);
  expect(v.stdout).toContain('no problems found');
  expect(v.code).toBe(0);
}

describe('races between backup, retention and replicate', { timeout: 180_000 }, () => {
  it('a backup paused past its lock lifetime while retention prunes the chunks it skipped is not recorded, and the next one is whole', async () => {
    const { f, x } = await setup();
    const b = start(['backup', '--config', f.cfgFile, '--type', 'full'], { MEMVAULT_TEST_PAUSE: 'backup-listed', MEMVAULT_LOCK_STALE_MS: '2000' });
    await stopped(b.child.pid!);
    await sleep(2500); // its lock is now dead to others
    const ret = await cli(['retention', '--config', f.cfgFile], { env: { MEMVAULT_LOCK_STALE_MS: '2000' } });
    expect(ret.code).toBe(0);
    expect(ret.stdout).toMatch(/1 backups forgotten/);
    b.child.kill('SIGCONT');
    const r = await b.done;
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/backup of graph not recorded: .* chunk\(s\) it needs .* no longer in/);
    // Nothing was recorded; the next backup stores x again and restores whole.
    expect((await cli(['backup', '--config', f.cfgFile, '--type', 'full'])).code).toBe(0);
    expect((await restoredX(f)).equals(x)).toBe(true);
    await verifyClean(f);
  });

  it('a backup started while prune holds its lock waits for it, then stores what prune removed', async () => {
    const { f, x } = await setup();
    const p = start(['retention', '--config', f.cfgFile], { MEMVAULT_TEST_PAUSE: 'prune-planned' });
    await stopped(p.child.pid!);
    const b = start(['backup', '--config', f.cfgFile, '--type', 'full'], {});
    await sleep(3000);
    expect(b.child.exitCode).toBe(null); // waiting for the prune lock
    p.child.kill('SIGCONT');
    expect((await p.done).code).toBe(0);
    const r = await b.done;
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect((await restoredX(f)).equals(x)).toBe(true);
    await verifyClean(f);
  });

  it('a prune paused past its lock lifetime stops deleting when it resumes: the backup that ran meanwhile stays whole', async () => {
    const { f, x } = await setup();
    const p = start(['retention', '--config', f.cfgFile], { MEMVAULT_TEST_PAUSE: 'prune-planned', MEMVAULT_LOCK_STALE_MS: '2000' });
    await stopped(p.child.pid!);
    await sleep(2500);
    // The prune's lock is dead: the backup goes ahead and reuses x's chunks, which prune had planned to delete.
    const b = await cli(['backup', '--config', f.cfgFile, '--type', 'full'], { env: { MEMVAULT_LOCK_STALE_MS: '2000' } });
    expect(b.stderr).toBe('');
    expect(b.code).toBe(0);
    p.child.kill('SIGCONT');
    const pr = await p.done;
    expect(pr.stdout).toMatch(/PRUNE SKIPPED: prune stopped after 0 chunk\(s\): its lock lapsed/);
    expect((await restoredX(f)).equals(x)).toBe(true);
    await verifyClean(f);
  });

  it('replicate holds both vaults: retention waits, a backup during it is copied whole by the next replicate', async () => {
    const { f, x } = await setup();
    const rep = start(['replicate', '--config', f.cfgFile], { MEMVAULT_TEST_PAUSE: 'replicate-listed' });
    await stopped(rep.child.pid!);
    // Retention of either vault must not prune under a replication.
    const ret = await cli(['retention', '--config', f.cfgFile]);
    expect(ret.code).toBe(1);
    expect(ret.stderr).toMatch(/locked by a replicate/);
    // A backup may run: it adds, replicate only copies backups whose chunks it has copied first.
    expect((await cli(['backup', '--config', f.cfgFile, '--type', 'full'])).code).toBe(0);
    rep.child.kill('SIGCONT');
    expect((await rep.done).code).toBe(0);
    await verifyClean(f, 'secondary');
    expect((await cli(['replicate', '--config', f.cfgFile])).code).toBe(0);
    await verifyClean(f, 'secondary');
    expect((await restoredX(f, 'secondary')).equals(x)).toBe(true);
  });
});
