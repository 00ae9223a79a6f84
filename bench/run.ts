// memvault vs restic vs the classic tar+gzip runbook, on the same generated
// data, with every store on local disk.
//
// For each size (--size, then each --also), and each repetition, every tool in
// turn (order alternates between repetitions, so the tools take turns at the
// machine):
//   copy the dataset to a private tree -> init -> full backup -> apply the
//   identical 1% change -> incremental backup -> restore into an empty
//   directory -> check the restored tree equals the changed tree (paths, modes,
//   contents).
// Per step: wall time, bytes in the store after the step and the step's delta,
// peak RSS of the tool's process tree. Figures are best-of-N for time, median
// for bytes, max for memory. Then the ratios memvault/restic and the targets,
// PASS or MISS.
//
//   npm run bench -- --size 256M                       quick
//   npm run bench -- --size 1G --also 4G --repeat 2 --write-results
import { parseArgs } from 'node:util';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { applyChange, diffTrees, digestTree, generateDataset, type ChangeInfo, type DatasetInfo, MiB } from './dataset.ts';
import { dirBytes, haveTime, measure, type StepMeasure } from './measure.ts';
import { REPO_ROOT, TOOLS, type RunDirs } from './tools.ts';

const STEPS = ['full', 'incremental', 'restore'] as const;
type Step = (typeof STEPS)[number];

interface Sample {
  tool: string;
  rep: number;
  step: Step;
  wallMs: number;
  peakRss: number;
  peakProcess: number;
  peakTree: number;
  /** Bytes in the store after the step. */
  stored: number;
  /** Bytes the step added to the store. */
  delta: number;
}

interface SizeResult {
  size: number;
  tools: string[];
  dataset: DatasetInfo;
  change: ChangeInfo;
  samples: Sample[];
  verified: Record<string, string[]>;
  changedDigests: Record<string, string>;
}

function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B)?$/i.exec(s.trim());
  if (!m) throw new Error(`bad size "${s}": expected e.g. 256M, 1G, 4G`);
  const mult = { '': 1, K: 1024, M: MiB, G: 1024 * MiB, T: 1024 * 1024 * MiB }[m[2].toUpperCase() as '' | 'K' | 'M' | 'G' | 'T'];
  return Math.round(Number(m[1]) * mult);
}

export function fmtBytes(n: number): string {
  const a = Math.abs(n);
  if (a >= 1024 * MiB) return `${(n / (1024 * MiB)).toFixed(2)} GiB`;
  if (a >= MiB) return `${(n / MiB).toFixed(1)} MiB`;
  if (a >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}

const fmtSize = (n: number) => (n % (1024 * MiB) === 0 ? `${n / (1024 * MiB)} GiB` : `${Math.round(n / MiB)} MiB`);
const fmtS = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => `| ${r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join(' | ')} |`;
  return [line(head), `|${w.map((n, i) => (i === 0 ? ':' : '') + '-'.repeat(n + 1) + (i === 0 ? '' : ':')).join('|')}|`, ...rows.map(line)].join('\n');
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function agg(samples: Sample[], tool: string, step: Step) {
  const xs = samples.filter((s) => s.tool === tool && s.step === step);
  if (xs.length === 0) return undefined;
  return {
    wallMs: Math.min(...xs.map((s) => s.wallMs)),
    wallMedian: median(xs.map((s) => s.wallMs)),
    walls: xs.map((s) => s.wallMs),
    peakRss: Math.max(...xs.map((s) => s.peakRss)),
    stored: median(xs.map((s) => s.stored)),
    delta: median(xs.map((s) => s.delta)),
  };
}

async function sh(cmd: string, args: string[]): Promise<void> {
  await measure(cmd, args, { label: cmd });
}

async function prepareDataset(work: string, size: number, seed: number, log: (s: string) => void): Promise<{ dir: string; info: DatasetInfo }> {
  const name = `dataset-${size}-s${seed}`;
  const dir = path.join(work, name);
  const marker = path.join(work, `${name}.json`);
  try {
    const info = JSON.parse(await fs.readFile(marker, 'utf8')) as DatasetInfo;
    log(`dataset ${fmtSize(size)}: reusing ${dir}`);
    return { dir, info };
  } catch {
    // generate
  }
  await fs.rm(dir, { recursive: true, force: true });
  log(`dataset ${fmtSize(size)}: generating into ${dir}`);
  const t0 = Date.now();
  const info = await generateDataset(dir, size, seed, log);
  await fs.writeFile(marker, JSON.stringify(info, null, 2));
  log(`  ${fmtBytes(info.bytes.total)} in ${info.files} files, ${fmtS(Date.now() - t0)}`);
  return { dir, info };
}

async function runTool(toolName: string, rep: number, base: string, info: DatasetInfo, runRoot: string, log: (s: string) => void) {
  const tool = TOOLS[toolName];
  const work = path.join(runRoot, toolName);
  await fs.rm(work, { recursive: true, force: true });
  await fs.mkdir(work, { recursive: true });
  const d: RunDirs = { work, live: path.join(work, 'live'), store: path.join(work, 'store'), restore: path.join(work, 'restore') };
  await sh('cp', ['-a', '--reflink=auto', base, d.live]);
  spawnSync('sync');
  await tool.init(d);
  const samples: Sample[] = [];
  let before = await dirBytes(d.store);
  const record = async (step: Step, m: StepMeasure) => {
    const stored = await dirBytes(d.store);
    const s: Sample = { tool: toolName, rep, step, wallMs: m.wallMs, peakRss: m.peakRss, peakProcess: m.peakProcess, peakTree: m.peakTree, stored, delta: stored - before };
    before = stored;
    samples.push(s);
    log(`  ${toolName.padEnd(8)} rep ${rep} ${step.padEnd(11)} ${fmtS(m.wallMs).padStart(8)}  stored ${fmtBytes(stored).padStart(10)} (+${fmtBytes(s.delta)})  peak ${fmtBytes(m.peakRss)}`);
  };
  await record('full', await tool.full(d));
  const change = await applyChange(d.live, info);
  spawnSync('sync');
  await record('incremental', await tool.incremental(d));
  const want = await digestTree(d.live);
  const { m, root } = await tool.restore(d);
  await record('restore', m);
  const got = await digestTree(root);
  const problems = want.digest === got.digest ? [] : diffTrees(want, got);
  log(`  ${toolName.padEnd(8)} rep ${rep} restore check: ${problems.length === 0 ? `identical (${want.files} files, ${fmtBytes(want.bytes)})` : `DIFFERS: ${problems.join('; ')}`}`);
  return { samples, change, problems, changedDigest: want.digest };
}

async function machine(): Promise<Record<string, string>> {
  const first = async (cmd: string, args: string[]) => {
    const r = spawnSync(cmd, args, { encoding: 'utf8' });
    return (r.stdout || r.stderr || '').split('\n')[0].trim();
  };
  return {
    cpu: `${os.cpus()[0]?.model ?? 'unknown'}`,
    nproc: String(os.availableParallelism()),
    ram: fmtBytes(os.totalmem()),
    kernel: `${os.type()} ${os.release()}`,
    filesystem: await first('sh', ['-c', `df -T "${REPO_ROOT}" | awk 'NR==2{print $2}'`]),
    node: process.version,
    memvault: await first('sh', ['-c', `cd "${REPO_ROOT}" && echo "commit $(git rev-parse --short HEAD)$(n=$(git status --porcelain -- functions cli | wc -l); [ "$n" -gt 0 ] && echo " + $n uncommitted change(s) in functions/ and cli/ (the working tree was measured)")"`]),
  };
}

function report(results: SizeResult[], tools: string[], meta: { repeat: number; toolInfo: Record<string, string>; machine: Record<string, string>; args: string }): { text: string; misses: number } {
  const out: string[] = [];
  let misses = 0;
  out.push(`Caveat: timings are from a shared 2-core machine where other work runs at the same time; each tool ran the same steps back to back, interleaved (order alternating per repetition), and times are the best of the runs (up to ${meta.repeat} per tool and size; see each section). Treat differences under ~15% as noise.`);
  for (const r of results) {
    const ds = r.dataset;
    out.push('');
    out.push(`### ${fmtSize(r.size)} dataset (${r.tools.join(', ')}; ${Math.max(...r.samples.map((x) => x.rep))} run(s) each)`);
    out.push('');
    out.push(`Data: ${fmtBytes(ds.bytes.total)} in ${ds.files} files: SQLite ${fmtBytes(ds.bytes.db)} (${((100 * ds.bytes.db) / ds.bytes.total).toFixed(0)}%), text/logs/JSON ${fmtBytes(ds.bytes.text)} (${((100 * ds.bytes.text) / ds.bytes.total).toFixed(0)}%), float32 weights ${fmtBytes(ds.bytes.weights)} (${((100 * ds.bytes.weights) / ds.bytes.total).toFixed(0)}%).`);
    const c = r.change;
    out.push(`Change before the incremental: ${fmtBytes(c.total)} (${((100 * c.total) / ds.bytes.total).toFixed(2)}%): ${c.weightRegions} weight regions of 2 MiB rewritten in place, ${fmtBytes(c.logBytes)} appended to 2 logs, ${c.dbRows} memory rows (+${fmtBytes(c.dbGrowth)}) added to the SQLite db.`);
    out.push('');
    const tools = r.tools;
    const rows = tools.map((t) => {
      const f = agg(r.samples, t, 'full');
      const i = agg(r.samples, t, 'incremental');
      const re = agg(r.samples, t, 'restore');
      if (!f || !i || !re) return [t, ...Array(10).fill('-')];
      const ok = r.verified[t];
      return [t, fmtS(f.wallMs), fmtBytes(f.stored), fmtBytes(f.peakRss), fmtS(i.wallMs), `+${fmtBytes(i.delta)}`, fmtBytes(i.peakRss), fmtS(re.wallMs), fmtBytes(re.peakRss), ok && ok.length === 0 ? 'yes' : 'NO'];
    });
    out.push(table(['tool', 'full time', 'stored', 'full peak RSS', 'incr time', 'incr stored', 'incr peak RSS', 'restore time', 'restore peak RSS', 'restored = source'], rows));
    out.push('');
    out.push('All samples (wall time per repetition): ' + tools.map((t) => `${t}: ${STEPS.map((s) => `${s} ${(agg(r.samples, t, s)?.walls ?? []).map(fmtS).join('/')}`).join(', ')}`).join('; '));
    const digests = new Set(Object.values(r.changedDigests));
    out.push(`Changed trees identical across tools: ${digests.size <= 1 ? 'yes' : 'NO (the change was not deterministic; byte figures are not comparable)'}.`);
    for (const [t, p] of Object.entries(r.verified)) if (p.length > 0) out.push(`RESTORE MISMATCH ${t}: ${p.join('; ')}`);

    for (const mt of ['memvault', 'memvault-w0'].filter((t) => tools.includes(t) && tools.includes('restic'))) {
      const m = { f: agg(r.samples, mt, 'full')!, i: agg(r.samples, mt, 'incremental')!, r: agg(r.samples, mt, 'restore')! };
      const q = { f: agg(r.samples, 'restic', 'full')!, i: agg(r.samples, 'restic', 'incremental')!, r: agg(r.samples, 'restic', 'restore')! };
      const ratio = (a: number, b: number) => (b > 0 ? a / b : Infinity);
      const checks: [string, number, number, string][] = [
        ['full backup time', ratio(m.f.wallMs, q.f.wallMs), 1, `${fmtS(m.f.wallMs)} vs ${fmtS(q.f.wallMs)}`],
        ['incremental time', ratio(m.i.wallMs, q.i.wallMs), 1, `${fmtS(m.i.wallMs)} vs ${fmtS(q.i.wallMs)}`],
        ['incremental bytes stored', ratio(m.i.delta, q.i.delta), 1.2, `${fmtBytes(m.i.delta)} vs ${fmtBytes(q.i.delta)}`],
        ['restore time', ratio(m.r.wallMs, q.r.wallMs), NaN, `${fmtS(m.r.wallMs)} vs ${fmtS(q.r.wallMs)}`],
        ['full bytes stored', ratio(m.f.delta, q.f.delta), NaN, `${fmtBytes(m.f.delta)} vs ${fmtBytes(q.f.delta)}`],
      ];
      out.push('');
      out.push(table([`${mt} / restic`, 'ratio', 'target', 'result', `${mt} vs restic`], checks.map(([n, v, tgt, detail]) => {
        const has = !Number.isNaN(tgt);
        const pass = v <= tgt;
        if (has && !pass && mt === 'memvault') misses++; // the targets are the default's; memvault-w0 is for information
        return [n, v.toFixed(2), has ? `<= ${tgt}` : '(info)', has ? (pass ? 'PASS' : 'MISS') : '', detail];
      })));
    }
  }

  for (const mt of ['memvault', 'memvault-w0'].filter((t) => tools.includes(t))) {
    out.push('');
    out.push(`### ${mt} peak memory`);
    out.push('');
    const peaks = results.filter((r) => r.tools.includes(mt)).map((r) => ({ size: r.size, peak: Math.max(...STEPS.map((s) => agg(r.samples, mt, s)?.peakRss ?? 0)), per: STEPS.map((s) => agg(r.samples, mt, s)?.peakRss ?? 0) }));
    const rows = peaks.map((p) => [fmtSize(p.size), ...p.per.map(fmtBytes), fmtBytes(p.peak), p.peak < 256 * MiB ? 'PASS' : 'MISS']);
    if (mt === 'memvault') for (const p of peaks) if (p.peak >= 256 * MiB) misses++;
    out.push(table(['data', 'full', 'incremental', 'restore', 'max', '< 256 MiB'], rows));
    if (peaks.length > 1) {
      const lo = peaks[0];
      const hi = peaks[peaks.length - 1];
      const growth = hi.peak / lo.peak;
      const flat = growth <= 1.25;
      if (!flat && mt === 'memvault') misses++;
      out.push('');
      out.push(`Flatness: ${fmtSize(hi.size)} / ${fmtSize(lo.size)} peak = ${growth.toFixed(2)}x for ${(hi.size / lo.size).toFixed(0)}x the data (target: flat, <= 1.25x): ${flat ? 'PASS' : 'MISS'}`);
    } else {
      out.push('');
      out.push('Flatness: run with --also 4G to compare sizes.');
    }
  }
  return { text: out.join('\n'), misses };
}

async function main() {
  const { values: a } = parseArgs({
    options: {
      size: { type: 'string', default: '1G' },
      also: { type: 'string', multiple: true, default: [] },
      repeat: { type: 'string', default: '2' },
      tools: { type: 'string', default: 'memvault,restic,tar' },
      'also-tools': { type: 'string' },
      seed: { type: 'string', default: '42' },
      work: { type: 'string', default: path.join(REPO_ROOT, 'bench', '.work') },
      keep: { type: 'boolean', default: false },
      'keep-dataset': { type: 'boolean', default: false },
      'write-results': { type: 'boolean', default: false },
      'from-json': { type: 'string', multiple: true, default: [] },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (a.help) {
    process.stdout.write(`usage: npm run bench -- [--size 1G] [--also 4G]... [--repeat 2] [--tools memvault,restic,tar]
       [--seed 42] [--work DIR] [--keep] [--keep-dataset] [--write-results]
  --size           dataset size (K/M/G suffixes, powers of 1024)            default 1G
  --also           further sizes to run (repeatable), e.g. --also 4G for memory flatness
  --repeat         runs per tool and size, interleaved; best time is reported  default 2
  --tools          comma-separated subset of: ${Object.keys(TOOLS).join(', ')}
  --also-tools     tools for the --also sizes (default: --tools), e.g. memvault,restic
  --work           scratch directory (datasets, stores, restores)          default bench/.work
  --keep           keep each tool's store and restore after the run (uses a lot of disk)
  --keep-dataset   keep the generated datasets for the next run (else deleted at the end)
  --write-results  write the report to bench/RESULTS.md
  --from-json F    no runs: report the results-*.json of earlier runs (repeatable; sizes in order given)
`);
    return 0;
  }
  const sizes = [a.size!, ...(a.also ?? []).flatMap((s) => s.split(','))].map(parseSize);
  const repeat = Math.max(1, Number(a.repeat));
  const tools = a.tools!.split(',').map((t) => t.trim()).filter(Boolean);
  for (const t of tools) if (!TOOLS[t]) throw new Error(`--tools: unknown tool "${t}"; known: ${Object.keys(TOOLS).join(', ')}`);
  const alsoTools = a['also-tools'] ? a['also-tools'].split(',').map((t) => t.trim()).filter(Boolean) : tools;
  for (const t of alsoTools) if (!tools.includes(t)) throw new Error(`--also-tools: "${t}" is not in --tools`);
  const seed = Number(a.seed);
  const work = path.resolve(a.work!);
  await fs.mkdir(work, { recursive: true });
  const log = (s: string) => process.stderr.write(`${s}\n`);

  let toolInfo: Record<string, string> = {};
  let mach: Record<string, string>;
  const results: SizeResult[] = [];
  const started = new Date();
  if ((a['from-json'] ?? []).length > 0) {
    for (const f of a['from-json']!) {
      const j = JSON.parse(await fs.readFile(f, 'utf8')) as { machine: Record<string, string>; toolInfo: Record<string, string>; results: SizeResult[] };
      results.push(...j.results);
      toolInfo = { ...j.toolInfo, ...toolInfo };
      mach = j.machine;
    }
    const all = [...new Set(results.flatMap((r) => r.tools))];
    return finish(results, all.length ? all : tools, Math.max(...results.flatMap((r) => r.samples.map((x) => x.rep))), toolInfo, mach!, started, a['write-results']!, a['from-json']!.map((f) => path.basename(f)).join(' + '));
  }
  for (const t of tools) toolInfo[t] = await TOOLS[t].describe();
  mach = await machine();
  log(`memvault ${mach.memvault}`);
  log(`machine: ${mach.nproc} CPUs (${mach.cpu}), ${mach.ram} RAM, ${mach.filesystem}; peak memory via ${haveTime ? '/usr/bin/time %M + /proc tree sampling' : '/proc tree sampling only'}`);
  for (const t of tools) log(`${t}: ${toolInfo[t]}`);
  log('note: shared machine, timings are noisy; tools run interleaved, best of N reported');

  for (const [si, size] of sizes.entries()) {
    const sizeTools = si === 0 ? tools : alsoTools;
    const { dir, info } = await prepareDataset(work, size, seed, log);
    const res: SizeResult = { size, tools: sizeTools, dataset: info, change: undefined as unknown as ChangeInfo, samples: [], verified: {}, changedDigests: {} };
    const runRoot = path.join(work, `run-${size}`);
    for (let rep = 1; rep <= repeat; rep++) {
      const order = rep % 2 === 1 ? sizeTools : [...sizeTools].reverse();
      for (const t of order) {
        const r = await runTool(t, rep, dir, info, runRoot, log);
        res.samples.push(...r.samples);
        res.change = r.change;
        res.verified[t] = [...(res.verified[t] ?? []), ...r.problems];
        if (res.changedDigests[t] && res.changedDigests[t] !== r.changedDigest) res.changedDigests[`${t}#${rep}`] = r.changedDigest;
        else res.changedDigests[t] = r.changedDigest;
        if (!a.keep) await fs.rm(path.join(runRoot, t), { recursive: true, force: true });
      }
    }
    if (!a.keep) await fs.rm(runRoot, { recursive: true, force: true });
    if (!a['keep-dataset']) {
      await fs.rm(dir, { recursive: true, force: true });
      await fs.rm(path.join(work, `dataset-${size}-s${seed}.json`), { force: true });
    }
    results.push(res);
    await fs.writeFile(path.join(work, `results-${started.toISOString().replace(/[:.]/g, '')}.json`), JSON.stringify({ machine: mach, toolInfo, results }, null, 2));
  }

  return finish(results, tools, repeat, toolInfo, mach, started, a['write-results']!, `\`npm run bench -- ${process.argv.slice(2).join(' ')}\``);
}

async function finish(results: SizeResult[], tools: string[], repeat: number, toolInfo: Record<string, string>, mach: Record<string, string>, started: Date, write: boolean, how: string): Promise<number> {
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const { text, misses } = report(results, tools, { repeat, toolInfo, machine: mach, args: how });
  process.stdout.write(`\n${text}\n\n${misses === 0 ? 'all targets met' : `${misses} target(s) missed`}\n`);

  if (write) {
    const md = [
      '# Benchmark results',
      '',
      `Reported ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC from ${how}.`,
      '',
      `Machine: ${mach.nproc} CPUs (${mach.cpu}), ${mach.ram} RAM, ${mach.kernel}, ${mach.filesystem} on a virtual disk; ${mach.node}.`,
      `Code measured: memvault ${mach.memvault}.`,
      'Tools:',
      ...tools.map((t) => `- ${t}: ${toolInfo[t]}`),
      '',
      `Peak RSS: the larger of the biggest single process's max RSS (/usr/bin/time %M) and the sum of RSS over the tool's process tree sampled every 50 ms; the max over repetitions. Stored: apparent bytes of every file in the vault / repository / backup directory after the step (median over repetitions); "incr stored" is what the incremental added.`,
      '',
      text,
      '',
      misses === 0 ? 'All targets met.' : `${misses} target(s) missed.`,
      '',
    ].join('\n');
    await fs.writeFile(path.join(REPO_ROOT, 'bench', 'RESULTS.md'), md);
    log('wrote bench/RESULTS.md');
  }
  const bad = results.some((r) => Object.values(r.verified).some((p) => p.length > 0));
  return bad ? 1 : 0;
}

main().then((code) => { process.exitCode = code; }, (err) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exitCode = 1;
});
