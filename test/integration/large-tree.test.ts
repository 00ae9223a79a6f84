// A tree with more files than the call stack has room for arguments (issue 11: the
// 200,000-file backup crashed with "Maximum call stack size exceeded" after 190,020
// chunks, where the walk's entries were spread into one push). The CLI runs with a
// tenth of V8's default stack (--stack-size=100: about 15,000 spread arguments fit),
// so a tree of 24,000 files reaches the same limit in seconds instead of minutes.
import { describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { cli } from '../helpers/cli.ts';
import { makeFixture } from '../helpers/fixture.ts';

const FILES = 24_000;
const STACK = ['--stack-size=100'];

/** FILES small files in 100 directories; content names the file, so a swapped file shows. */
async function bigTree(root: string): Promise<void> {
  for (let d = 0; d < 100; d++) {
    const dir = path.join(root, `shard-${d}`);
    await fs.mkdir(dir, { recursive: true });
    const writes: Promise<void>[] = [];
    for (let i = 0; i < FILES / 100; i++) writes.push(fs.writeFile(path.join(dir, `m-${i}.json`), `{"shard":${d},"memory":${i}}\n`));
    await Promise.all(writes);
  }
}

describe('a tree larger than the call stack', () => {
  it('backs up (full and incremental) and restores 24,000 files with a tenth of the default stack', async () => {
    const f = await makeFixture({ notes: { kind: 'files', path: 'src' } }, { secondary: false });
    await bigTree(path.join(f.dir, 'src'));
    const b = await cli(['backup', '--config', f.cfgFile, '--type', 'full'], { nodeArgs: STACK });
    expect(b.code, b.stdout + b.stderr).toBe(0);
    // An incremental run carries 24,000 unchanged entries over from the parent manifest.
    await fs.writeFile(path.join(f.dir, 'src', 'shard-7', 'm-7.json'), '{"changed":true}\n');
    const i = await cli(['backup', '--config', f.cfgFile, '--type', 'incremental'], { nodeArgs: STACK });
    expect(i.code, i.stdout + i.stderr).toBe(0);
    const out = path.join(f.dir, 'restored');
    const r = await cli(['restore', '--latest', '--config', f.cfgFile, '--component', 'notes', '--target', out], { nodeArgs: STACK });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const tree = path.join(out, 'notes');
    let n = 0;
    for (let d = 0; d < 100; d++) {
      const names = await fs.readdir(path.join(tree, `shard-${d}`));
      n += names.length;
    }
    expect(n).toBe(FILES);
    expect(await fs.readFile(path.join(tree, 'shard-7', 'm-7.json'), 'utf8')).toBe('{"changed":true}\n');
    expect(await fs.readFile(path.join(tree, 'shard-99', `m-${FILES / 100 - 1}.json`), 'utf8')).toBe(`{"shard":99,"memory":${FILES / 100 - 1}}\n`);
  }, 300_000);
});
