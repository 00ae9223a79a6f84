// The README's first command, end to end on small data: the demo drill's proofs must hold.
import { describe, expect, it } from 'vitest';
import path from 'node:path';
import { promises as fs } from 'node:fs';
import { tempDir } from '../helpers/fixture.ts';
import { cli } from '../helpers/cli.ts';

describe('demo drill', () => {
  it('runs every step and proves the restores', { timeout: 240_000 }, async () => {
    const dir = path.join(await tempDir(), 'demo');
    const r = await cli(['demo', '--dir', dir, '--weights-mb', '8', '--json'], { cwd: path.dirname(dir) });
    expect(r.stderr).not.toMatch(/Error/);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.ok).toBe(true);
    const steps = out.steps.map((s: { step: string }) => s.step).join('\n');
    expect(steps).toMatch(/full backup/);
    expect(steps).toMatch(/incremental backup/);
    expect(steps).toMatch(/restore latest from DR vault/);
    expect(steps).toMatch(/restore at /);
    const inc = out.steps.find((s: { step: string }) => s.step === 'incremental backup');
    const full = out.steps.find((s: { step: string }) => s.step === 'full backup');
    expect(inc.newBytes).toBeLessThan(full.newBytes / 2);
    expect((await fs.readdir(path.join(dir, 'restore-latest'))).sort()).toEqual(['concept-graph', 'config', 'logs', 'memory-db', 'model-weights']);
  });
});
