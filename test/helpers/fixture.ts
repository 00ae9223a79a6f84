// A fresh embedded-default setup in a temp dir: memvault.yaml, key file,
// primary and secondary file:// vaults, a JSON-lines alert file.
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { loadConfigFile, type MemvaultConfig } from '../../functions/core/config.ts';
import { kindSchemas } from '../../functions/components/registry.ts';
import { initVaults } from '../../functions/ops.ts';

export async function tempDir(prefix = 'memvault-test-'): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), prefix));
}

export interface Fixture {
  dir: string;
  cfgFile: string;
  cfg: MemvaultConfig;
  alertsFile: string;
}

export async function makeFixture(components: Record<string, unknown>, o: { secondary?: boolean; init?: boolean; extra?: Record<string, unknown> } = {}): Promise<Fixture> {
  const dir = await tempDir();
  const doc = {
    vault: { primary: 'file://vault-primary', ...(o.secondary === false ? {} : { secondary: 'file://vault-dr' }) },
    encryption: { key: 'memvault.key' },
    alerts: [{ type: 'file', path: 'alerts.jsonl' }],
    components,
    ...o.extra,
  };
  const cfgFile = path.join(dir, 'memvault.yaml');
  await fs.writeFile(cfgFile, stringify(doc));
  const cfg = loadConfigFile(cfgFile, kindSchemas);
  if (o.init !== false) await initVaults(cfg);
  return { dir, cfgFile, cfg, alertsFile: path.join(dir, 'alerts.jsonl') };
}

export async function writeTree(root: string, files: Record<string, string | Buffer>): Promise<void> {
  for (const [rel, content] of Object.entries(files)) {
    const p = path.join(root, rel);
    await fs.mkdir(path.dirname(p), { recursive: true });
    await fs.writeFile(p, content);
  }
}

/** The files holding chunk data in a file:// vault: its pack files (memvault/2), finished ones only. */
export async function* countChunkFiles(vaultDir: string): AsyncGenerator<string> {
  const chunks = path.join(vaultDir, 'packs');
  for (const d of await fs.readdir(chunks).catch(() => [] as string[])) {
    for (const f of await fs.readdir(path.join(chunks, d))) if (!f.includes('.tmp-')) yield path.join(chunks, d, f);
  }
}

export async function chunkFiles(vaultDir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const f of countChunkFiles(vaultDir)) out.push(f);
  return out.sort();
}
