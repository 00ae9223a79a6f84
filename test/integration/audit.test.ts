// The vault's audit log (issue 13): every backup, restore, verify, retention and
// replicate leaves one authenticated record (who, what, when, result), whether it
// worked or not; `memvault audit` prints them and names a record that was edited,
// moved or planted. Through the CLI as an operator runs it, and through the state
// machines run locally (the same handlers as on AWS).
import { describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { cli } from '../helpers/cli.ts';
import { makeFixture, writeTree } from '../helpers/fixture.ts';

interface Rec { key: string; op: string; result: string; actor: string; components: string[]; backupIds: string[]; error?: string; startedAt: string; endedAt: string; details?: Record<string, unknown> }
interface Log { vault: string; records: Rec[]; damaged: { key: string; error: string }[] }

const ACTOR = { MEMVAULT_ACTOR: 'alice (recovery team)' };

async function auditLog(cfgFile: string, args: string[] = []): Promise<{ code: number; log: Log; text: string }> {
  const j = await cli(['audit', '--config', cfgFile, '--json', ...args]);
  const t = await cli(['audit', '--config', cfgFile, ...args]);
  return { code: j.code, log: JSON.parse(j.stdout) as Log, text: t.stdout };
}

async function auditFiles(vaultDir: string): Promise<string[]> {
  return (await fs.readdir(path.join(vaultDir, 'audit'))).filter((n) => !n.includes('.tmp-')).sort().map((n) => path.join(vaultDir, 'audit', n));
}

describe('the audit log', () => {
  it('records who backed up, restored, verified, pruned and replicated what, with the result, failures included', async () => {
    const f = await makeFixture({
      notes: { kind: 'files', path: 'src', retention: { keepLast: 1 } },
      missing: { kind: 'files', path: 'no-such-dir' },
    });
    await writeTree(path.join(f.dir, 'src'), { 'a.txt': 'first memory\n', 'b/c.json': '{"k":1}\n' });
    const b1 = await cli(['backup', '--config', f.cfgFile, '--type', 'full', '--component', 'notes'], { env: ACTOR });
    expect(b1.code, b1.stderr).toBe(0);
    await fs.writeFile(path.join(f.dir, 'src', 'a.txt'), 'second memory\n');
    const b2 = await cli(['backup', '--config', f.cfgFile, '--type', 'full'], { env: ACTOR });
    expect(b2.code).toBe(1); // 'missing' fails
    const r = await cli(['restore', '--latest', '--config', f.cfgFile, '--component', 'notes', '--target', path.join(f.dir, 'out')], { env: ACTOR });
    expect(r.code, r.stderr).toBe(0);
    const bad = await cli(['restore', '--backup', 'no-such-backup', '--config', f.cfgFile, '--component', 'notes', '--target', path.join(f.dir, 'out2')], { env: ACTOR });
    expect(bad.code).not.toBe(0);
    expect((await cli(['verify', '--config', f.cfgFile, '--read-data'], { env: ACTOR })).code).toBe(0);
    expect((await cli(['retention', '--config', f.cfgFile], { env: ACTOR })).code).toBe(0);
    expect((await cli(['replicate', '--config', f.cfgFile], { env: ACTOR })).code).toBe(0);

    const { code, log, text } = await auditLog(f.cfgFile);
    expect(code, text).toBe(0);
    expect(log.damaged).toEqual([]);
    const ops = log.records.map((x) => `${x.op}:${x.result}`);
    expect(ops).toEqual(['backup:ok', 'backup:partial', 'restore:ok', 'verify:ok', 'retention:ok', 'replicate:ok']);
    for (const x of log.records) {
      expect(x.actor).toBe('alice (recovery team)');
      expect(Date.parse(x.endedAt)).toBeGreaterThanOrEqual(Date.parse(x.startedAt));
    }
    const [first, partial, restored, , pruned] = log.records;
    expect(first.components).toEqual(['notes']);
    expect(first.backupIds).toHaveLength(1);
    expect(partial.components.sort()).toEqual(['missing', 'notes']);
    expect(partial.error).toMatch(/^missing: /);
    expect(restored.components).toEqual(['notes']);
    expect(restored.backupIds).toEqual([partial.backupIds[0]]);
    // keepLast 1: the first backup of notes is forgotten, and the record names it.
    expect(pruned.backupIds).toEqual(first.backupIds);
    expect(text).toMatch(/restore\s+ok\s+alice \(recovery team\)\s+notes/);
    // A restore that did not start (no such backup) is not in the log as done; filters work.
    expect((await auditLog(f.cfgFile, ['--op', 'backup'])).log.records).toHaveLength(2);
    expect((await auditLog(f.cfgFile, ['--component', 'missing'])).log.records.map((x) => x.op)).toEqual(['backup']);
  }, 120_000);

  it('names a record that was edited, moved over another or planted, and keeps the others', async () => {
    const f = await makeFixture({ notes: { kind: 'files', path: 'src' } }, { secondary: false });
    await writeTree(path.join(f.dir, 'src'), { 'a.txt': 'memory\n' });
    for (let i = 0; i < 3; i++) expect((await cli(['backup', '--config', f.cfgFile, '--type', 'full'])).code).toBe(0);
    const vaultDir = path.join(f.dir, 'vault-primary');
    const [r1, r2, r3] = await auditFiles(vaultDir);
    // Edited: one byte of the ciphertext flipped.
    const blob = await fs.readFile(r1);
    blob[blob.length - 20] ^= 0x01;
    await fs.writeFile(r1, blob);
    // Moved: record 3's bytes under record 2's name (a swap that hides record 2).
    await fs.copyFile(r3, r2);
    // Planted: a file under a name no record has.
    await fs.writeFile(path.join(vaultDir, 'audit', 'note-from-intruder'), 'nothing happened');
    const { code, log, text } = await auditLog(f.cfgFile);
    expect(code).toBe(1);
    expect(log.damaged.map((d) => d.key).sort()).toEqual([`audit/${path.basename(r1)}`, `audit/${path.basename(r2)}`, 'audit/note-from-intruder'].sort());
    expect(log.records.map((x) => x.key)).toEqual([`audit/${path.basename(r3)}`]);
    expect(text).toContain(`DAMAGED audit/${path.basename(r2)}: fails authentication`);
  }, 60_000);

  it('the state machines record through their handlers: a backup run and a verify drill', async () => {
    const f = await makeFixture({ notes: { kind: 'files', path: 'src' } }, { secondary: false });
    await writeTree(path.join(f.dir, 'src'), { 'a.txt': 'memory\n' });
    const b = await cli(['run', 'backup-run', '--config', f.cfgFile, '--input', '{"type":"full"}'], { env: ACTOR });
    expect(b.code, b.stdout + b.stderr).toBe(0);
    const d = await cli(['run', 'verify-drill', '--config', f.cfgFile], { env: ACTOR });
    expect(d.code, d.stdout + d.stderr).toBe(0);
    const { log } = await auditLog(f.cfgFile);
    expect(log.records.map((x) => `${x.op}:${x.result}`)).toEqual(['backup:ok', 'verify:ok', 'drill:ok']);
    const [backup, , drill] = log.records;
    expect(backup.actor).toMatch(/^alice \(recovery team\)/);
    expect(backup.components).toEqual(['notes']);
    expect(backup.backupIds).toHaveLength(1);
    expect(drill.components).toEqual(['notes']);
    expect(drill.backupIds).toEqual(backup.backupIds);
  }, 180_000);

  it('the restore state machine records a failed restore too: a component that fails, and a request refused at planning', async () => {
    const f = await makeFixture({ notes: { kind: 'files', path: 'src' } }, { secondary: false });
    await writeTree(path.join(f.dir, 'src'), { 'a.txt': 'memory\n' });
    const b = await cli(['backup', '--config', f.cfgFile, '--type', 'full'], { env: ACTOR });
    expect(b.code, b.stderr).toBe(0);
    // A chunk of the backup damaged: the component's restore fails.
    const packs = path.join(f.dir, 'vault-primary', 'packs');
    const [dir] = await fs.readdir(packs);
    const [pack] = await fs.readdir(path.join(packs, dir));
    const file = path.join(packs, dir, pack);
    const bytes = await fs.readFile(file);
    bytes[10] ^= 0xff;
    await fs.writeFile(file, bytes);
    const input = { mode: 'latest', components: ['notes'], target: { dir: path.join(f.dir, 'out'), outsideSandbox: true } };
    const r = await cli(['run', 'restore', '--config', f.cfgFile, '--input', JSON.stringify(input)], { env: ACTOR });
    expect(r.code).not.toBe(0);
    // Refused before a plan: an unknown component.
    const bad = await cli(['run', 'restore', '--config', f.cfgFile, '--input', JSON.stringify({ ...input, components: ['nope'] })], { env: ACTOR });
    expect(bad.code).not.toBe(0);
    const { log } = await auditLog(f.cfgFile, ['--op', 'restore']);
    expect(log.records.map((x) => x.result)).toEqual(['failed', 'failed']);
    const [failed, refused] = log.records;
    expect(failed.actor).toMatch(/^alice \(recovery team\)/);
    expect(failed.components).toEqual(['notes']);
    expect(failed.backupIds).toHaveLength(1);
    expect(failed.error).toMatch(/notes/);
    expect(failed.error).toMatch(/packs\//);
    expect(refused.components).toEqual(['nope']);
    expect(refused.error).toMatch(/nope/);
    expect(refused.details).toMatchObject({ step: 'plan' });
  }, 180_000);
});
