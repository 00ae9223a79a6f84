// Measuring one step of a tool: wall time and peak memory of the child
// process tree, and the size of a directory.
//
// Peak memory is the larger of two figures:
//   - the largest single process's max RSS, from /usr/bin/time -f %M (exact:
//     the kernel's ru_maxrss over the child and every descendant it waited for),
//   - the sum of VmRSS over the whole process tree, sampled every 50 ms from
//     /proc (catches pipelines such as tar | gzip, where processes add up).
// Without /usr/bin/time only the sampled figure (and each process's VmHWM as
// last seen) is used.
import { spawn } from 'node:child_process';
import { promises as fs, existsSync, readFileSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface StepMeasure {
  wallMs: number;
  /** Peak RSS in bytes (see header). */
  peakRss: number;
  /** Largest single-process max RSS in bytes. */
  peakProcess: number;
  /** Largest sampled sum of RSS over the process tree, in bytes. */
  peakTree: number;
  /** User + system CPU seconds of the command and what it waited for (/usr/bin/time %U + %S; NaN without it). */
  cpuS: number;
  stdout: string;
  stderr: string;
  code: number;
}

const TIME = '/usr/bin/time';
export const haveTime = existsSync(TIME);

function kb(status: string, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
  return m ? Number(m[1]) * 1024 : 0;
}

/** Every descendant of `root` (and root itself), from /proc/<pid>/stat ppid fields. */
function tree(root: number): number[] {
  const parent = new Map<number, number[]>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = parent.get(ppid) ?? [];
      list.push(Number(d));
      parent.set(ppid, list);
    } catch {
      // the process ended while we looked
    }
  }
  const out: number[] = [];
  const stack = [root];
  while (stack.length) {
    const p = stack.pop()!;
    out.push(p);
    stack.push(...(parent.get(p) ?? []));
  }
  return out;
}

/** Runs a command to completion, measuring wall time and peak memory. Rejects on a non-zero exit. */
export async function measure(cmd: string, args: string[], o: { cwd?: string; env?: NodeJS.ProcessEnv; label?: string } = {}): Promise<StepMeasure> {
  const timeOut = path.join(os.tmpdir(), `bench-time-${process.pid}-${Date.now()}-${Math.random().toString(16).slice(2)}`);
  const argv = haveTime ? [TIME, '-f', '%M %U %S', '-o', timeOut, cmd, ...args] : [cmd, ...args];
  let peakTree = 0;
  let peakHwm = 0;
  const t0 = performance.now();
  const child = spawn(argv[0], argv.slice(1), { cwd: o.cwd, env: o.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (b: Buffer) => { if (stdout.length < 1e6) stdout += b.toString(); });
  child.stderr.on('data', (b: Buffer) => { if (stderr.length < 1e6) stderr += b.toString(); });
  const sample = () => {
    if (child.pid === undefined) return;
    let sum = 0;
    for (const p of tree(child.pid)) {
      try {
        const s = readFileSync(`/proc/${p}/status`, 'utf8');
        // /usr/bin/time itself is tiny and not part of the tool: leave it out.
        if (haveTime && p === child.pid) continue;
        sum += kb(s, 'VmRSS');
        peakHwm = Math.max(peakHwm, kb(s, 'VmHWM'));
      } catch {
        // ended
      }
    }
    peakTree = Math.max(peakTree, sum);
  };
  const timer = setInterval(sample, 50);
  const code: number = await new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (c) => resolve(c ?? 1));
  });
  const wallMs = performance.now() - t0;
  clearInterval(timer);
  let peakProcess = peakHwm;
  let cpuS = NaN;
  if (haveTime) {
    try {
      const lines = (await fs.readFile(timeOut, 'utf8')).trim().split('\n');
      const [maxRssKb, user, sys] = lines[lines.length - 1].split(' ').map(Number);
      peakProcess = Math.max(peakProcess, maxRssKb * 1024 || 0);
      cpuS = user + sys;
    } catch {
      // no report (command not found): keep the sampled figure
    }
    await fs.rm(timeOut, { force: true });
  }
  if (code !== 0) {
    throw new Error(`${o.label ?? cmd} failed (exit ${code}): ${cmd} ${args.join(' ')}\n${stderr.slice(-2000)}${stdout.slice(-1000)}`);
  }
  return { wallMs, peakRss: Math.max(peakProcess, peakTree), peakProcess, peakTree, cpuS, stdout, stderr, code };
}

/** Bytes of every file under a directory (apparent sizes, as a backup target would bill them). */
export async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  const walk = async (d: string) => {
    let ents;
    try {
      ents = await fs.readdir(d, { withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const e of ents) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) total += (await fs.stat(p)).size;
    }
  };
  await walk(dir);
  return total;
}
