// `memvault restore --target-option`: restoring a database component into a
// live server from the CLI (here Redis, started on loopback).
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { createClient } from 'redis';
import { startRedis, type RedisHandle } from '../helpers/redis.ts';
import { makeFixture } from '../helpers/fixture.ts';
import { cli } from '../helpers/cli.ts';
import { parseTargetOptions } from '../../functions/core/restore.ts';
import { UsageError } from '../../functions/core/errors.ts';

describe('restore --target-option', () => {
  let source: RedisHandle;
  let fresh: RedisHandle;
  beforeAll(async () => { [source, fresh] = await Promise.all([startRedis(), startRedis()]); });
  afterAll(async () => { await Promise.all([source?.stop(), fresh?.stop()]); });

  it('restores a redis component into another server named on the command line', async () => {
    const c = createClient({ url: source.url });
    await c.connect();
    await c.set('session:1', 'working memory');
    await c.hSet('agent:7', { goal: 'recall', step: '3' });
    await c.rPush('queue', ['a', 'b', 'c']);
    await c.set('ephemeral', 'x', { PX: 3_600_000 });
    await c.quit();
    const f = await makeFixture({ 'working-memory': { kind: 'redis', url: source.url } });
    expect((await cli(['backup', '--config', f.cfgFile, '--type', 'full'])).code).toBe(0);

    const r = await cli(['restore', '--config', f.cfgFile, '--latest', '--target', `${f.dir}/restore`,
      '--target-option', `working-memory:url=${fresh.url}`, '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).components[0].location).toContain(String(fresh.port));

    const d = createClient({ url: fresh.url });
    await d.connect();
    expect(await d.get('session:1')).toBe('working memory');
    expect(await d.hGetAll('agent:7')).toEqual({ goal: 'recall', step: '3' });
    expect(await d.lRange('queue', 0, -1)).toEqual(['a', 'b', 'c']);
    const ttl = await d.pTTL('ephemeral');
    expect(ttl).toBeGreaterThan(3_500_000);
    await d.quit();
  });

  it('parses options per component or for all, with JSON values, and rejects bad ones by name', () => {
    expect(parseTargetOptions(['db:url=postgres://h/x', 'force=true', 'db:port=5433'], ['db', 'cache'])).toEqual({
      db: { url: 'postgres://h/x', force: true, port: 5433 },
      cache: { force: true },
    });
    expect(() => parseTargetOptions(['nope:url=x'], ['db'])).toThrow(/"nope" is not restored here; restored components: db/);
    expect(() => parseTargetOptions(['url'], ['db'])).toThrow(UsageError);
  });
});
