// No database password in a restore's log lines, output or error: a restore
// request whose target URL carries a password is refused by
// validate-restore-input (and by plan-restore, should it get one), with the
// URL shown redacted, and nothing the handlers write (JSON log lines on their
// real logger, the state output, the error that becomes the execution's
// Cause) contains the password. The target's secretArn is the way to name
// credentials, and passes through to the plan.
import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import { defaultDeps } from '../../functions/handlers/deps.ts';
import { makeHandler as makeValidateRestoreInput } from '../../functions/handlers/validate-restore-input.ts';
import { makeHandler as makePlanRestore } from '../../functions/handlers/plan-restore.ts';
import { UsageError } from '../../functions/core/errors.ts';
import { jsonLogger } from '../../functions/logger.ts';
import { makeFixture, type Fixture } from '../helpers/fixture.ts';

const PASSWORD = 'Tr0ub4dor-and-3';
const SECRET = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:memvault-restore-targets-AbCdEf';

describe('restore requests and credentials', () => {
  let f: Fixture | undefined;
  afterEach(async () => {
    if (f) await fs.rm(f.dir, { recursive: true, force: true });
    f = undefined;
  });

  async function setup(extra?: Record<string, unknown>) {
    f = await makeFixture({ 'memory-db': { kind: 'postgres', url: 'postgres://memvault@db.example/memory' } }, extra ? { extra } : {});
    const out = new PassThrough();
    const lines: string[] = [];
    out.on('data', (b) => lines.push(String(b)));
    const deps = defaultDeps(f.cfg, { log: jsonLogger({ service: 'memvault' }, 'info', out) });
    return { deps, lines };
  }

  it('validate-restore-input refuses a target URL with a password, naming the field, and neither logs nor returns it', async () => {
    const { deps, lines } = await setup();
    const handler = makeValidateRestoreInput(deps);
    const input = { mode: 'latest', components: ['memory-db'], target: { options: { 'memory-db': { url: `postgres://admin:${PASSWORD}@db.example:5432/memory_restored`, force: true } } } };
    const err = await handler({ input, executionId: 'exec-1' }).catch((e) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toContain('restore input: target.options.memory-db.url: postgres://admin:***@db.example:5432/memory_restored carries a password');
    expect(err.message).toContain('secretArn');
    // What Step Functions records of a failed task: the error's name, message and stack.
    expect(JSON.stringify({ errorType: err.name, errorMessage: err.message, trace: String(err.stack).split('\n') })).not.toContain(PASSWORD);
    expect(lines.join('')).not.toContain(PASSWORD);
  });

  it('plan-restore refuses it too, before reading the vault', async () => {
    const { deps, lines } = await setup();
    const plan = makePlanRestore(deps);
    const request = {
      mode: 'latest', backupId: null, at: null, components: ['memory-db'], from: 'primary', target: {
        dir: null, inPlace: false, force: false, outsideSandbox: false,
        options: { 'memory-db': { url: `redis://:${PASSWORD}@cache.example:6379` } },
      },
    };
    const err = await plan({ request, executionName: 'exec-1' }).catch((e) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toContain('target.options.memory-db.url: redis://:***@cache.example:6379 carries a password');
    expect(err.message).not.toContain(PASSWORD);
    expect(lines.join('')).not.toContain(PASSWORD);
  });

  it('accepts a target named by its secretArn and passes it on unchanged', async () => {
    const { deps, lines } = await setup();
    const handler = makeValidateRestoreInput(deps);
    const out = await handler({ input: { mode: 'latest', components: ['memory-db'], target: { options: { 'memory-db': { url: 'postgres://db.example/memory_restored', secretArn: SECRET } } } }, executionId: 'exec-2' });
    expect(out.target.options).toEqual({ 'memory-db': { url: 'postgres://db.example/memory_restored', secretArn: SECRET } });
    expect(lines.map((l) => JSON.parse(l).msg)).toContain('restore requested');
  });

  it('deployed: refuses a target secret the restore functions were not granted, before restoring anything', async () => {
    const aws = { account: '123456789012', region: 'eu-west-1', drRegion: 'eu-central-1', databaseSecrets: { restoreTargets: [SECRET.replace(/-AbCdEf$/, '')] } };
    const { deps } = await setup({ aws });
    const handler = makeValidateRestoreInput(deps);
    const request = (arn: string) => ({ input: { mode: 'latest', target: { options: { 'memory-db': { secretArn: arn } } } } });
    // Granted by its partial ARN (the grant adds the 6-character suffix wildcard).
    await expect(handler(request(SECRET))).resolves.toMatchObject({ target: { options: { 'memory-db': { secretArn: SECRET } } } });
    const other = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:someone-elses-db-XyZ123';
    await expect(handler(request(other))).rejects.toThrow(`restore input: target.options.memory-db.secretArn: the restore functions may not read ${other}; add it to aws.databaseSecrets.restoreTargets and deploy again`);
  });
});
