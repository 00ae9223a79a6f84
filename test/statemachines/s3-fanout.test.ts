// backup-run fans an s3-prefix component out over its key-range partitions
// (plan-partitions -> Map of backup-partition -> merge-partitions), locally
// against an S3-compatible server on loopback: one manifest covering every
// object exactly once, entries inline or through sealed staging objects that
// are gone once the manifest is written, a byte-equal restore, unchanged
// objects reused, and staging of a failed or dead run cleaned up.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { startS3rver, type S3rverHandle } from '../helpers/s3rver.ts';
import { listManifestNames } from '../../functions/core/vault.ts';
import { openVault } from '../../functions/services.ts';
import { createS3PrefixDriver } from '../../functions/components/s3-prefix.ts';
import { driverFor } from '../../functions/components/registry.ts';
import { PermanentError, TransientStorageError } from '../../functions/core/errors.ts';
import { captureMetrics } from '../../functions/handlers/metrics.ts';
import { defaultDeps } from '../../functions/handlers/deps.ts';
import { makeHandler as makePlan } from '../../functions/handlers/plan-partitions.ts';
import { makeHandler as makeBackupPartition } from '../../functions/handlers/backup-partition.ts';
import { makeHandler as makeMerge } from '../../functions/handlers/merge-partitions.ts';
import type { Handler } from '../../functions/handlers/deps.ts';
import { alerts, platformFixture, run } from './helpers.ts';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('backup-run with an s3-prefix component', () => {
  let s3: S3rverHandle;
  let admin: S3Client;
  const objects: Record<string, Buffer> = {};
  for (let i = 0; i < 10; i++) objects[`run-${i}/ckpt.bin`] = randomBytes(i === 4 ? 300_000 : 5_000 + i);
  objects['tokenizer.json'] = Buffer.from('{"vocab":1}'.repeat(100));
  const put = (key: string, body: Buffer) => admin.send(new PutObjectCommand({ Bucket: s3.bucket, Key: `models/${key}`, Body: body, ContentLength: body.length }));

  beforeAll(async () => {
    s3 = await startS3rver();
    admin = s3.client();
    for (const [k, v] of Object.entries(objects)) await put(k, v);
  });
  afterAll(async () => {
    admin?.destroy();
    await s3?.close();
  });

  async function fixture() {
    const f = await platformFixture({ weights: { kind: 's3-prefix', bucket: s3.bucket, prefix: 'models', endpoint: s3.endpoint, maxObjectsPerPartition: 3 } });
    const source = s3.client();
    const s3Driver = createS3PrefixDriver({ clientFor: () => source });
    return { f, deps: { driverFor: (k: string) => (k === 's3-prefix' ? s3Driver : driverFor(k)) } };
  }

  it('fans out over the partitions, merges them into one manifest, removes the staging, and restores byte-equal', async () => {
    const { f, deps } = await fixture();
    const stagingAtMerge: string[] = [];
    const rawStaged: Buffer[] = [];
    const vault = await openVault(f.cfg, 'primary');
    const metrics = captureMetrics();
    const r = await run(f, 'backup-run', { type: 'full', components: ['weights'], replicate: false }, {
      deps: { ...deps, metrics },
      wrap: (name, fn): Handler => {
        // Odd partitions must stage their entries (no inline budget): both paths run.
        if (name === 'BackupPartition') return async (e: any) => fn({ ...e, inlineLimitBytes: e.partition.index % 2 ? 0 : e.inlineLimitBytes });
        if (name === 'MergePartitions') {
          return async (e: any) => {
            for await (const o of vault.storage.list('staging/')) {
              stagingAtMerge.push(o.key);
              rawStaged.push(await vault.storage.get(o.key));
            }
            return fn(e);
          };
        }
        return fn;
      },
    });
    expect(r.status, r.cause).toBe('SUCCEEDED');
    expect(r.invocations).toMatchObject({ PlanPartitions: 1, BackupPartition: 4, MergePartitions: 1 });
    expect(r.invocations.ExportStream ?? 0).toBe(0);
    // Staged while running: the plan marker and partitions 1 and 3 (odd), sealed (not JSON).
    const prefix = stagingAtMerge[0].replace(/[^/]+$/, '');
    expect(stagingAtMerge.map((k) => k.slice(prefix.length)).sort()).toEqual(['1', '3', 'plan']);
    expect(prefix).toMatch(/^staging\/run-[^/]+\/weights\/$/);
    for (const b of rawStaged) expect(b.includes('ckpt.bin') || b.includes('weights')).toBe(false);
    // ... and gone once the manifest is written.
    const left: string[] = [];
    for await (const o of vault.storage.list('staging/')) left.push(o.key);
    expect(left).toEqual([]);

    const refs = await listManifestNames(vault.storage, 'weights');
    expect(refs).toHaveLength(1);
    const m = await vault.readManifest(refs[0]);
    expect(m.entries.map((e) => e.path)).toEqual(Object.keys(objects).sort());
    expect(new Set(m.entries.map((e) => e.path)).size).toBe(m.entries.length);
    expect(m.driver).toMatchObject({ partitions: 4, objects: 11, bytes: Object.values(objects).reduce((a, b) => a + b.length, 0) });
    for (const e of m.entries) expect(e.sha256).toBe(sha(objects[e.path]));
    const out = (r.output as any).components[0];
    expect(out).toMatchObject({ component: 'weights', kind: 's3-prefix', manifestKey: refs[0].key, incomplete: false });
    expect(out.newBytes).toBeGreaterThanOrEqual(300_000);
    expect(metrics.points.filter((p) => p.dimension === 'weights').map((p) => p.name).sort()).toEqual(['BackupDurationSeconds', 'BackupFailures', 'NewBytes']);

    const target = path.join(f.dir, 'restored');
    const rr = await run(f, 'restore', { mode: 'latest', components: ['weights'], target: { dir: target, outsideSandbox: true } }, { deps });
    expect(rr.status, rr.cause).toBe('SUCCEEDED');
    expect((rr.output as any).components[0].validation.ok).toBe(true);
    for (const [k, v] of Object.entries(objects)) expect(sha(await fs.readFile(path.join(target, 'weights', k))), k).toBe(sha(v));

    // Incremental: one object changed, one new; the others reuse the parent's chunks.
    await put('run-2/ckpt.bin', randomBytes(6_000));
    await put('run-9/extra.bin', randomBytes(7_000));
    const inc = await run(f, 'backup-run', { type: 'incremental', components: ['weights'], replicate: false }, { deps });
    expect(inc.status, inc.cause).toBe('SUCCEEDED');
    const [latest] = await listManifestNames(vault.storage, 'weights');
    const m2 = await vault.readManifest(latest);
    expect(m2.entries).toHaveLength(12);
    expect(m2.parent).toBe(m.id);
    expect(m2.driver.unchanged).toBe(10);
    expect((inc.output as any).components[0].bytesRead).toBe(13_000);
  }, 60_000);

  it('alerts naming the component and step when a partition fails, and discards the run\'s staging', async () => {
    const { f, deps } = await fixture();
    const vault = await openVault(f.cfg, 'primary');
    const r = await run(f, 'backup-run', { type: 'full', components: ['weights'], replicate: false }, {
      deps,
      wrap: (name, fn): Handler => name !== 'BackupPartition' ? fn : async (e: any) => {
        if (e.partition.index === 2) throw new PermanentError('s3:GetObject s3://bucket/models/run-6/ckpt.bin: access denied');
        return fn({ ...e, inlineLimitBytes: 0 });
      },
    });
    expect(r.status).toBe('FAILED');
    expect(r.cause).toMatch(/weights at backup-partition: PermanentError: .*access denied/);
    expect((await alerts(f))[0]).toMatchObject({ component: 'weights', step: 'backup-partition' });
    expect(await listManifestNames(vault.storage, 'weights')).toEqual([]);
    const left: string[] = [];
    for await (const o of vault.storage.list('staging/')) left.push(o.key);
    expect(left).toEqual([]);
  }, 60_000);

  it('retention waits for a running fan-out and removes the staging of a dead one, pruning its chunks', async () => {
    const { f, deps } = await fixture();
    const vault = await openVault(f.cfg, 'primary');
    const hd = defaultDeps(f.cfg, deps);
    // A run that died after backing up one partition (staged): chunks in the vault, no manifest.
    const plan = await makePlan(hd)({ component: 'weights', type: 'full', runId: 'run-dead' });
    await makeBackupPartition(hd)({ component: 'weights', type: 'full', runId: 'run-dead', parentKey: null, stagingPrefix: plan.stagingPrefix, inlineLimitBytes: 0, partition: plan.partitions[1] });
    const chunksBefore = (await vault.listChunks()).size;
    expect(chunksBefore).toBeGreaterThan(0);

    const busy = await run(f, 'retention', {});
    expect(busy.status).toBe('FAILED');
    expect(busy.error).toBe('LockedError');
    expect(Object.values(busy.retried).reduce((a, b) => a + b, 0)).toBeGreaterThan(0); // LockedError is retried first
    expect((await vault.listChunks()).size).toBe(chunksBefore);

    const later = new Date(Date.now() + 25 * 3_600_000);
    const r = await run(f, 'retention', {}, { deps: { clock: { now: () => later } } });
    expect(r.status, r.cause).toBe('SUCCEEDED');
    const primary = (r.output as any).vaults.find((v: any) => v.side === 'primary');
    expect(primary.stagingRemoved).toEqual(['staging/run-dead/weights/']);
    expect(primary.chunksPruned).toBe(chunksBefore);
    expect((await vault.listChunks()).size).toBe(0);
  }, 60_000);

  it('records one backup when merge-partitions runs again after writing its manifest (a retry), with the same result', async () => {
    const { f, deps } = await fixture();
    const vault = await openVault(f.cfg, 'primary');
    let mergeInput: unknown;
    let first: any;
    const r = await run(f, 'backup-run', { type: 'full', components: ['weights'], replicate: false }, {
      deps,
      wrap: (name, fn): Handler => name !== 'MergePartitions' ? fn : async (e: any) => {
        if (first) return fn(e);
        // The manifest is written, then the step fails as a transient error would (e.g. while removing
        // the staging): the state machine retries it.
        mergeInput = e;
        first = await fn(e);
        throw new TransientStorageError('connection reset while removing the staging objects');
      },
    });
    expect(r.status, r.cause).toBe('SUCCEEDED');
    expect(r.retried.MergePartitions).toBe(1);
    const refs = await listManifestNames(vault.storage, 'weights');
    expect(refs).toHaveLength(1);
    const out = (r.output as any).components[0];
    expect(out).toEqual(first);
    expect(out.manifestKey).toBe(refs[0].key);
    // Once more, directly, with the same input: still one manifest, the same result, no staging left.
    const again = await makeMerge(defaultDeps(f.cfg, deps))(mergeInput);
    expect(again).toEqual(first);
    expect(await listManifestNames(vault.storage, 'weights')).toHaveLength(1);
    const left: string[] = [];
    for await (const o of vault.storage.list('staging/')) left.push(o.key);
    expect(left).toEqual([]);
    // Its chain has one link and a head: the backup is whole.
    const m = await vault.readManifest(refs[0]);
    expect(m.chain?.seq).toBe(1);
    expect(m.id).toBe(first.backupId);
  }, 60_000);
});
