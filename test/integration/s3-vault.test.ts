// The whole engine on the S3 code path: a primary vault on an S3-compatible
// server on loopback, the DR vault on local disk.
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { startS3rver } from '../helpers/s3rver.ts';
import { makeFixture, writeTree } from '../helpers/fixture.ts';
import { runBackups, replicateVaults } from '../../functions/ops.ts';
import { openVault } from '../../functions/services.ts';
import { planRestore, restorePlan } from '../../functions/core/restore.ts';
import { verifyVault } from '../../functions/core/verify.ts';
import { driverFor } from '../../functions/components/registry.ts';
import { silentLogger } from '../../functions/logger.ts';
import { FileAlertSink } from '../../functions/adapters/alerts/local.ts';

describe('vault on S3', () => {
  let s3: Awaited<ReturnType<typeof startS3rver>>;
  beforeAll(async () => {
    s3 = await startS3rver('memvault-vault');
    process.env.AWS_ACCESS_KEY_ID = 'S3RVER';
    process.env.AWS_SECRET_ACCESS_KEY = 'S3RVER';
  });
  afterAll(async () => { await s3?.close(); });

  it('backs up into S3, replicates to the DR vault, and restores byte-identical from both', async () => {
    const f = await makeFixture({ weights: { kind: 'files', path: 'weights' } }, {
      extra: { vault: { primary: { url: `s3://${s3.bucket}/prod/vault`, endpoint: s3.endpoint, region: 'us-east-1' }, secondary: 'file://vault-dr' } },
    });
    const data = randomBytes(3 * 1024 * 1024);
    await writeTree(path.join(f.dir, 'weights'), { 'w.bin': data, 'meta.json': '{"step": 1}' });
    const r = await runBackups(f.cfg, { type: 'full', alerts: new FileAlertSink(f.alertsFile), log: silentLogger, replicate: true });
    expect(r.ok).toBe(true);
    expect(r.replicated!.manifestsCopied).toBe(1);
    const primary = await openVault(f.cfg, 'primary');
    expect(primary.storage.url).toBe(`s3://${s3.bucket}/prod/vault`);
    expect((await verifyVault(primary, { readData: 'all' })).ok).toBe(true);
    for (const side of ['primary', 'secondary'] as const) {
      const vault = side === 'primary' ? primary : await openVault(f.cfg, 'secondary');
      const plan = await planRestore(vault, { mode: 'latest' }, undefined, ['weights']);
      const target = path.join(f.dir, `restore-${side}`);
      const res = await restorePlan({ cfg: f.cfg, vault, driverFor, log: silentLogger }, plan, target, false);
      expect(res.ok).toBe(true);
      expect((await fs.readFile(path.join(target, 'weights', 'w.bin'))).equals(data)).toBe(true);
    }
    // Second backup of unchanged data uploads no chunk to S3.
    const again = await runBackups(f.cfg, { type: 'full', alerts: new FileAlertSink(f.alertsFile), log: silentLogger });
    expect(again.outcomes[0].stats.chunksNew).toBe(0);
  });

  it('1,000 small files: a few PUTs of packs and one index object, a few ranged GETs on restore (not one per file), byte-identical', async () => {
    const f = await makeFixture({ notes: { kind: 'files', path: 'notes' } }, {
      secondary: false,
      extra: { vault: { primary: { url: `s3://${s3.bucket}/small/vault`, endpoint: s3.endpoint, region: 'us-east-1' } } },
    });
    const files: Record<string, Buffer> = {};
    for (let i = 0; i < 1000; i++) files[`d${i % 20}/n${i}.json`] = randomBytes(512 + (i * 37) % 7680);
    await writeTree(path.join(f.dir, 'notes'), files);
    const r = await runBackups(f.cfg, { type: 'full', alerts: new FileAlertSink(f.alertsFile), log: silentLogger });
    expect(r.ok).toBe(true);
    expect(r.outcomes[0].stats.chunksNew).toBe(1000);
    const vault = await openVault(f.cfg, 'primary');
    const keys: string[] = [];
    for await (const o of vault.storage.list('')) keys.push(o.key);
    // ~4.3 MB: one pack, one index object, the manifest, its head and vault.json (no chunk objects).
    expect(keys.filter((k) => k.startsWith('packs/'))).toHaveLength(1);
    expect(keys.filter((k) => k.startsWith('index/'))).toHaveLength(1);
    expect(keys.filter((k) => k.startsWith('chunks/'))).toEqual([]);
    expect(keys.length).toBeLessThanOrEqual(6);
    const target = path.join(f.dir, 'restored');
    // Every read of a pack is a ranged GET: small files are read in batches, neighbours together.
    let ranged = 0;
    const getRange = vault.storage.getRange.bind(vault.storage);
    vault.storage.getRange = (key, offset, length) => { ranged++; return getRange(key, offset, length); };
    const res = await restorePlan({ cfg: f.cfg, vault, driverFor, log: silentLogger }, await planRestore(vault, { mode: 'latest' }, undefined, ['notes']), target, false);
    expect(res.ok).toBe(true);
    expect(ranged).toBeGreaterThan(0);
    expect(ranged).toBeLessThanOrEqual(10);
    for (const [rel, b] of Object.entries(files)) expect((await fs.readFile(path.join(target, 'notes', rel))).equals(b), rel).toBe(true);
    expect((await verifyVault(vault, { readData: 'all' })).ok).toBe(true);
  });
});
