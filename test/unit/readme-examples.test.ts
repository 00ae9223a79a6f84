// The configurations README.md shows are the files in examples/, verbatim,
// and they validate.
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { loadConfigFile } from '../../functions/core/config.ts';
import { kindSchemas, drivers } from '../../functions/components/registry.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');

describe('README platform presets', () => {
  for (const [file, kinds] of [
    ['examples/single-node.yaml', ['files', 'sqlite']],
    ['examples/cloud.yaml', ['rds-snapshot', 'postgres', 'mongodb', 'redis', 'vector', 's3-prefix', 'ssm-config']],
    ['examples/components.yaml', Object.keys(drivers)],
  ] as [string, string[]][]) {
    it(`${file} validates, covers its stores, and is quoted in README.md`, () => {
      const cfg = loadConfigFile(path.join(ROOT, file), kindSchemas);
      expect(new Set(Object.values(cfg.components).map((c) => c.kind))).toEqual(new Set(kinds));
      for (const c of Object.values(cfg.components)) expect(c.schedule).toBeTruthy();
      expect(readme).toContain(readFileSync(path.join(ROOT, file), 'utf8').trim());
    });
  }

  it('the runbook retention: database 30 days, memory tiers 14, config 90, weights weekly 180, logs 90', () => {
    const cfg = loadConfigFile(path.join(ROOT, 'examples/single-node.yaml'), kindSchemas);
    expect(cfg.components['memory-db'].retention.days).toBe(30);
    expect(cfg.components['concept-graph'].retention.days).toBe(14);
    expect(cfg.components.config.retention.days).toBe(90);
    expect(cfg.components['model-weights'].retention.days).toBe(180);
    expect(cfg.components['model-weights'].schedule).toBe('0 3 * * 0');
    expect(cfg.components.logs.retention.days).toBe(90);
  });
});
