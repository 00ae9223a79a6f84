// The demo drill on the embedded default: generate a small AI memory platform,
// back it up, change it, back it up again, replicate to the DR vault, lose the
// platform, restore the latest backup from the DR vault and the first backup by
// point in time, prove both byte-identical (files) and equal by content with a
// clean integrity_check (SQLite), then apply retention and check the RPOs.
// Every step after setup runs through the local state machines (backup-run,
// verify-drill, restore, retention, rpo-watch), the same ASL and handlers as
// on AWS. Exits non-zero if any proof fails.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import { createPlatform, changePlatform, fingerprint, diffFingerprints, type Fingerprint } from './platform.ts';
import { loadConfigFile, type MemvaultConfig } from '../functions/core/config.ts';
import { kindSchemas, driverFor } from '../functions/components/registry.ts';
import { initVaults } from '../functions/ops.ts';
import { FileAlertSink } from '../functions/adapters/alerts/local.ts';
import { runLocal } from './runtime.ts';
import { bytes, ms, table } from '../cli/format.ts';

export interface DemoStep {
  step: string;
  bytesRead?: number;
  bytesStored?: number;
  newBytes?: number;
  durationMs: number;
  recoveryTimeMs?: number;
  proof?: string;
  ok: boolean;
}

export interface DemoResult {
  ok: boolean;
  dir: string;
  steps: DemoStep[];
}

export const COMPONENT_DIRS: Record<string, string> = {
  'concept-graph': 'graph',
  'model-weights': 'weights',
  config: 'config',
  logs: 'logs',
};

export function demoConfig(): Record<string, unknown> {
  return {
    vault: { primary: 'file://vault-primary', secondary: 'file://vault-dr' },
    encryption: { key: 'memvault.key' },
    alerts: [{ type: 'stdout' }, { type: 'file', path: 'alerts.jsonl' }],
    components: {
      'memory-db': { kind: 'sqlite', path: 'platform/memory.db', critical: true, schedule: '0 2 * * *', rpo: '26h', retention: { days: 30, keepLast: 7 } },
      'concept-graph': { kind: 'files', path: 'platform/graph', critical: true, schedule: '15 2 * * *', rpo: '26h', retention: { days: 14 } },
      'model-weights': { kind: 'files', path: 'platform/weights', schedule: '0 3 * * 0', rpo: '8d', retention: { days: 180, keepWeekly: 26 } },
      config: { kind: 'files', path: 'platform/config', critical: true, schedule: '30 2 * * *', rpo: '26h', retention: { days: 90 } },
      logs: { kind: 'files', path: 'platform/logs', schedule: '45 2 * * *', rpo: '26h', retention: { days: 90 } },
    },
  };
}

async function snapshotPlatform(root: string): Promise<Record<string, Fingerprint>> {
  const out: Record<string, Fingerprint> = {};
  for (const [c, d] of Object.entries(COMPONENT_DIRS)) out[c] = await fingerprint(path.join(root, d));
  const db = await fingerprint(root).then((f) => ({ files: {}, tables: f.tables }));
  out['memory-db'] = db;
  return out;
}

async function prove(restoreRoot: string, want: Record<string, Fingerprint>): Promise<string[]> {
  const problems: string[] = [];
  for (const [c, f] of Object.entries(want)) {
    const got = await fingerprint(path.join(restoreRoot, c));
    if (c === 'memory-db') {
      if (JSON.stringify(got.tables) !== JSON.stringify(f.tables)) problems.push('memory-db: table contents differ');
      continue;
    }
    problems.push(...diffFingerprints(f, got).map((p) => `${c}: ${p}`));
  }
  return problems;
}

export async function runDemo(o: { dir?: string; weightsMb?: number; json?: boolean; log?: (s: string) => void } = {}): Promise<DemoResult> {
  const dir = path.resolve(o.dir ?? '.memvault-demo');
  const say = o.log ?? ((s: string) => { if (!o.json) process.stdout.write(`${s}\n`); });
  await fs.rm(dir, { recursive: true, force: true });
  await fs.mkdir(dir, { recursive: true });
  const cfgFile = path.join(dir, 'memvault.yaml');
  await fs.writeFile(cfgFile, stringify(demoConfig()));
  const cfg: MemvaultConfig = loadConfigFile(cfgFile, kindSchemas);
  const platform = path.join(dir, 'platform');
  const steps: DemoStep[] = [];
  const timed = async <T>(fn: () => Promise<T>) => { const t = Date.now(); const v = await fn(); return { v, ms: Date.now() - t }; };

  say(`memvault demo in ${dir}`);
  const gen = await timed(() => createPlatform(platform, { weightsMb: o.weightsMb ?? 256 }));
  steps.push({ step: 'create platform', durationMs: gen.ms, ok: true });
  await initVaults(cfg);
  const v1 = await snapshotPlatform(platform);

  // Every operation below runs through the local state machines (statemachines/*.asl.json)
  // with the same handlers as on AWS; alerts and notifications go to alerts.jsonl.
  const alertsFile = path.join(dir, 'alerts.jsonl');
  const sm = async (name: string, input: unknown) => {
    const r = await runLocal(name, input, { cfg, deps: { alerts: new FileAlertSink(alertsFile) } });
    if (r.status !== 'SUCCEEDED') throw new Error(`${name} ${r.status}: ${r.error}: ${r.cause}`);
    return r.output as any;
  };
  const sum = (r: { components: Record<string, number>[] }, k: 'bytesRead' | 'bytesStored' | 'newBytes') => r.components.reduce((a, x) => a + x[k], 0);

  const b1 = await timed(() => sm('backup-run', { type: 'full', replicate: false }));
  steps.push({ step: 'full backup', bytesRead: sum(b1.v, 'bytesRead'), bytesStored: sum(b1.v, 'bytesStored'), newBytes: sum(b1.v, 'newBytes'), durationMs: b1.ms, ok: b1.v.ok, proof: `backup-run ${b1.v.components.length} components` });
  const firstBackupTime = new Date(Math.max(...b1.v.components.map((x: { startedAt: string }) => Date.parse(x.startedAt))));
  await new Promise((r) => setTimeout(r, 20));

  const ch = await timed(() => changePlatform(platform));
  steps.push({ step: 'add memories, change weights', durationMs: ch.ms, ok: true });
  const v2 = await snapshotPlatform(platform);

  const b2 = await timed(() => sm('backup-run', { type: 'incremental' }));
  const rep = b2.v.replication as { bytesCopied: number; durationMs: number; chunksCopied: number; manifestsCopied: number };
  steps.push({ step: 'incremental backup', bytesRead: sum(b2.v, 'bytesRead'), bytesStored: sum(b2.v, 'bytesStored'), newBytes: sum(b2.v, 'newBytes'), durationMs: b2.ms - rep.durationMs, ok: b2.v.ok, proof: 'backup-run' });
  steps.push({ step: 'replicate to DR vault', bytesStored: rep.bytesCopied, durationMs: rep.durationMs, ok: true, proof: `backup-run: ${rep.chunksCopied} chunks, ${rep.manifestsCopied} manifests` });

  // The drill reads every chunk; its sandbox restores leave out the model weights,
  // which the two full restores below prove byte for byte.
  const drilled = Object.keys(cfg.components).filter((c) => c !== 'model-weights');
  const ver = await timed(() => sm('verify-drill', { from: 'secondary', readData: 'all', components: drilled }));
  steps.push({
    step: 'verify DR vault (all data)', durationMs: ver.ms, ok: ver.v.ok,
    proof: ver.v.ok ? `verify-drill: ${ver.v.chunksRead} chunks read, all intact; ${ver.v.restores.length} components restored in a sandbox and validated` : ver.v.cause,
  });

  const dis = await timed(() => fs.rm(platform, { recursive: true, force: true }));
  steps.push({ step: 'disaster: platform data deleted', durationMs: dis.ms, ok: true });

  const restoreLatest = path.join(dir, 'restore-latest');
  const r1 = await timed(() => sm('restore', { mode: 'latest', from: 'secondary', target: { dir: restoreLatest, outsideSandbox: true } }));
  const p1 = await prove(restoreLatest, v2);
  const invalid = (r: { components: { component: string; validation: { ok: boolean } }[] }) => r.components.filter((c) => !c.validation.ok).map((c) => `${c.component} invalid`);
  steps.push({
    step: 'restore latest from DR vault', bytesRead: r1.v.components.reduce((a: number, c: { bytes: number }) => a + c.bytes, 0), durationMs: r1.ms, recoveryTimeMs: r1.v.recoveryTimeMs,
    ok: r1.v.ok && p1.length === 0, proof: p1.length === 0 && r1.v.ok ? 'restore: byte-identical, integrity_check ok' : [...p1, ...invalid(r1.v)].join('; '),
  });

  const restorePit = path.join(dir, 'restore-point-in-time');
  const r2 = await timed(() => sm('restore', { mode: 'point-in-time', at: firstBackupTime.toISOString(), target: { dir: restorePit, outsideSandbox: true } }));
  const p2 = await prove(restorePit, v1);
  steps.push({
    step: `restore at ${firstBackupTime.toISOString()}`, bytesRead: r2.v.components.reduce((a: number, c: { bytes: number }) => a + c.bytes, 0), durationMs: r2.ms, recoveryTimeMs: r2.v.recoveryTimeMs,
    ok: r2.v.ok && p2.length === 0, proof: p2.length === 0 && r2.v.ok ? `restore: first backup state, byte-identical (skew ${ms(r2.v.skewMs)})` : p2.join('; '),
  });

  const ret = await timed(() => sm('retention', {}));
  steps.push({
    step: 'retention (both vaults)', durationMs: ret.ms, ok: true,
    proof: (ret.v.vaults as { forgotten: unknown[]; kept: number; chunksPruned: number }[]).map((r) => `${r.forgotten.length} forgotten, ${r.kept} kept, ${r.chunksPruned} chunks pruned`).join(' | '),
  });

  const rpo = await timed(() => sm('rpo-watch', {}));
  steps.push({ step: 'rpo watch', durationMs: rpo.ms, ok: !rpo.v.breached, proof: `${rpo.v.components.length} components within their rpo` });

  const ok = steps.every((s) => s.ok);
  say('');
  say(table(
    ['step', 'read', 'stored', 'new', 'duration', 'recovery time', 'result'],
    steps.map((s) => [s.step, s.bytesRead !== undefined ? bytes(s.bytesRead) : '', s.bytesStored !== undefined ? bytes(s.bytesStored) : '', s.newBytes !== undefined ? bytes(s.newBytes) : '', ms(s.durationMs), s.recoveryTimeMs !== undefined ? ms(s.recoveryTimeMs) : '', `${s.ok ? 'ok' : 'FAILED'}${s.proof ? `: ${s.proof}` : ''}`]),
  ));
  say('');
  say(ok ? 'demo drill passed: every proof held' : 'demo drill FAILED');
  return { ok, dir, steps };
}
