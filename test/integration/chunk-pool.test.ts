// The files driver on chunk-pool workers (MEMVAULT_WORKERS): same vault
// objects as the main-thread path (same chunk ids, so the two deduplicate
// against each other), byte-identical restores, bad settings named.
import { afterEach, describe, expect, it } from 'vitest';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { makeFixture, writeTree } from '../helpers/fixture.ts';
import { runBackups } from '../../functions/ops.ts';
import { openVault } from '../../functions/services.ts';
import { planRestore, restorePlan } from '../../functions/core/restore.ts';
import { driverFor } from '../../functions/components/registry.ts';
import { silentLogger } from '../../functions/logger.ts';
import { FileAlertSink } from '../../functions/adapters/alerts/local.ts';
import { workersFromEnv } from '../../functions/core/chunk-pool.ts';
import { fingerprint, diffFingerprints } from '../../local/platform.ts';

afterEach(() => { delete process.env.MEMVAULT_WORKERS; });

describe('chunk pool workers', () => {
  it('back up in parallel to the same chunks as the main thread, and restore byte-identical', async () => {
    const f = await makeFixture({ data: { kind: 'files', path: 'src' } }, { secondary: false });
    const src = path.join(f.dir, 'src');
    const files: Record<string, Buffer | string> = {
      'weights/big.bin': randomBytes(21 * 1024 * 1024 + 7),
      'weights/mid.bin': randomBytes(5 * 1024 * 1024),
      'logs/agent.log': 'recall memory concept '.repeat(300_000),
      'empty.txt': '',
    };
    for (let i = 0; i < 40; i++) files[`sessions/s${i}.json`] = JSON.stringify({ i, text: 'x'.repeat(1000 + i * 37) });
    await writeTree(src, files);
    const alerts = new FileAlertSink(f.alertsFile);

    process.env.MEMVAULT_WORKERS = '2';
    const pooled = await runBackups(f.cfg, { type: 'full', alerts, log: silentLogger });
    expect(pooled.ok).toBe(true);
    const s = pooled.outcomes[0].stats;
    expect(s.bytesRead).toBe(s.bytesTotal);
    expect(s.newBytes).toBeGreaterThan(26 * 1024 * 1024);
    expect(s.bytesStored).toBeLessThan(s.newBytes); // the log compressed

    // The main-thread path finds every chunk already there: identical boundaries and ids.
    process.env.MEMVAULT_WORKERS = '0';
    const streamed = await runBackups(f.cfg, { type: 'full', alerts, log: silentLogger });
    expect(streamed.outcomes[0].stats.chunksNew).toBe(0);
    const vault = await openVault(f.cfg);
    const [a, b] = await Promise.all([vault.readManifest(pooled.outcomes[0].manifestKey), vault.readManifest(streamed.outcomes[0].manifestKey)]);
    const strip = (m: typeof a) => m.entries.map((e) => [e.path, e.type, e.size, e.sha256, e.chunks?.map((c) => c.id).join(',')]);
    expect(strip(a)).toEqual(strip(b));

    const plan = await planRestore(vault.storage, { mode: 'backup', backupId: pooled.outcomes[0].backupId }, undefined, ['data']);
    const target = path.join(f.dir, 'restore');
    const res = await restorePlan({ cfg: f.cfg, vault, driverFor, log: silentLogger }, plan, target, false);
    expect(res.ok).toBe(true);
    expect(diffFingerprints(await fingerprint(src), await fingerprint(path.join(target, 'data')))).toEqual([]);
  });

  it('reads MEMVAULT_WORKERS and names a bad value', () => {
    expect(workersFromEnv(undefined)).toBe(0);
    expect(workersFromEnv('3')).toBe(3);
    expect(workersFromEnv('auto')).toBeGreaterThanOrEqual(1);
    expect(() => workersFromEnv('many')).toThrow(/MEMVAULT_WORKERS: expected a number of worker threads/);
  });
});
