// The vault's side of space (issue 13, "storage space issues"): a size budget
// (vault.budget, the runbooks' max_size_gb) alerted on before it is reached and
// when it is passed, by backup runs, `memvault retention` and the retention state
// machine; and a backup into a local vault whose disk cannot take what the
// component usually stores refuses to start, naming the component and the disk,
// instead of filling it halfway. The disk is a real small tmpfs (mounting needs
// root, as in file-storage.test.ts; without it that test is skipped).
import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { stringify } from 'yaml';
import { cli } from '../helpers/cli.ts';
import { makeFixture, tempDir, writeTree } from '../helpers/fixture.ts';

interface AlertLine { severity: string; subject: string; message: string; component?: string; details?: Record<string, unknown> }

async function alerts(file: string): Promise<AlertLine[]> {
  const text = await fs.readFile(file, 'utf8').catch(() => '');
  return text.trim() ? text.trim().split('\n').map((l) => JSON.parse(l) as AlertLine) : [];
}

const mounts: string[] = [];
afterAll(() => { for (const m of mounts) execFileSync('umount', ['-l', m]); });

describe('vault size budget', () => {
  it('warns past warnAtPercent and errs past the budget, from backup runs, memvault retention and the retention state machine', async () => {
    // 6 MiB budget, warn at 50%: 4 MiB of random data is 67%, 8 MiB is over.
    const f = await makeFixture({ weights: { kind: 'files', path: 'src', retention: { keepLast: 5 } } }, {
      secondary: false, extra: {},
    });
    const doc = (await import('yaml')).parse(await fs.readFile(f.cfgFile, 'utf8'));
    doc.vault.budget = { maxSizeGb: 6 / 1024, warnAtPercent: 50 };
    await fs.writeFile(f.cfgFile, stringify(doc));
    await writeTree(path.join(f.dir, 'src'), { 'a.bin': randomBytes(4 * 1024 * 1024) });
    expect((await cli(['backup', '--config', f.cfgFile, '--type', 'full'])).code).toBe(0);
    let a = (await alerts(f.alertsFile)).filter((x) => /budget/.test(x.subject));
    expect(a).toHaveLength(1);
    expect(a[0].severity).toBe('warning');
    expect(a[0].message).toMatch(/vault-primary holds 0\.00 GiB, 6\d\.\d% of its budget of 0\.005\d* GiB \(alert threshold 50%\)/);

    await writeTree(path.join(f.dir, 'src'), { 'b.bin': randomBytes(4 * 1024 * 1024) });
    expect((await cli(['backup', '--config', f.cfgFile, '--type', 'full'])).code).toBe(0);
    a = (await alerts(f.alertsFile)).filter((x) => /budget/.test(x.subject));
    expect(a.map((x) => x.severity)).toEqual(['warning', 'error']);
    expect(a[1].subject).toMatch(/^vault over its size budget: file:\/\//);
    expect(a[1].message).toMatch(/over its budget of .* GiB \(13\d\.\d%\): shorten retention, prune \(memvault retention\) or raise vault\.budget\.maxSizeGb/);

    expect((await cli(['retention', '--config', f.cfgFile])).code).toBe(0);
    expect((await alerts(f.alertsFile)).filter((x) => /budget/.test(x.subject)).map((x) => x.severity)).toEqual(['warning', 'error', 'error']);
    const sm = await cli(['run', 'retention', '--config', f.cfgFile]);
    expect(sm.code, sm.stdout + sm.stderr).toBe(0);
    expect((await alerts(f.alertsFile)).filter((x) => /budget/.test(x.subject)).map((x) => x.severity)).toEqual(['warning', 'error', 'error', 'error']);
  }, 120_000);

  it('a budget out of range is a config error naming the field', async () => {
    const f = await makeFixture({ weights: { kind: 'files', path: 'src' } }, { secondary: false, init: false });
    const doc = (await import('yaml')).parse(await fs.readFile(f.cfgFile, 'utf8'));
    doc.vault.budget = { maxSizeGb: 10, warnAtPercent: 150 };
    await fs.writeFile(f.cfgFile, stringify(doc));
    const r = await cli(['config', 'validate', '--config', f.cfgFile]);
    expect(r.code).toBe(2);
    expect(r.stdout + r.stderr).toMatch(/vault\.budget\.warnAtPercent/);
  });
});

describe('room on a local vault disk', () => {
  it('refuses to start a backup the disk cannot take, naming component and disk; the others run; nothing is written', async (ctx) => {
    const dir = await tempDir();
    const vaultDir = path.join(dir, 'vault-primary');
    await fs.mkdir(vaultDir);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=40m', 'tmpfs', vaultDir], { stdio: 'ignore' });
      mounts.push(vaultDir);
    } catch {
      ctx.skip(); // not root or no mount privilege
    }
    const cfgFile = path.join(dir, 'memvault.yaml');
    await fs.writeFile(cfgFile, stringify({
      vault: { primary: 'file://vault-primary' }, encryption: { key: 'memvault.key' }, alerts: [{ type: 'file', path: 'alerts.jsonl' }],
      components: { weights: { kind: 'files', path: 'weights' }, notes: { kind: 'files', path: 'notes' } },
    }));
    expect((await cli(['init', '--config', cfgFile])).code).toBe(0);
    await writeTree(path.join(dir, 'weights'), { 'w.bin': randomBytes(14 * 1024 * 1024) });
    await writeTree(path.join(dir, 'notes'), { 'n.md': 'note\n' });
    // First backup: no history, it fits (14 MiB of 40).
    expect((await cli(['backup', '--config', cfgFile, '--type', 'full'])).code).toBe(0);
    // New weights: this component stored 14 MiB last time; 26 MiB are free, it needs 14 + 16 margin.
    await writeTree(path.join(dir, 'weights'), { 'w.bin': randomBytes(14 * 1024 * 1024) });
    const manifestsBefore = await fs.readdir(path.join(vaultDir, 'manifests', 'weights'));
    const r = await cli(['backup', '--config', cfgFile, '--type', 'full']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(new RegExp(`FAILED weights: weights: not started: the disk of vault file://${vaultDir} has 0\\.0\\d GiB free, and this component's recent backups stored up to 0\\.01 GiB`));
    expect(await fs.readdir(path.join(vaultDir, 'manifests', 'weights'))).toEqual(manifestsBefore);
    expect((await fs.readdir(path.join(vaultDir, 'manifests', 'notes'))).length).toBe(2);
    const a = await alerts(path.join(dir, 'alerts.jsonl'));
    expect(a.some((x) => x.component === 'weights' && x.severity === 'error' && /not started: the disk of vault/.test(x.message))).toBe(true);
  }, 120_000);
});
