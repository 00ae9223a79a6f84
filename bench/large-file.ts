// One large file (a model checkpoint) backed up and restored: memvault with
// MEMVAULT_WORKERS=0/1/2 beside restic, on the same file, each store on local
// disk. Shows whether one file uses every core (issue 11).
//
// The file is deterministic and partly compressible, in 4 MiB blocks: 5 of 8
// random (AES-CTR keystream, like float32 weights that zstd cannot shrink),
// 2 of 8 low-entropy (random nibbles: zstd about halves them), 1 of 8 text
// (log-like, compresses well).
//
// For each size and repetition, each tool in turn (order reversed on odd
// repetitions): init (not timed) -> backup (timed) -> restore into an empty
// directory (timed) -> SHA-256 of the restored file against the source (not
// timed) -> store and restore deleted. memvault's restore includes its
// validation (it re-reads and hashes every restored file); restic's restore
// does not verify unless asked. Wall time best of N, peak RSS max of N.
//
//   npx tsx bench/large-file.ts --size 1G --also 4G --repeat 2
//   npx tsx bench/large-file.ts --files 16x32M --threshold 16M,1T     the threshold probe:
//       many mid-sized files with the split path on (threshold 16M) or off (1T), MEMVAULT_WORKERS=2
import { parseArgs } from 'node:util';
import { createCipheriv, createHash } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { measure, type StepMeasure } from './measure.ts';
import { REPO_ROOT } from './tools.ts';

const MiB = 1024 * 1024;

function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)$/i.exec(s.trim());
  if (!m) throw new Error(`bad size "${s}": expected e.g. 256M, 1G, 4G`);
  return Math.round(Number(m[1]) * { '': 1, K: 1024, M: MiB, G: 1024 * MiB, T: 1024 * 1024 * MiB }[m[2].toUpperCase() as '' | 'K' | 'M' | 'G' | 'T']);
}
const fmtSize = (n: number) => (n >= 1024 * MiB ? `${n / (1024 * MiB)} GiB` : `${Math.round(n / MiB)} MiB`);
const fmtS = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const fmtMiB = (n: number) => `${Math.round(n / MiB)} MiB`;

/** Writes `size` deterministic bytes (see header) to `file`. */
async function generate(file: string, size: number, seed: number): Promise<void> {
  const key = createHash('sha256').update(`large-file-bench-${seed}`).digest();
  const ctr = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  const zero = Buffer.alloc(4 * MiB);
  const text = Buffer.from(Array.from({ length: 100_000 }, (_, i) => `step ${i} loss ${(1 / (i + 1)).toFixed(6)} lr 3e-4 tokens ${i * 4096}\n`).join('')).subarray(0, 4 * MiB);
  if (text.length < 4 * MiB) throw new Error('bench: the text block is shorter than 4 MiB');
  const fh = await fs.open(file, 'w');
  try {
    for (let off = 0, block = 0; off < size; off += 4 * MiB, block++) {
      const n = Math.min(4 * MiB, size - off);
      let buf = ctr.update(zero);
      if (block % 8 === 3 || block % 8 === 6) {
        buf = Buffer.from(buf);
        for (let i = 0; i < buf.length; i++) buf[i] &= 0x0f;
      } else if (block % 8 === 7) {
        buf = Buffer.concat([Buffer.from(`block ${block}\n`), text]).subarray(0, 4 * MiB);
      }
      await fh.write(buf, 0, n);
    }
  } finally {
    await fh.close();
  }
}

async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const b of createReadStream(file, { highWaterMark: 4 * MiB })) h.update(b as Buffer);
  return h.digest('hex');
}

interface Dirs { work: string; data: string; store: string; restore: string }

interface Tool {
  name: string;
  init(d: Dirs): Promise<void>;
  backup(d: Dirs): Promise<StepMeasure>;
  /** Restores; returns the directory that holds the data directory's files. */
  restore(d: Dirs): Promise<{ m: StepMeasure; root: string }>;
}

function memvault(workers: string, extraEnv: Record<string, string> = {}, name = `memvault W=${workers}`): Tool {
  const env = { ...process.env, MEMVAULT_WORKERS: workers, ...extraEnv };
  const mv = (d: Dirs, args: string[]) => measure(process.execPath, [path.join(REPO_ROOT, 'cli', 'memvault.mjs'), ...args, '--config', path.join(d.work, 'memvault.yaml'), '--json'], { cwd: d.work, env, label: `${name} ${args[0]}` });
  return {
    name,
    async init(d) {
      await fs.writeFile(path.join(d.work, 'memvault.yaml'), [
        'vault:', `  primary: ${JSON.stringify(`file://${d.store}`)}`,
        'encryption:', `  key: ${JSON.stringify(path.join(d.work, 'memvault.key'))}`,
        'alerts:', '  - type: stdout',
        'components:', '  model:', '    kind: files', `    path: ${JSON.stringify(d.data)}`, '',
      ].join('\n'));
      await mv(d, ['init']);
    },
    backup: (d) => mv(d, ['backup', '--type', 'full']),
    async restore(d) {
      return { m: await mv(d, ['restore', '--latest', '--target', d.restore]), root: path.join(d.restore, 'model') };
    },
  };
}

const RESTIC_ENV = { ...process.env, RESTIC_PASSWORD: 'bench-password-not-secret', RESTIC_PROGRESS_FPS: '0.2' };
const restic: Tool = {
  name: 'restic',
  async init(d) {
    await measure('restic', ['-r', d.store, 'init', '--repository-version', '2'], { env: RESTIC_ENV, label: 'restic init' });
  },
  backup: (d) => measure('restic', ['-r', d.store, '--no-cache', 'backup', '--host', 'bench', d.data], { env: RESTIC_ENV, label: 'restic backup' }),
  async restore(d) {
    const m = await measure('restic', ['-r', d.store, '--no-cache', 'restore', 'latest', '--target', d.restore], { env: RESTIC_ENV, label: 'restic restore' });
    return { m, root: path.join(d.restore, d.data) };
  },
};

interface Sample { tool: string; step: 'backup' | 'restore'; wallMs: number; cpuS: number; peakRss: number; stored: number }

async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  for (const e of await fs.readdir(dir, { recursive: true, withFileTypes: true })) if (e.isFile()) total += (await fs.stat(path.join(e.parentPath, e.name))).size;
  return total;
}

async function runAll(label: string, data: string, files: string[], tools: Tool[], repeat: number, work: string): Promise<Sample[]> {
  const sums = new Map<string, string>();
  for (const f of files) sums.set(f, await sha256File(path.join(data, f)));
  const samples: Sample[] = [];
  for (let rep = 0; rep < repeat; rep++) {
    const order = rep % 2 === 0 ? tools : [...tools].reverse();
    for (const t of order) {
      const d: Dirs = { work: path.join(work, 'run'), data, store: path.join(work, 'run', 'store'), restore: path.join(work, 'run', 'restore') };
      await fs.rm(d.work, { recursive: true, force: true });
      await fs.mkdir(d.work, { recursive: true });
      await t.init(d);
      const b = await t.backup(d);
      const stored = await dirBytes(d.store);
      samples.push({ tool: t.name, step: 'backup', wallMs: b.wallMs, cpuS: b.cpuS, peakRss: b.peakRss, stored });
      // Cold restores are not the point here: every tool reads its store from the page cache alike.
      const r = await t.restore(d);
      samples.push({ tool: t.name, step: 'restore', wallMs: r.m.wallMs, cpuS: r.m.cpuS, peakRss: r.m.peakRss, stored });
      for (const f of files) {
        const got = await sha256File(path.join(r.root, f));
        if (got !== sums.get(f)) throw new Error(`${label} ${t.name}: restored ${f} differs from the source`);
      }
      console.error(`${label} rep ${rep + 1} ${t.name}: backup ${fmtS(b.wallMs)} (cpu ${b.cpuS.toFixed(1)} s, ${fmtMiB(b.peakRss)} peak), restore ${fmtS(r.m.wallMs)} (cpu ${r.m.cpuS.toFixed(1)} s, ${fmtMiB(r.m.peakRss)} peak), restored file(s) identical; load ${os.loadavg()[0].toFixed(1)}`);
      await fs.rm(d.work, { recursive: true, force: true });
    }
  }
  return samples;
}

function report(title: string, tools: Tool[], samples: Sample[], baseline?: string): string {
  const rows: string[] = [];
  const best = (t: string, s: string) => Math.min(...samples.filter((x) => x.tool === t && x.step === s).map((x) => x.wallMs));
  const all = (t: string, s: string) => samples.filter((x) => x.tool === t && x.step === s).map((x) => (x.wallMs / 1000).toFixed(1)).join(' / ');
  const peak = (t: string, s: string) => Math.max(...samples.filter((x) => x.tool === t && x.step === s).map((x) => x.peakRss));
  const cpu = (t: string, s: string) => Math.min(...samples.filter((x) => x.tool === t && x.step === s).map((x) => x.cpuS)).toFixed(1);
  rows.push(`| ${title} | backup (best; all runs) | restore (best; all runs) | ${baseline ? `backup / ${baseline} | restore / ${baseline} | ` : ''}CPU s backup / restore | peak RSS backup / restore | stored |`);
  rows.push(`|:--|--:|--:|${baseline ? '--:|--:|' : ''}--:|--:|--:|`);
  for (const t of tools) {
    const ratio = (s: string) => (baseline ? `${(best(t.name, s) / best(baseline, s)).toFixed(2)}x | ` : '');
    const stored = samples.find((x) => x.tool === t.name)!.stored;
    rows.push(`| ${t.name} | ${fmtS(best(t.name, 'backup'))} (${all(t.name, 'backup')}) | ${fmtS(best(t.name, 'restore'))} (${all(t.name, 'restore')}) | ${ratio('backup')}${ratio('restore')}${cpu(t.name, 'backup')} / ${cpu(t.name, 'restore')} | ${fmtMiB(peak(t.name, 'backup'))} / ${fmtMiB(peak(t.name, 'restore'))} | ${fmtMiB(stored)} |`);
  }
  return rows.join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      size: { type: 'string', default: '1G' },
      also: { type: 'string', multiple: true, default: [] },
      repeat: { type: 'string', default: '1' },
      tools: { type: 'string', default: '0,1,2,2whole,restic' },
      files: { type: 'string' },
      threshold: { type: 'string' },
      work: { type: 'string', default: path.join(REPO_ROOT, 'bench', '.work', 'large-file') },
    },
  });
  const repeat = Number(values.repeat);
  const work = path.resolve(values.work!);
  await fs.mkdir(work, { recursive: true });
  console.log(`# ${os.cpus().length} cores (${os.cpus()[0]?.model ?? '?'}), ${Math.round(os.totalmem() / 1024 / MiB)} GiB, load ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}, Node ${process.versions.node}`);
  const data = path.join(work, 'data');
  try {
    if (values.files) {
      // Threshold probe: N files of S bytes each, the split path on and off.
      const [n, s] = values.files.split('x');
      const size = parseSize(s);
      await fs.rm(data, { recursive: true, force: true });
      await fs.mkdir(data, { recursive: true });
      const names: string[] = [];
      for (let i = 0; i < Number(n); i++) {
        names.push(`shard-${i}.bin`);
        await generate(path.join(data, names[i]), size, i);
      }
      const tools = (values.threshold ?? '16M,1T').split(',').map((t) => memvault('2', { MEMVAULT_LARGE_FILE_BYTES: String(parseSize(t)) }, `memvault W=2, split >= ${t}`));
      const samples = await runAll(`${n} x ${fmtSize(size)}`, data, names, tools, repeat, work);
      console.log(`\n${report(`${n} files of ${fmtSize(size)}`, tools, samples)}`);
      return;
    }
    // "2whole": two workers, the file whole on one of them (the path before issue 11).
    const tools = values.tools!.split(',').map((t) => (t === 'restic' ? restic : t === '2whole' ? memvault('2', { MEMVAULT_LARGE_FILE_BYTES: String(2 ** 50) }, 'memvault W=2, whole file on one worker') : memvault(t)));
    for (const s of [values.size!, ...values.also!]) {
      const size = parseSize(s);
      await fs.rm(data, { recursive: true, force: true });
      await fs.mkdir(data, { recursive: true });
      await generate(path.join(data, 'checkpoint.bin'), size, 1);
      const samples = await runAll(fmtSize(size), data, ['checkpoint.bin'], tools, repeat, work);
      console.log(`\n${report(`one file of ${fmtSize(size)}`, tools, samples, tools.some((t) => t === restic) ? 'restic' : undefined)}`);
    }
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}

await main();
