// Small files: memvault vs restic on trees of many small files (issue 11), on a
// file:// store and on S3 (the loopback @20minutes/s3rver, which counts the
// requests it serves).
//
// The tree (smallTree): N files of 0.5-8 KiB (log-uniform), 1000 per directory,
// 70% JSON-like text, 30% random bytes, every byte from a generator seeded by
// (seed, file number), so the same N and seed give the same tree. The change
// before the incremental: 1% of the files rewritten (spread over the tree) and
// 1,000 new files in a new directory.
//
// For each store (file, s3) and tool (memvault, restic), in turn:
//   generate the tree -> init -> full backup -> change -> incremental backup ->
//   restore into an empty directory -> check the restored tree equals the
//   changed one (paths, modes, contents).
// Per step: wall time, peak RSS of the tool's process tree (bench/measure.ts),
// objects in the store after the step, and for s3 the requests of the step by
// type (PUT, GET, HEAD, LIST, DELETE, other), counted at the server.
//
//   npm run bench:small -- --files 50k                         (~10 min on 2 cores)
//   npm run bench:small -- --files 200k --also 1M --write-results   (the full run)
import { parseArgs } from 'node:util';
import { promises as fs } from 'node:fs';
import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { rng } from '../local/platform.ts';
import { haveTime, measure, type StepMeasure } from './measure.ts';
import { REPO_ROOT } from './tools.ts';
import { REQUEST_TYPES, type CountingS3, type RequestCounts, startCountingS3, totalRequests } from './s3-counter.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const PER_DIR = 1000;
const NEW_FILES = 1000;
const WORDS = 'memory recall concept agent embedding graph episode user preference task tool plan goal context summary fact belief event session'.split(' ');

export function parseCount(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kKmM]?)$/.exec(s.trim());
  if (!m) throw new Error(`--files: expected a count like 50k, 200k or 1M, got "${s}"`);
  return Math.round(Number(m[1]) * ({ '': 1, k: 1e3, m: 1e6 } as Record<string, number>)[m[2].toLowerCase()]);
}
const fmtCount = (n: number) => (n >= 1e6 && n % 1e6 === 0 ? `${n / 1e6}M` : n >= 1e3 && n % 1e3 === 0 ? `${n / 1e3}k` : String(n));

/** The content of file `i` (version `v`: 0 as generated, 1 after the change). */
function fileContent(seed: number, i: number, v: number): Buffer {
  const r = rng((seed * 2654435761 + i * 40503 + v * 977 + 1) >>> 0);
  for (let k = 0; k < 4; k++) r();
  const size = Math.floor(512 * 16 ** r()); // 0.5-8 KiB, log-uniform
  const buf = Buffer.allocUnsafe(size);
  if (r() < 0.3) {
    for (let o = 0; o < size; o += 4) buf.writeUInt32LE((r() * 0x1_0000_0000) >>> 0, o <= size - 4 ? o : size - 4);
    return buf;
  }
  let s = `{"id":${i},"v":${v},"text":"`;
  while (s.length < size) s += `${WORDS[Math.floor(r() * WORDS.length)]} ${Math.floor(r() * 1e6)} `;
  return Buffer.from(s.slice(0, size - 2) + '"}');
}

const filePath = (root: string, i: number) => path.join(root, `d${Math.floor(i / (PER_DIR * 100))}`, `d${Math.floor(i / PER_DIR) % 100}`, `f${i}.dat`);

async function pool<T>(items: Iterable<T>, n: number, f: (x: T) => Promise<void>): Promise<void> {
  const it = items[Symbol.iterator]();
  await Promise.all(Array.from({ length: n }, async () => { for (let x = it.next(); !x.done; x = it.next()) await f(x.value); }));
}
function* range(a: number, b: number, step = 1) { for (let i = a; i < b; i += step) yield i; }

export async function smallTree(root: string, n: number, seed = 11): Promise<{ bytes: number }> {
  let bytes = 0;
  for (let d = 0; d < n; d += PER_DIR) await fs.mkdir(path.dirname(filePath(root, d)), { recursive: true });
  await pool(range(0, n), 32, async (i) => { const b = fileContent(seed, i, 0); bytes += b.length; await fs.writeFile(filePath(root, i), b); });
  return { bytes };
}

/** 1% of the files rewritten (every 100th, offset 37) and NEW_FILES new ones in new/. */
export async function smallChange(root: string, n: number, seed = 11): Promise<{ touched: number; added: number; bytes: number }> {
  let bytes = 0;
  let touched = 0;
  await pool(range(37 % n, n, 100), 32, async (i) => { const b = fileContent(seed, i, 1); bytes += b.length; touched++; await fs.writeFile(filePath(root, i), b); });
  await fs.mkdir(path.join(root, 'new'), { recursive: true });
  await pool(range(0, NEW_FILES), 32, async (k) => { const b = fileContent(seed, n + k, 0); bytes += b.length; await fs.writeFile(path.join(root, 'new', `f${k}.dat`), b); });
  return { touched, added: NEW_FILES, bytes };
}

/** One SHA-256 over the tree's sorted paths, modes and contents (no per-file table: 1M files stay cheap). */
export async function treeDigest(root: string): Promise<{ digest: string; files: number }> {
  const all = createHash('sha256');
  let files = 0;
  const walk = async (rel: string) => {
    for (const e of (await fs.readdir(path.join(root, rel), { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      const abs = path.join(root, r);
      if (e.isDirectory()) { all.update(`${r}\0dir\n`); await walk(r); continue; }
      const st = await fs.stat(abs);
      all.update(`${r}\0${(st.mode & 0o7777).toString(8)}\0`);
      all.update(await fs.readFile(abs));
      files++;
    }
  };
  await walk('');
  return { digest: all.digest('hex'), files };
}

async function countFiles(dir: string): Promise<{ count: number; bytes: number }> {
  let count = 0, bytes = 0;
  const walk = async (d: string) => {
    let ents;
    try { ents = await fs.readdir(d, { withFileTypes: true }); } catch { return; }
    for (const e of ents) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) { count++; bytes += (await fs.stat(p)).size; }
    }
  };
  await walk(dir);
  return { count, bytes };
}

type Backend = 'file' | 's3';
const STEPS = ['full', 'incremental', 'restore'] as const;
type Step = (typeof STEPS)[number];

interface Run { work: string; live: string; store: string; restore: string; backend: Backend; s3: CountingS3 | null; prefix: string }
interface SmallTool {
  name: string;
  init(r: Run): Promise<void>;
  step(r: Run, s: Step): Promise<{ m: StepMeasure; root?: string }>;
  /** Objects in the store. */
  objects(r: Run): Promise<{ count: number; bytes: number }>;
}

const S3_ENV = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' };

const memvault: SmallTool = {
  name: 'memvault',
  async init(r) {
    const vault = r.backend === 'file' ? JSON.stringify(`file://${r.store}`) : `{ url: ${JSON.stringify(`s3://${r.s3!.bucket}/${r.prefix}`)}, endpoint: ${JSON.stringify(r.s3!.endpoint)} }`;
    await fs.writeFile(path.join(r.work, 'memvault.yaml'), [
      'vault:', `  primary: ${vault}`, 'encryption:', `  key: ${JSON.stringify(path.join(r.work, 'memvault.key'))}`,
      'alerts:', '  - type: stdout', 'components:', '  tree:', '    kind: files', `    path: ${JSON.stringify(r.live)}`, '',
    ].join('\n'));
    await mv(r, ['init']);
  },
  async step(r, s) {
    if (s === 'restore') return { m: await mv(r, ['restore', '--latest', '--target', r.restore]), root: path.join(r.restore, 'tree') };
    return { m: await mv(r, ['backup', '--type', s]) };
  },
  objects: (r) => (r.backend === 'file' ? countFiles(r.store) : r.s3!.objects(`${r.prefix}/`)),
};
function mv(r: Run, args: string[]): Promise<StepMeasure> {
  return measure(process.execPath, [path.join(REPO_ROOT, 'cli', 'memvault.mjs'), ...args, '--config', path.join(r.work, 'memvault.yaml'), '--json'], {
    cwd: r.work, label: `memvault ${args[0]}`, env: { ...process.env, ...S3_ENV },
  });
}

const RESTIC_ENV = { ...process.env, ...S3_ENV, RESTIC_PASSWORD: 'bench-password-not-secret', RESTIC_PROGRESS_FPS: '0.2' };
const resticRepo = (r: Run) => (r.backend === 'file' ? r.store : `s3:${r.s3!.endpoint}/${r.s3!.bucket}/${r.prefix}`);
const restic: SmallTool = {
  name: 'restic',
  async init(r) { await measure('restic', ['-r', resticRepo(r), 'init', '--repository-version', '2'], { env: RESTIC_ENV, label: 'restic init' }); },
  async step(r, s) {
    if (s === 'restore') {
      const m = await measure('restic', ['-r', resticRepo(r), '--no-cache', 'restore', 'latest', '--target', r.restore], { env: RESTIC_ENV, label: 'restic restore' });
      return { m, root: path.join(r.restore, r.live) };
    }
    return { m: await measure('restic', ['-r', resticRepo(r), '--no-cache', 'backup', '--host', 'bench', r.live], { env: RESTIC_ENV, label: 'restic backup' }) };
  },
  objects: (r) => (r.backend === 'file' ? countFiles(r.store) : r.s3!.objects(`${r.prefix}/`)),
};
const TOOLS: Record<string, SmallTool> = { memvault, restic };

interface Sample { files: number; backend: Backend; tool: string; step: Step; wallMs: number; peakRss: number; objects: number; stored: number; requests: RequestCounts | null }

async function runOne(o: { files: number; backend: Backend; tool: SmallTool; work: string; s3: CountingS3 | null; seed: number; log: (s: string) => void }): Promise<{ samples: Sample[]; ok: boolean; change: string }> {
  const work = path.join(o.work, `${o.tool.name}-${o.backend}-${fmtCount(o.files)}`);
  await fs.rm(work, { recursive: true, force: true });
  const r: Run = { work, live: path.join(work, 'live'), store: path.join(work, 'store'), restore: path.join(work, 'restore'), backend: o.backend, s3: o.s3, prefix: `${o.tool.name}-${fmtCount(o.files)}-${Date.now()}` };
  await fs.mkdir(work, { recursive: true });
  let t = Date.now();
  const tree = await smallTree(r.live, o.files, o.seed);
  o.log(`  ${o.tool.name} on ${o.backend}: tree of ${o.files} files (${(tree.bytes / MiB).toFixed(1)} MiB) generated in ${((Date.now() - t) / 1000).toFixed(1)} s`);
  spawnSync('sync');
  await o.tool.init(r);
  const samples: Sample[] = [];
  let change = '';
  let restoredRoot = '';
  for (const step of STEPS) {
    if (step === 'incremental') {
      const c = await smallChange(r.live, o.files, o.seed);
      change = `${c.touched} files rewritten, ${c.added} new (${(c.bytes / MiB).toFixed(1)} MiB)`;
      spawnSync('sync');
    }
    o.s3?.reset();
    const { m, root } = await o.tool.step(r, step);
    const requests = o.s3 ? { ...o.s3.counts } : null;
    if (root) restoredRoot = root;
    const obj = await o.tool.objects(r);
    samples.push({ files: o.files, backend: o.backend, tool: o.tool.name, step, wallMs: m.wallMs, peakRss: m.peakRss, objects: obj.count, stored: obj.bytes, requests });
    o.log(`    ${step}: ${(m.wallMs / 1000).toFixed(1)} s, peak ${(m.peakRss / MiB).toFixed(0)} MiB, ${obj.count} objects${requests ? `, ${totalRequests(requests)} requests ${JSON.stringify(requests)}` : ''}`);
  }
  const [want, got] = await Promise.all([treeDigest(r.live), treeDigest(restoredRoot)]);
  const ok = want.digest === got.digest;
  o.log(`    restored = source: ${ok ? 'yes' : `NO (${got.files} files restored of ${want.files})`}`);
  return { samples, ok, change };
}

function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => `| ${r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join(' | ')} |`;
  return [line(head), `|${w.map((n, i) => (i === 0 ? ':' : '') + '-'.repeat(n + 1) + (i === 0 ? '' : ':')).join('|')}|`, ...rows.map(line)].join('\n');
}
const fmtReq = (c: RequestCounts | null) => (c ? `${totalRequests(c)} (${REQUEST_TYPES.filter((t) => c[t] > 0).map((t) => `${t} ${c[t]}`).join(', ')})` : '—');

/** The side-by-side report: one table per (size, store), memvault | restic | ratio, and the targets. */
export function report(samples: Sample[], notes: string[]): string {
  const out: string[] = [];
  const keys = [...new Set(samples.map((s) => `${s.files}|${s.backend}`))];
  const misses: string[] = [];
  for (const k of keys) {
    const [files, backend] = [Number(k.split('|')[0]), k.split('|')[1] as Backend];
    const get = (tool: string, step: Step) => samples.find((s) => s.files === files && s.backend === backend && s.tool === tool && s.step === step);
    out.push(`#### ${fmtCount(files)} files, ${backend === 'file' ? 'file://' : 's3 (s3rver on loopback)'}`, '');
    const rows: string[][] = [];
    for (const step of STEPS) {
      const m = get('memvault', step), r = get('restic', step);
      const ratio = (a?: number, b?: number) => (a !== undefined && b ? (a / b).toFixed(2) : '—');
      rows.push([`${step}: wall time`, m ? `${(m.wallMs / 1000).toFixed(1)} s` : '—', r ? `${(r.wallMs / 1000).toFixed(1)} s` : '—', ratio(m?.wallMs, r?.wallMs)]);
      rows.push([`${step}: peak RSS`, m ? `${(m.peakRss / MiB).toFixed(0)} MiB` : '—', r ? `${(r.peakRss / MiB).toFixed(0)} MiB` : '—', ratio(m?.peakRss, r?.peakRss)]);
      rows.push([`${step}: store objects after`, m ? String(m.objects) : '—', r ? String(r.objects) : '—', ratio(m?.objects, r?.objects)]);
      if (backend === 's3') rows.push([`${step}: S3 requests`, fmtReq(m?.requests ?? null), fmtReq(r?.requests ?? null), ratio(m?.requests ? totalRequests(m.requests) : undefined, r?.requests ? totalRequests(r.requests) : undefined)]);
      if (m && r) {
        if (m.wallMs > r.wallMs) misses.push(`${fmtCount(files)} ${backend} ${step}: wall time ${(m.wallMs / r.wallMs).toFixed(2)}x restic's`);
        if (step !== 'restore' && m.requests && r.requests && totalRequests(m.requests) > 2 * totalRequests(r.requests)) misses.push(`${fmtCount(files)} ${backend} ${step}: ${(totalRequests(m.requests) / totalRequests(r.requests)).toFixed(2)}x restic's S3 requests (target <= 2x)`);
      }
      if (m && m.peakRss >= 256 * MiB) misses.push(`${fmtCount(files)} ${backend} ${step}: memvault peak RSS ${(m.peakRss / MiB).toFixed(0)} MiB (target < 256 MiB)`);
    }
    out.push(table(['step', 'memvault', 'restic', 'memvault / restic'], rows), '');
  }
  const sizes = [...new Set(samples.map((s) => s.files))].sort((a, b) => a - b);
  if (sizes.length > 1) {
    const peak = (n: number) => Math.max(...samples.filter((s) => s.tool === 'memvault' && s.files === n).map((s) => s.peakRss));
    const f = peak(sizes[sizes.length - 1]) / peak(sizes[0]);
    out.push(`memvault peak RSS, ${fmtCount(sizes[sizes.length - 1])} / ${fmtCount(sizes[0])} files: ${f.toFixed(2)}x (target: flat, <= 1.25x): ${f <= 1.25 ? 'PASS' : 'MISS'}`, '');
    if (f > 1.25) misses.push(`peak RSS grows ${f.toFixed(2)}x from ${fmtCount(sizes[0])} to ${fmtCount(sizes[sizes.length - 1])} files`);
  }
  out.push(...notes, '', misses.length ? `Targets missed:\n${misses.map((m) => `- ${m}`).join('\n')}` : 'All targets met.');
  return out.join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      files: { type: 'string', default: '50k' },
      also: { type: 'string', multiple: true, default: [] },
      backends: { type: 'string', default: 'file,s3' },
      tools: { type: 'string', default: 'memvault,restic' },
      work: { type: 'string', default: path.join(REPO_ROOT, 'bench', '.work', 'small') },
      seed: { type: 'string', default: '11' },
      keep: { type: 'boolean', default: false },
      'write-results': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log('npm run bench:small -- [--files 50k] [--also 200k --also 1M] [--backends file,s3] [--tools memvault,restic] [--work DIR] [--keep] [--write-results]');
    return;
  }
  const sizes = [values.files!, ...values.also!].map(parseCount);
  const backends = values.backends!.split(',') as Backend[];
  for (const b of backends) if (b !== 'file' && b !== 's3') throw new Error(`--backends: expected file and/or s3, got "${b}"`);
  const tools = values.tools!.split(',').map((t) => { const x = TOOLS[t]; if (!x) throw new Error(`--tools: unknown tool "${t}" (memvault, restic)`); return x; });
  if (backends.includes('s3') && !process.execArgv.includes('--openssl-legacy-provider') && !/openssl-legacy-provider/.test(process.env.NODE_OPTIONS ?? '')) {
    throw new Error('the s3 backend needs node --openssl-legacy-provider (s3rver pagination tokens): run it with `npm run bench:small`');
  }
  const log = (s: string) => console.log(s);
  const samples: Sample[] = [];
  const failed: string[] = [];
  let change = '';
  const s3 = backends.includes('s3') ? await startCountingS3() : null;
  const started = new Date();
  // The code measured: each memvault step loads it afresh, so commit before starting.
  const commit = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8' }).stdout.trim();
  const dirty = spawnSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: REPO_ROOT, encoding: 'utf8' }).stdout.trim() ? ' (with uncommitted changes)' : '';
  try {
    for (const files of sizes) {
      for (const backend of backends) {
        for (const tool of tools) {
          log(`${fmtCount(files)} files, ${backend}, ${tool.name}`);
          const res = await runOne({ files, backend, tool, work: values.work!, s3: backend === 's3' ? s3 : null, seed: Number(values.seed), log });
          samples.push(...res.samples);
          change = res.change;
          if (!res.ok) failed.push(`${tool.name} ${backend} ${fmtCount(files)}`);
          if (!values.keep) await fs.rm(path.join(values.work!, `${tool.name}-${backend}-${fmtCount(files)}`), { recursive: true, force: true });
        }
      }
    }
  } finally {
    await s3?.close();
  }
  const rv = spawnSync('restic', ['version'], { encoding: 'utf8' }).stdout?.split('\n')[0] ?? 'restic: not found';
  const notes = [
    `Trees: N files of 0.5-8 KiB (log-uniform; 70% JSON-like text, 30% random bytes), 1000 per directory, seed ${values.seed}. Change before the incremental: ${change}.`,
    `Each step measured once; wall time of the command, peak RSS of its process tree (${haveTime ? '/usr/bin/time %M and /proc sampling' : '/proc sampling only'}); objects in the store after the step; S3 requests counted at the server, by type. restic: ${rv}, repository v2, --no-cache; memvault at ${commit}${dirty} on Node ${process.versions.node}, ${os.cpus().length} CPUs.`,
    `Restored = source: ${failed.length ? `NO for ${failed.join(', ')}` : 'yes for every run'}.`,
  ];
  const text = report(samples, notes);
  console.log(`\n${text}`);
  if (values['write-results']) {
    const file = path.join(REPO_ROOT, 'bench', 'RESULTS.md');
    const head = `\n### Small files (${sizes.map(fmtCount).join(', ')} files; ${backends.join(', ')}), ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC\n\nFrom \`npm run bench:small -- ${process.argv.slice(2).join(' ')}\`.\n\n`;
    await fs.appendFile(file, head + text + '\n');
    console.log(`appended to ${file}`);
  }
  if (failed.length) process.exitCode = 1;
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
