// `cdk synth`, as the README's deploy command runs it: the CDK CLI with the
// app of cdk.json (infra/app.ts), `-c config=FILE`, real esbuild bundling of
// every handler into the cloud assembly, cdk-nag on. The rehearsal deploys
// what this writes, never the source.
//
// A synth bundles every handler (about a minute on two cores), so a cloud
// assembly is kept under the cache directory by a hash of everything it is
// made from (the config text, infra/, functions/, statemachines/, cdk.json,
// package-lock.json): a second rehearsal of unchanged code reuses it.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { stringify as toYaml } from 'yaml';
import { ROOT } from './configs.ts';

const run = promisify(execFile);

export const SOURCES = ['infra', 'functions', 'statemachines', 'cdk.json', 'package-lock.json'];

function listFiles(p: string): string[] {
  const st = statSync(p);
  if (st.isFile()) return [p];
  return readdirSync(p).filter((n) => n !== 'node_modules' && n !== 'cdk.out').sort().flatMap((n) => listFiles(path.join(p, n)));
}

/** Hash of what a cloud assembly is made from. */
export function sourceHash(configText: string, root = ROOT): string {
  const h = createHash('sha256').update(configText);
  for (const s of SOURCES) {
    const p = path.join(root, s);
    if (!existsSync(p)) continue;
    for (const f of listFiles(p)) h.update(path.relative(root, f)).update('\0').update(readFileSync(f)).update('\0');
  }
  return h.digest('hex').slice(0, 24);
}

export class SynthError extends Error {
  override name = 'SynthError';
}

export interface SynthResult { outdir: string; configFile: string; cached: boolean; ms: number }

/**
 * Writes `doc` as <cacheDir>/<hash>/memvault.yaml and synthesizes it into
 * <cacheDir>/<hash>/cdk.out with `npx cdk synth -c config=FILE`, unless that
 * assembly exists. Throws SynthError with the CLI's message when synth fails.
 */
export async function synthesize(doc: Record<string, unknown>, cacheDir: string, label: string): Promise<SynthResult> {
  const text = `# rehearsal overlay of ${label}\n${toYaml(doc)}`;
  const dir = path.join(cacheDir, sourceHash(text));
  const outdir = path.join(dir, 'cdk.out');
  const configFile = path.join(dir, 'memvault.yaml');
  const t0 = Date.now();
  if (existsSync(path.join(outdir, 'manifest.json'))) return { outdir, configFile, cached: true, ms: 0 };
  mkdirSync(dir, { recursive: true });
  // One synth per assembly: test files rehearsing the same config start together,
  // and a second `cdk synth` of it would only burn the CPU the first one needs.
  if (!(await takeSynthLock(`${outdir}.lock`, path.join(outdir, 'manifest.json')))) return { outdir, configFile, cached: true, ms: Date.now() - t0 };
  try {
    return await synthInto(text, configFile, outdir, label, t0);
  } finally {
    rmSync(`${outdir}.lock`, { recursive: true, force: true });
  }
}

/**
 * Takes the lock directory (its pid inside) and returns true, or returns false once
 * another live process holding it has produced `done`. A holder that died leaves a
 * lock that is taken over.
 */
async function takeSynthLock(lock: string, done: string): Promise<boolean> {
  for (;;) {
    try {
      mkdirSync(lock);
      writeFileSync(path.join(lock, 'pid'), String(process.pid));
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    if (existsSync(done)) return false;
    let pid = NaN;
    try { pid = Number(readFileSync(path.join(lock, 'pid'), 'utf8')); } catch { /* being written */ }
    let alive = true;
    if (Number.isInteger(pid) && pid > 0) {
      try { process.kill(pid, 0); } catch { alive = false; }
    }
    if (!alive) rmSync(lock, { recursive: true, force: true });
    else await new Promise((r) => setTimeout(r, 500));
  }
}

async function synthInto(text: string, configFile: string, outdir: string, label: string, t0: number): Promise<SynthResult> {
  writeFileSync(configFile, text);
  const building = `${outdir}.building-${process.pid}`;
  rmSync(building, { recursive: true, force: true });
  try {
    await run('npx', ['cdk', 'synth', '--quiet', '--no-notices', '--no-version-reporting', '-c', `config=${configFile}`, '-o', building], {
      cwd: ROOT, env: { ...process.env, CI: 'true' }, maxBuffer: 64 * 1024 * 1024,
    });
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    rmSync(building, { recursive: true, force: true });
    const lines = String(e.stderr ?? '').split('\n').filter((l) => l.trim() && !/^Bundling asset|^\s+\S+\s+\d|⚡|^$/.test(l));
    throw new SynthError(`cdk synth -c config=${label} failed:\n${lines.slice(-30).join('\n') || e.message}`);
  }
  if (!existsSync(outdir)) renameSync(building, outdir);
  else rmSync(building, { recursive: true, force: true });
  return { outdir, configFile, cached: false, ms: Date.now() - t0 };
}
