// merge-partitions writes the entries of a fanned-out backup as they are read,
// in parts (a prefix of a million objects is never one list in a Lambda's
// memory), and refuses partitions whose key ranges overlap or are out of order
// without recording anything.
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { platformFixture } from '../statemachines/helpers.ts';
import { defaultDeps } from '../../functions/handlers/deps.ts';
import { makeHandler } from '../../functions/handlers/merge-partitions.ts';
import { readEntries } from '../../functions/core/entry-log.ts';
import { listManifestNames } from '../../functions/core/vault.ts';
import type { Entry } from '../../functions/core/manifest.ts';

const EMPTY = createHash('sha256').digest('hex');
const entry = (key: string): Entry => ({ path: key, type: 'file', size: 0, sha256: EMPTY, chunks: [], meta: { etag: `"${key}"` } });
const keys = (from: number, n: number) => Array.from({ length: n }, (_, i) => `obj/${String(from + i).padStart(7, '0')}.bin`);

async function setup() {
  const f = await platformFixture({ weights: { kind: 's3-prefix', bucket: 'models-bucket', prefix: 'models' } });
  const deps = defaultDeps(f.cfg);
  const vault = await deps.openVault('primary');
  const stagingPrefix = 'staging/run-20261207T100000000Z/weights/';
  await vault.storage.put(`${stagingPrefix}plan`, Buffer.from('{}'));
  const partition = (index: number, ks: string[]) => ({
    index, objects: ks.length, unchanged: 0, bytes: 0, stats: { entries: ks.length }, warnings: [], entries: ks.map(entry), stagingKey: null,
  });
  const input = (partitions: unknown[]) => ({
    component: 'weights', type: 'full', runId: 'run-20261207T100000000Z', startedAt: '2026-12-07T10:00:00.000Z', parentKey: null, stagingPrefix, partitions, executionId: 'exec-1',
  });
  return { f, deps, vault, partition, input };
}

describe('merge-partitions', () => {
  it('writes the entries of 6,000 objects in parts, in key order, and the manifest names them', async () => {
    const s = await setup();
    const r = await makeHandler(s.deps)(s.input([s.partition(0, keys(0, 3000)), s.partition(1, keys(3000, 3000))])) as { manifestKey: string };
    const header = await s.vault.readManifestHeader(r.manifestKey);
    expect(header.format).toBe('memvault-manifest/2');
    expect(header.entryParts!.length).toBeGreaterThan(1);
    expect(header.driver).toMatchObject({ objects: 6000, partitions: 2 });
    const paths: string[] = [];
    for await (const e of readEntries(s.vault, header)) paths.push(e.path);
    expect(paths).toEqual(keys(0, 6000));
  });

  it('refuses overlapping partitions and partitions out of key order, recording nothing', async () => {
    for (const [parts, why] of [
      [[keys(0, 3000), keys(2999, 10)], /obj\/0002999\.bin is in more than one partition/],
      [[keys(100, 3000), keys(0, 10)], /obj\/0000000\.bin is out of key order/],
    ] as const) {
      const s = await setup();
      await expect(makeHandler(s.deps)(s.input(parts.map((k, i) => s.partition(i, [...k]))))).rejects.toThrow(why);
      expect(await listManifestNames(s.vault.storage, 'weights')).toEqual([]);
    }
  });
});
