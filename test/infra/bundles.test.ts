// What each Lambda bundle contains, bundled for real by the app's
// NodejsFunction (local esbuild, the deploy's options) with esbuild's
// metafile: a function carries the driver libraries (pg, redis, mongodb) only
// of kinds it can run, so send-alert and the planners carry none. Before this
// every bundle held every driver: 2,311,230 bytes for send-alert.
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { App, Stack } from 'aws-cdk-lib';
import { HandlerFunctions } from '../../infra/constructs/handler-functions.ts';
import { kindsRunBy } from '../../infra/function-groups.ts';
import { ALL_DRIVER_LIBRARIES, DRIVER_LIBRARIES, drivers, driverLibraries } from '../../functions/components/registry.ts';
import { ROOT } from './helpers.ts';

const COMPONENTS = path.join(ROOT, 'functions', 'components');

/** The bare packages a module itself loads with import() (AWS SDK and node: builtins aside). */
function dynamicLibraries(file: string): Set<string> {
  const out = new Set<string>();
  for (const m of readFileSync(file, 'utf8').matchAll(/\bimport\(\s*'([^'.][^']*)'\s*\)/g)) {
    if (!m[1].startsWith('@aws-sdk/') && !m[1].startsWith('node:')) out.add(m[1]);
  }
  return out;
}

describe('driver libraries', () => {
  it('DRIVER_LIBRARIES names every package a driver loads with import(), for its kind', () => {
    const all = new Set<string>();
    for (const kind of Object.keys(drivers)) {
      const own = dynamicLibraries(path.join(COMPONENTS, `${kind}.ts`));
      for (const l of own) all.add(l);
      for (const l of own) expect(DRIVER_LIBRARIES[kind] ?? [], `${kind} loads ${l}`).toContain(l);
    }
    for (const f of readdirSync(COMPONENTS).filter((x) => x.endsWith('.ts'))) for (const l of dynamicLibraries(path.join(COMPONENTS, f))) all.add(l);
    expect([...all].sort()).toEqual([...ALL_DRIVER_LIBRARIES]);
    // vector connects through postgres.ts's connectPg (pg); redis only borrows vector.ts's byte readers, never pg.
    expect(readFileSync(path.join(COMPONENTS, 'vector.ts'), 'utf8')).toMatch(/connectPg[\s\S]*from '\.\/postgres\.ts'/);
    expect(DRIVER_LIBRARIES.vector).toEqual(['pg']);
  });

  it('only the handlers that run a driver\'s data path get libraries, and only those of the configured kinds', () => {
    expect(driverLibraries(kindsRunBy('send-alert', ['postgres', 'redis', 'mongodb']))).toEqual([]);
    expect(driverLibraries(kindsRunBy('plan-backup', ['postgres']))).toEqual([]);
    expect(driverLibraries(kindsRunBy('export-stream', ['postgres', 's3-prefix']))).toEqual(['pg']);
    expect(driverLibraries(kindsRunBy('restore-component', ['vector', 'redis', 'rds-snapshot']))).toEqual(['pg', 'redis']);
  });
});

describe('bundles of the app\'s NodejsFunction (real esbuild)', () => {
  const out = mkdtempSync(path.join(os.tmpdir(), 'memvault-bundles-'));
  const handlers = ['send-alert', 'plan-backup', 'export-stream'];
  const bundles = new Map<string, { bytes: number; packages: Set<string>; text: string }>();

  beforeAll(() => {
    const app = new App({ outdir: out, context: { 'aws:cdk:enable-asset-metadata': true } });
    const stack = new Stack(app, 'Bundles', { env: { account: '111111111111', region: 'eu-west-1' } });
    // A config whose only database kind is postgres: export-stream needs pg, nothing needs redis or mongodb.
    const configKinds = ['postgres', 's3-prefix', 'rds-snapshot'];
    const fns = new HandlerFunctions(stack, 'Handlers', {
      handlersDir: path.join(ROOT, 'functions', 'handlers'),
      handlers,
      environment: {},
      sizing: () => ({ memoryMb: 256, timeoutSeconds: 60, ephemeralStorageMb: 512 }),
      driverLibraries: (h) => driverLibraries(kindsRunBy(h, configKinds)),
      metafile: true,
    });
    app.synth();
    for (const h of handlers) {
      const asset = (fns.fn(h).node.defaultChild as any).getMetadata('aws:asset:path') as string;
      if (!asset) throw new Error(`${h}: no aws:asset:path metadata`);
      const dir = path.join(out, asset);
      const meta = JSON.parse(readFileSync(path.join(dir, 'index.meta.json'), 'utf8'));
      const packages = new Set<string>(Object.keys(meta.inputs).map((i: string) => /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(i)?.[1]).filter((p): p is string => !!p));
      bundles.set(h, { bytes: statSync(path.join(dir, 'index.mjs')).size, packages, text: readFileSync(path.join(dir, 'index.mjs'), 'utf8') });
    }
    // The measurement, for the record.
    process.stdout.write(`bundle sizes: ${handlers.map((h) => `${h} ${bundles.get(h)!.bytes} B`).join(', ')} (before: every bundle about 2,311,000 B)\n`);
  }, 240_000);
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  const driverCode = ['pg', 'pg-protocol', 'pg-pool', 'mongodb', 'bson', 'redis', '@redis/client'];

  // The size bound catches a library slipping in (each is hundreds of KB); the drivers' own code
  // (~150 KB with the postgres schema rebuild) comes in with their config schemas, which every
  // handler parses.
  it('send-alert and plan-backup bundle no driver library and are under 45% of the old size', () => {
    for (const h of ['send-alert', 'plan-backup']) {
      const b = bundles.get(h)!;
      expect(driverCode.filter((p) => b.packages.has(p)), h).toEqual([]);
      expect(b.bytes, h).toBeLessThan(1_040_000);
    }
  });

  it('no bundle carries the Azure SDK (deployed vaults are s3://) or loads it at start-up', () => {
    for (const [h, b] of bundles) {
      expect([...b.packages].filter((p) => p.startsWith('@azure/')), h).toEqual([]);
      // An external reached through a static import would be a top-level import of the bundle:
      // the function would fail at start-up where the package is absent (Lambda). Only import() may name it.
      expect(b.text.match(/(?:from\s*|import\s*)["'](?:@azure\/|pg["']|redis["']|mongodb["'])[^"']*["']/g) ?? [], h).toEqual([]);
      expect(b.text).toMatch(/import\(\s*["']@azure\/storage-blob["']\s*\)/);
    }
  });

  it('export-stream bundles pg for the postgres component and neither redis nor mongodb', () => {
    const b = bundles.get('export-stream')!;
    expect(b.packages.has('pg')).toBe(true);
    for (const p of ['mongodb', 'bson', 'redis', '@redis/client']) expect(b.packages.has(p), p).toBe(false);
  });

  it('leaves every other driver library out as an external its code never reaches', () => {
    expect(ALL_DRIVER_LIBRARIES).toEqual(['mongodb', 'pg', 'redis']);
  });
});
