// `cdk synth` of the real two-region app, as CI runs it: offline, fake account,
// the CDK CLI, esbuild bundling of every handler (no Docker), cdk-nag on. Then
// the synthesized state machines must reference every handler they need, each
// bundled into an asset. Slow (about 90 s on 2 cores): one synth for the file.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, existsSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { placeholdersOf } from '../../infra/asl.ts';
import { STATE_MACHINES } from '../../infra/deploy-config.ts';
import { ROOT } from './helpers.ts';

const run = promisify(execFile);

describe('npx cdk synth (offline, bundled)', () => {
  const out = mkdtempSync(path.join(os.tmpdir(), 'memvault-synth-'));
  let stdout = '';
  beforeAll(async () => {
    const env = { ...process.env, CDK_DISABLE_CLI_TELEMETRY: 'true', AWS_EC2_METADATA_DISABLED: 'true', AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: '', AWS_PROFILE: '' };
    const r = await run('npx', ['cdk', 'synth', '--quiet', '--no-notices', '--no-version-reporting', '-c', 'config=infra/memvault.example.yaml', '-o', out], { cwd: ROOT, env, maxBuffer: 64 * 1024 * 1024 });
    stdout = r.stdout;
  }, 300_000);
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it('writes both stacks and the deployed config', () => {
    // With CI=true the CLI reports on stdout ("Successfully synthesized ..."); nothing may be a warning or error.
    expect(stdout).not.toMatch(/\b(error|warning)\b/i);
    for (const f of ['Memvault-Primary.template.json', 'Memvault-Dr.template.json', 'memvault.deployed.json']) expect(existsSync(path.join(out, f)), f).toBe(true);
  });

  it('references, in every synthesized state machine, a bundled function for each handler it needs', () => {
    for (const [stack, names] of [['Memvault-Primary', STATE_MACHINES], ['Memvault-Dr', ['restore']]] as const) {
      const t = JSON.parse(readFileSync(path.join(out, `${stack}.template.json`), 'utf8'));
      const res = t.Resources as Record<string, any>;
      for (const name of names) {
        const sm = Object.values(res).find((r) => r.Type === 'AWS::StepFunctions::StateMachine' && r.Properties.StateMachineName === `memvault-${name}`);
        expect(sm, `${stack} ${name}`).toBeDefined();
        const needed = placeholdersOf(sm.Properties.DefinitionString);
        expect(needed.length).toBeGreaterThan(0);
        for (const ph of needed) {
          const ref = sm.Properties.DefinitionSubstitutions[ph];
          expect(ref, `${name}: \${${ph}}`).toEqual({ 'Fn::GetAtt': [expect.any(String), 'Arn'] });
          const fn = res[ref['Fn::GetAtt'][0]];
          expect(fn.Type).toBe('AWS::Lambda::Function');
          expect(fn.Properties).toMatchObject({ Runtime: 'nodejs24.x', Architectures: ['arm64'], Handler: 'index.handler', Code: { S3Key: expect.stringMatching(/\.zip$/) } });
          const asset = fn.Metadata['aws:asset:path'] as string;
          expect(existsSync(path.join(out, asset, 'index.mjs')), `${name}: ${asset}/index.mjs`).toBe(true);
        }
      }
    }
  });

  it('bundles each function with only the driver libraries it can run (sizes printed)', () => {
    const t = JSON.parse(readFileSync(path.join(out, 'Memvault-Primary.template.json'), 'utf8'));
    const sizes = (Object.values(t.Resources) as any[])
      .filter((r) => r.Type === 'AWS::Lambda::Function')
      .map((r) => ({ handler: String(r.Properties.Description).replace('memvault ', ''), bytes: statSync(path.join(out, r.Metadata['aws:asset:path'], 'index.mjs')).size }))
      .sort((a, b) => a.handler.localeCompare(b.handler));
    process.stdout.write(`bundle sizes (Memvault-Primary): ${sizes.map((x) => `${x.handler} ${x.bytes}`).join(', ')}\n`);
    expect(sizes).toHaveLength(23);
    // The example config has no pg / redis / mongodb component: no function needs a driver library (each was 2.3 MB with all of them).
    // merge-partitions also carries the backup writer (it writes a large backup's entries in parts).
    for (const x of sizes) expect(x.bytes, x.handler).toBeLessThan(1_100_000);
  });
});
