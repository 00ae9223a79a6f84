// The tools under comparison, each driven as child processes the way an
// operator would run it, with its store on local disk:
//   memvault  the real CLI (cli/memvault.mjs on this Node), one `files`
//             component over the whole tree, file:// vault, local key file
//   restic    Debian's restic: repository format 2 (compression auto), --no-cache
//   tar       the classic runbook: GNU tar + gzip (-z, level 6) into a backup
//             directory; incremental = --listed-incremental (level 1 against
//             a copy of the level-0 snapshot file)
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { measure, type StepMeasure } from './measure.ts';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export interface RunDirs {
  /** Scratch directory of this tool's run. */
  work: string;
  /** The data being backed up (a private copy of the dataset). */
  live: string;
  /** Where the tool keeps its backups (vault / repository / backup directory). */
  store: string;
  /** Empty directory to restore into. */
  restore: string;
}

export interface Tool {
  name: string;
  /** One line for the report: version and settings. */
  describe(): Promise<string>;
  init(d: RunDirs): Promise<void>;
  full(d: RunDirs): Promise<StepMeasure>;
  incremental(d: RunDirs): Promise<StepMeasure>;
  /** Restores the latest backup into d.restore; returns the directory holding the restored tree. */
  restore(d: RunDirs): Promise<{ m: StepMeasure; root: string }>;
}

async function version(cmd: string, args: string[]): Promise<string> {
  try {
    const m = await measure(cmd, args);
    return (m.stdout || m.stderr).split('\n')[0].trim();
  } catch {
    return `${cmd}: not found`;
  }
}

const memvault: Tool = {
  name: 'memvault',
  async describe() {
    const pkg = JSON.parse(await fs.readFile(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
    return `memvault ${pkg.version} (CLI cli/memvault.mjs on Node ${process.versions.node}; files component, file:// vault, local key)`;
  },
  async init(d) {
    const cfg = [
      `vault:`,
      `  primary: ${JSON.stringify(`file://${d.store}`)}`,
      `encryption:`,
      `  key: ${JSON.stringify(path.join(d.work, 'memvault.key'))}`,
      `alerts:`,
      `  - type: stdout`,
      `components:`,
      `  platform:`,
      `    kind: files`,
      `    path: ${JSON.stringify(d.live)}`,
      '',
    ].join('\n');
    await fs.writeFile(path.join(d.work, 'memvault.yaml'), cfg);
    await mv(d, ['init']);
  },
  full: (d) => mv(d, ['backup', '--type', 'full']),
  incremental: (d) => mv(d, ['backup', '--type', 'incremental']),
  async restore(d) {
    const m = await mv(d, ['restore', '--latest', '--target', d.restore]);
    return { m, root: path.join(d.restore, 'platform') };
  },
};

function mv(d: RunDirs, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<StepMeasure> {
  return measure(process.execPath, [path.join(REPO_ROOT, 'cli', 'memvault.mjs'), ...args, '--config', path.join(d.work, 'memvault.yaml'), '--json'], {
    cwd: d.work, label: `memvault ${args[0]}`, env,
  });
}

/**
 * memvault with everything on the main thread (MEMVAULT_WORKERS=0): what one
 * core, or a Lambda bundle without the worker file, gets.
 */
const MAIN_ONLY_ENV = { ...process.env, MEMVAULT_WORKERS: '0' };
const memvaultMain: Tool = {
  ...memvault,
  name: 'memvault-w0',
  async describe() {
    return `${await memvault.describe()}, MEMVAULT_WORKERS=0`;
  },
  full: (d) => mv(d, ['backup', '--type', 'full'], MAIN_ONLY_ENV),
  incremental: (d) => mv(d, ['backup', '--type', 'incremental'], MAIN_ONLY_ENV),
  async restore(d) {
    const m = await mv(d, ['restore', '--latest', '--target', d.restore], MAIN_ONLY_ENV);
    return { m, root: path.join(d.restore, 'platform') };
  },
};

const RESTIC_ENV = { ...process.env, RESTIC_PASSWORD: 'bench-password-not-secret', RESTIC_PROGRESS_FPS: '0.2' };

const restic: Tool = {
  name: 'restic',
  async describe() {
    return `${await version('restic', ['version'])} (repository v2, compression auto, --no-cache)`;
  },
  async init(d) {
    await measure('restic', ['-r', d.store, 'init', '--repository-version', '2'], { env: RESTIC_ENV, label: 'restic init' });
  },
  full: (d) => measure('restic', ['-r', d.store, '--no-cache', 'backup', '--host', 'bench', d.live], { env: RESTIC_ENV, label: 'restic backup' }),
  incremental: (d) => measure('restic', ['-r', d.store, '--no-cache', 'backup', '--host', 'bench', d.live], { env: RESTIC_ENV, label: 'restic backup' }),
  async restore(d) {
    const m = await measure('restic', ['-r', d.store, '--no-cache', 'restore', 'latest', '--target', d.restore], { env: RESTIC_ENV, label: 'restic restore' });
    // restic restores absolute paths below the target.
    return { m, root: path.join(d.restore, d.live) };
  },
};

const tar: Tool = {
  name: 'tar',
  async describe() {
    return `${await version('tar', ['--version'])} + ${await version('gzip', ['--version'])} (tar -czf, --listed-incremental)`;
  },
  async init(d) {
    await fs.mkdir(d.store, { recursive: true });
  },
  full: (d) => measure('tar', ['--listed-incremental', path.join(d.store, 'level0.snar'), '-czf', path.join(d.store, 'full.tar.gz'), '-C', d.live, '.'], { label: 'tar full' }),
  incremental: (d) => measure('sh', ['-c',
    `cp "$1/level0.snar" "$1/level1.snar" && tar --listed-incremental "$1/level1.snar" -czf "$1/incr1.tar.gz" -C "$2" .`, 'sh', d.store, d.live], { label: 'tar incremental' }),
  async restore(d) {
    const m = await measure('sh', ['-c',
      `mkdir -p "$2" && tar --listed-incremental /dev/null -xzf "$1/full.tar.gz" -C "$2" && tar --listed-incremental /dev/null -xzf "$1/incr1.tar.gz" -C "$2"`, 'sh', d.store, d.restore], { label: 'tar restore' });
    return { m, root: d.restore };
  },
};

export const TOOLS: Record<string, Tool> = { memvault, 'memvault-w0': memvaultMain, restic, tar };
