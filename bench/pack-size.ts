// Pack size: backup and restore time and object count of 5,000 files of 0.5-8 KiB
// plus one 40 MiB file, file:// vault, per MEMVAULT_PACK_BYTES.
// Run: npx tsx bench/pack-size.ts [MiB...]
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { makeFixture } from '../test/helpers/fixture.ts';
import { runBackups } from '../functions/ops.ts';
import { openVault } from '../functions/services.ts';
import { planRestore, restorePlan } from '../functions/core/restore.ts';
import { driverFor } from '../functions/components/registry.ts';
import { silentLogger } from '../functions/logger.ts';
import { FileAlertSink } from '../functions/adapters/alerts/local.ts';

const sizes = process.argv.slice(2).length ? process.argv.slice(2).map(Number) : [4, 8, 16];
for (const mib of sizes) {
  process.env.MEMVAULT_PACK_BYTES = String(mib * 1024 * 1024);
  const f = await makeFixture({ notes: { kind: 'files', path: 'notes' } }, { secondary: false });
  const src = path.join(f.dir, 'notes');
  for (let i = 0; i < 5000; i++) {
    await fs.mkdir(path.join(src, `d${i % 50}`), { recursive: true });
    await fs.writeFile(path.join(src, `d${i % 50}`, `f${i}`), i % 2 ? randomBytes(512 + (i * 131) % 7680) : Buffer.from(`memory ${i} `.repeat(200)));
  }
  await fs.writeFile(path.join(src, 'weights.bin'), randomBytes(40 * 1024 * 1024));
  let t = Date.now();
  const r = await runBackups(f.cfg, { type: 'full', alerts: new FileAlertSink(f.alertsFile), log: silentLogger });
  const backupMs = Date.now() - t;
  if (!r.ok) throw new Error(JSON.stringify(r.failures));
  const vault = await openVault(f.cfg);
  let objects = 0;
  for await (const _ of vault.storage.list('')) objects++;
  t = Date.now();
  const res = await restorePlan({ cfg: f.cfg, vault, driverFor, log: silentLogger }, await planRestore(vault, { mode: 'latest' }, undefined, ['notes']), path.join(f.dir, 'r'), false);
  const restoreMs = Date.now() - t;
  console.log(`pack ${mib} MiB: backup ${backupMs} ms, restore ${restoreMs} ms (${res.ok ? 'ok' : 'FAILED'}), ${objects} objects, peak RSS ${Math.round(process.resourceUsage().maxRSS / 1024)} MiB`);
  await fs.rm(f.dir, { recursive: true, force: true });
}
