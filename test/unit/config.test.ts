import { describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { parseConfig, loadConfigFile, locateConfig } from '../../functions/core/config.ts';
import { kindSchemas } from '../../functions/components/registry.ts';
import { ConfigError } from '../../functions/core/errors.ts';
import { toEventBridgeCron } from '../../functions/core/cron.ts';
import { tempDir } from '../helpers/fixture.ts';

const valid = {
  vault: { primary: 'file://vault', secondary: { url: 's3://dr-bucket/vault', region: 'us-west-2' } },
  encryption: { key: 'memvault.key' },
  components: {
    'memory-db': { kind: 'sqlite', path: 'memory.db', critical: true, schedule: '0 2 * * *', retention: { days: 30 } },
    weights: { kind: 'files', path: 'weights', schedule: '0 3 * * 0', retention: { days: 180, keepWeekly: 26 } },
  },
};

function problems(raw: unknown): string[] {
  try {
    parseConfig(raw, kindSchemas, '/');
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}

describe('memvault.yaml validation', () => {
  it('accepts a valid config and fills defaults', () => {
    const cfg = parseConfig(valid, kindSchemas, '/srv');
    expect(cfg.components['memory-db'].critical).toBe(true);
    expect(cfg.components.weights.critical).toBe(false);
    expect(cfg.components.weights.timezone).toBe('UTC');
    expect(cfg.alerts).toEqual([{ type: 'stdout' }]);
    expect(cfg.vault.primary.url).toBe('file://vault');
  });

  it('names the path of every problem at once', () => {
    const bad = structuredClone(valid) as any;
    bad.components['memory-db'].retention.days = -3;
    bad.components.weights.schedule = 'every day';
    bad.components.weights.kind = 'floppy';
    bad.vault.primary = 'ftp://x';
    const p = problems(bad);
    expect(p).toContain('components.memory-db.retention.days: expected a positive integer, got -3');
    expect(p.some((x) => x.startsWith('components.weights.kind: unknown kind "floppy"') && x.includes('files') && x.includes('sqlite'))).toBe(true);
    expect(p.some((x) => x.startsWith('vault.primary') && x.includes('ftp://x'))).toBe(true);
  });

  it('rejects unknown fields, bad cron, missing kind settings', () => {
    const bad = structuredClone(valid) as any;
    bad.components['memory-db'].pth = 'x';
    delete bad.components['memory-db'].path;
    bad.components.weights.schedule = '61 * * * *';
    const p = problems(bad);
    expect(p.some((x) => x.startsWith('components.memory-db') && x.includes('pth'))).toBe(true);
    expect(p.some((x) => x.startsWith('components.memory-db.path'))).toBe(true);
    expect(p.some((x) => x.startsWith('components.weights.schedule'))).toBe(true);
  });

  it('requires an encryption key and at least one component', () => {
    const p = problems({ vault: { primary: 'file://v' }, encryption: {}, components: {} });
    expect(p.some((x) => x.startsWith('encryption'))).toBe(true);
    expect(p.some((x) => x.startsWith('components'))).toBe(true);
  });

  it('reports invalid YAML and a missing file clearly', async () => {
    const dir = await tempDir();
    const f = path.join(dir, 'memvault.yaml');
    await fs.writeFile(f, 'vault: [unclosed');
    expect(() => loadConfigFile(f, kindSchemas)).toThrow(/invalid YAML/);
    expect(() => locateConfig(path.join(dir, 'nope.yaml'))).toThrow(/config file not found/);
    expect(locateConfig(undefined, { MEMVAULT_CONFIG: f }, '/')).toBe(f);
    expect(locateConfig(undefined, {}, dir)).toBe(f);
  });

  it('turns cron into EventBridge Scheduler expressions', () => {
    expect(toEventBridgeCron('0 2 * * *')).toBe('cron(0 2 * * ? *)');
    expect(toEventBridgeCron('0 3 * * 0')).toBe('cron(0 3 ? * SUN *)');
    expect(toEventBridgeCron('30 1 * * 1-5')).toBe('cron(30 1 ? * MON-FRI *)');
  });
});
