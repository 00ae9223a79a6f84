// Source trees for the fault suite: generated from a seed (several hundred
// files of mixed sizes, some identical, one of 3 MiB that spans several
// chunks, nested directories, empty files, symlinks, a few modes),
// changed between backups, and compared after restores: a snapshot records
// what a backup of the tree must give back (type, bytes as SHA-256, mode,
// link target).
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { SeededRandom } from './seeded-random.ts';

export interface SnapEntry {
  type: 'file' | 'dir' | 'symlink';
  size?: number;
  sha256?: string;
  mode?: number;
  target?: string;
}

/** Path (relative, '/'-separated) -> what is there. */
export type TreeSnapshot = Map<string, SnapEntry>;

const WORDS = ['memory', 'episode', 'concept', 'recall', 'agent', 'vector', 'graph', 'weight', 'token', 'context', 'session', 'fact'];

function text(rng: SeededRandom, n: number): Buffer {
  const parts: string[] = [];
  let len = 0;
  while (len < n) {
    const w = rng.pick(WORDS);
    parts.push(w);
    len += w.length + 1;
  }
  return Buffer.from(parts.join(' ').slice(0, n));
}

/** Small files: most under 2 KiB, some up to 12 KiB, a few up to 96 KiB; half text, half random. */
function smallContent(rng: SeededRandom): Buffer {
  const r = rng.next();
  const n = r < 0.05 ? 0 : r < 0.8 ? rng.int(1, 2 * 1024) : r < 0.97 ? rng.int(2 * 1024, 12 * 1024) : rng.int(12 * 1024, 96 * 1024);
  return rng.next() < 0.5 ? text(rng, n) : rng.bytes(n);
}

const DIRS = ['', 'graph', 'graph/nodes', 'graph/edges', 'sessions', 'sessions/2026', 'sessions/2026/01', 'config', 'logs', 'weights'];

/**
 * Writes a tree of `files` small files plus the large ones under `root` (about 4.5 MiB in all
 * with the defaults) and returns its snapshot.
 */
export async function generateTree(root: string, rng: SeededRandom, o: { files?: number } = {}): Promise<TreeSnapshot> {
  const n = o.files ?? 300;
  for (const d of DIRS) await fs.mkdir(path.join(root, d), { recursive: true });
  await fs.mkdir(path.join(root, 'empty-dir'), { recursive: true });
  const written: string[] = [];
  for (let i = 0; i < n; i++) {
    const rel = path.posix.join(rng.pick(DIRS), `f${String(i).padStart(4, '0')}${rng.pick(['.json', '.txt', '.bin', ''])}`);
    await fs.writeFile(path.join(root, rel), smallContent(rng), { mode: rng.pick([0o644, 0o644, 0o600, 0o755]) });
    written.push(rel);
  }
  // Identical files: the same content under several names (deduplicated to the same chunks).
  for (let i = 0; i < 12; i++) {
    const src = rng.pick(written);
    await fs.copyFile(path.join(root, src), path.join(root, 'graph', `dup${i}-${path.posix.basename(src)}`));
  }
  // Large files: 3 MiB of random bytes spans several chunks on any vault (the chunker's
  // average is 1 MiB, so 3 MiB holds no cut with odds of about 1 in 3,000); 700 KiB of text
  // compresses.
  await fs.writeFile(path.join(root, 'weights', 'layer0.bin'), rng.bytes(3 * 1024 * 1024));
  await fs.writeFile(path.join(root, 'logs', 'agent.log'), text(rng, 700 * 1024));
  await fs.symlink('../weights/layer0.bin', path.join(root, 'config', 'current-weights'));
  await fs.symlink('missing-target', path.join(root, 'config', 'dangling'));
  return snapshotTree(root);
}

/**
 * Changes a tree as an agent would between backups: rewrites some files, adds and deletes a
 * few, changes 64 KiB in the middle of the large random file. Returns the new snapshot.
 */
export async function mutateTree(root: string, rng: SeededRandom, o: { fraction?: number } = {}): Promise<TreeSnapshot> {
  const before = await snapshotTree(root);
  const files = [...before].filter(([p, e]) => e.type === 'file' && !p.startsWith('weights/') && !p.startsWith('logs/')).map(([p]) => p);
  const fraction = o.fraction ?? 0.2;
  for (const p of files) {
    const r = rng.next();
    if (r < fraction) await fs.writeFile(path.join(root, p), smallContent(rng));
    else if (r < fraction + 0.015) await fs.rm(path.join(root, p));
  }
  const stamp = rng.nextU32().toString(16);
  for (let i = 0; i < 10; i++) await fs.writeFile(path.join(root, rng.pick(DIRS), `new-${stamp}-${i}.json`), smallContent(rng));
  const big = path.join(root, 'weights', 'layer0.bin');
  const fh = await fs.open(big, 'r+');
  try {
    const { size } = await fh.stat();
    await fh.write(rng.bytes(64 * 1024), 0, 64 * 1024, rng.int(0, size - 64 * 1024));
  } finally {
    await fh.close();
  }
  return snapshotTree(root);
}

async function sha256(p: string): Promise<string> {
  return createHash('sha256').update(await fs.readFile(p)).digest('hex');
}

/** What is under `root`, recursively (symlinks not followed). */
export async function snapshotTree(root: string): Promise<TreeSnapshot> {
  const out: TreeSnapshot = new Map();
  const walk = async (rel: string) => {
    for (const name of (await fs.readdir(path.join(root, rel))).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const abs = path.join(root, r);
      const st = await fs.lstat(abs);
      if (st.isDirectory()) {
        out.set(r, { type: 'dir' });
        await walk(r);
      } else if (st.isSymbolicLink()) {
        out.set(r, { type: 'symlink', target: await fs.readlink(abs) });
      } else if (st.isFile()) {
        out.set(r, { type: 'file', size: st.size, sha256: await sha256(abs), mode: st.mode & 0o7777 });
      }
    }
  };
  await walk('');
  return out;
}

/** Differences between a restored tree and the snapshot it must equal (empty: identical). */
export async function compareTree(root: string, expected: TreeSnapshot): Promise<string[]> {
  const actual = await snapshotTree(root);
  const problems: string[] = [];
  for (const [p, e] of expected) {
    const a = actual.get(p);
    if (!a) { problems.push(`${p}: missing`); continue; }
    if (a.type !== e.type) { problems.push(`${p}: ${a.type}, expected ${e.type}`); continue; }
    if (e.type === 'file' && a.sha256 !== e.sha256) problems.push(`${p}: bytes differ (${a.size} bytes, expected ${e.size})`);
    if (e.type === 'file' && a.mode !== e.mode) problems.push(`${p}: mode ${a.mode?.toString(8)}, expected ${e.mode?.toString(8)}`);
    if (e.type === 'symlink' && a.target !== e.target) problems.push(`${p}: link to ${a.target}, expected ${e.target}`);
  }
  for (const p of actual.keys()) if (!expected.has(p)) problems.push(`${p}: not in the backup`);
  return problems;
}

/**
 * After a failed restore: files that are there but wrong (bytes differ from the backup, or
 * not in the backup at all, e.g. a partial file left behind). Missing files are allowed.
 */
export async function wrongFiles(root: string, expected: TreeSnapshot): Promise<string[]> {
  const exists = await fs.stat(root).then(() => true, () => false);
  if (!exists) return [];
  const actual = await snapshotTree(root);
  const problems: string[] = [];
  for (const [p, a] of actual) {
    if (a.type !== 'file') continue;
    const e = expected.get(p);
    if (!e || e.type !== 'file') problems.push(`${p}: not in the backup (${a.size} bytes)`);
    else if (a.sha256 !== e.sha256) problems.push(`${p}: bytes differ from the backup`);
  }
  return problems;
}

/** Total bytes of the files in a snapshot. */
export function snapshotBytes(s: TreeSnapshot): number {
  let n = 0;
  for (const e of s.values()) if (e.type === 'file') n += e.size ?? 0;
  return n;
}
