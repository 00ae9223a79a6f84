// A failure ends the run (issue 9, item 11): with chunk-pool workers, a failed
// backup printed its failure and then hung until killed. Each error path is run
// as a user runs it: the memvault CLI in a child process, with workers, under a
// deadline; it must exit 1 in bounded time with a message naming the problem.
// In-process, the workers are gone (their threads joined) after a backup that
// succeeded and after one that failed.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { promises as fs, readFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { randomBytes } from 'node:crypto';
import { makeFixture, writeTree, type Fixture } from '../helpers/fixture.ts';
import { startS3rver, type S3rverHandle } from '../helpers/s3rver.ts';
import { runBackups } from '../../functions/ops.ts';
import { silentLogger } from '../../functions/logger.ts';
import { FileAlertSink } from '../../functions/adapters/alerts/local.ts';

const LAUNCHER = path.resolve(import.meta.dirname, '../../cli/memvault.mjs');
/** A failed backup of a few MiB exits within this (it took 2 s with MEMVAULT_WORKERS=0). */
const DEADLINE_MS = 40_000;

interface Run { code: number | 'timeout'; out: string; ms: number }

/**
 * Runs the CLI in its own process group; SIGKILLs the group at the deadline. `fileSizeKiB`:
 * a file size limit (ulimit -f; Node ignores SIGXFSZ, so a larger write fails with EFBIG),
 * which stands in for a full disk unprivileged and as root.
 */
function cliWithin(args: string[], env: Record<string, string> = {}, o: { fileSizeKiB?: number } = {}): Promise<Run> {
  const t0 = Date.now();
  const argv = o.fileSizeKiB ? ['bash', '-c', `ulimit -f ${o.fileSizeKiB} && exec "$0" "$@"`, process.execPath] : [process.execPath];
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], [...argv.slice(1), LAUNCHER, ...args], {
      env: { ...process.env, MEMVAULT_LOG: 'silent', MEMVAULT_WORKERS: '2', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let out = '';
    let timedOut = false;
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    const timer = setTimeout(() => { timedOut = true; try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ } }, DEADLINE_MS);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: timedOut ? 'timeout' : code ?? -1, out, ms: Date.now() - t0 });
    });
  });
}

async function platform(f: Fixture): Promise<void> {
  await writeTree(path.join(f.dir, 'src'), {
    'weights/a.bin': randomBytes(6 * 1024 * 1024),
    'weights/b.bin': randomBytes(3 * 1024 * 1024),
    'graph/nodes.jsonl': '{"id":1,"concept":"memory"}\n'.repeat(20_000),
  });
}

/** Every pack shard directory of a file:// vault taken by a plain file: no pack can be stored. */
async function breakChunkStore(vaultDir: string): Promise<void> {
  const chunks = path.join(vaultDir, 'packs');
  await fs.mkdir(chunks, { recursive: true });
  for (let i = 0; i < 256; i++) await fs.writeFile(path.join(chunks, i.toString(16).padStart(2, '0')), '');
}

function threads(): number {
  return Number(/^Threads:\s+(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]);
}

/** Runs `fn`, sampling this process's thread count every 5 ms. */
async function sampled<T>(fn: () => Promise<T>): Promise<{ result: T; most: number }> {
  let most = 0;
  const timer = setInterval(() => { most = Math.max(most, threads()); }, 5);
  try {
    return { result: await fn(), most };
  } finally {
    clearInterval(timer);
  }
}

async function settledThreads(baseline: number): Promise<number> {
  for (let i = 0; i < 50 && threads() > baseline; i++) await new Promise((r) => setTimeout(r, 100));
  return threads();
}

afterEach(() => { delete process.env.MEMVAULT_WORKERS; });

describe('a failed backup with workers exits with the error', () => {
  it('when the vault cannot store a chunk: exit 1 naming the chunk and the vault', async () => {
    const f = await makeFixture({ data: { kind: 'files', path: 'src' } }, { secondary: false });
    await platform(f);
    await breakChunkStore(path.join(f.dir, 'vault-primary'));
    const r = await cliWithin(['backup', '--config', f.cfgFile, '--type', 'full']);
    expect(r.code, r.out).toBe(1);
    // The pack that could not be written, in the vault.
    expect(r.out).toMatch(new RegExp(`FAILED data: \\S*${path.join(f.dir, 'vault-primary').replaceAll('/', '\\/')}: cannot write packs\\/[0-9a-f]{2}\\/[0-9a-f]{32}`));
  });

  it('when the vault disk fills up mid-backup: exit 1 naming the chunk, the vault and the error', async () => {
    const f = await makeFixture({ data: { kind: 'files', path: 'src' } }, { secondary: false });
    await platform(f);
    // 600 KiB: the small chunks of the text file are stored, the weights' chunks (about 1 MiB) are not.
    const r = await cliWithin(['backup', '--config', f.cfgFile, '--type', 'full'], {}, { fileSizeKiB: 600 });
    expect(r.code, r.out).toBe(1);
    expect(r.out).toMatch(new RegExp(`FAILED data: \\S*${path.join(f.dir, 'vault-primary').replaceAll('/', '\\/')}: cannot write packs\\/[0-9a-f]{2}\\/[0-9a-f]{32}: .*EFBIG`));
  });

  it('when a worker crashes: exit 1 naming the worker failure', async () => {
    const f = await makeFixture({ data: { kind: 'files', path: 'src' } }, { secondary: false });
    await platform(f);
    // Preloaded in every thread; in the workers it throws on their first job, as a worker
    // that hits a bug would (an out-of-memory end takes the same path: 'error', then 'exit').
    const crash = path.join(f.dir, 'crash.mjs');
    await fs.writeFile(crash, [
      "import { isMainThread, parentPort } from 'node:worker_threads';",
      "if (!isMainThread && parentPort) parentPort.once('message', () => { throw new Error('injected worker crash'); });",
    ].join('\n'));
    const r = await cliWithin(['backup', '--config', f.cfgFile, '--type', 'full'],
      { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${pathToFileURL(crash).href}` });
    expect(r.code, r.out).toBe(1);
    expect(r.out).toMatch(/FAILED data: chunk worker failed: injected worker crash/);
  });

  it('when the chunker parameters are invalid: exit 1 naming them', async () => {
    const f = await makeFixture({ data: { kind: 'files', path: 'src' } }, { secondary: false });
    await platform(f);
    const doc = path.join(f.dir, 'vault-primary', 'vault.json');
    const v = JSON.parse(await fs.readFile(doc, 'utf8'));
    v.chunker = { min: 1024 * 1024, avg: 512 * 1024, max: 8 * 1024 * 1024 };
    await fs.writeFile(doc, JSON.stringify(v));
    const r = await cliWithin(['backup', '--config', f.cfgFile, '--type', 'full']);
    expect(r.code, r.out).toBe(1);
    // Refused by the workers, or (once vault.json is authenticated and bounds-checked) when the vault opens.
    expect(r.out).toMatch(/chunker|vault\.json/i);
  });

  describe('on an S3 vault', () => {
    let s3: S3rverHandle;
    let proxy: net.Server;
    let proxyPort = 0;
    let refused = false;
    const sockets = new Set<net.Socket>();

    beforeAll(async () => {
      s3 = await startS3rver();
      const upstream = Number(new URL(s3.endpoint).port);
      // A loopback proxy to s3rver that, at the first chunk upload, stops listening and drops
      // every connection: from then on the S3 endpoint refuses connections (an outage).
      proxy = net.createServer((client) => {
        const server = net.connect(upstream, '127.0.0.1');
        sockets.add(client);
        sockets.add(server);
        client.on('data', (d: Buffer) => {
          if (!refused && /^PUT \S*\/packs\//m.test(d.toString('latin1'))) {
            refused = true;
            proxy.close();
            for (const s of sockets) s.destroy();
            return;
          }
          server.write(d);
        });
        server.on('data', (d) => client.write(d));
        for (const s of [client, server]) {
          s.on('error', () => undefined);
          s.on('close', () => { sockets.delete(s); client.destroy(); server.destroy(); });
        }
      });
      await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
      proxyPort = (proxy.address() as net.AddressInfo).port;
    });
    afterAll(async () => {
      for (const s of sockets) s.destroy();
      if (proxy.listening) proxy.close();
      await s3?.close();
    });

    it('when S3 starts refusing connections after the backup started: exit 1 naming the vault and the refusal', async () => {
      const url = `s3://${s3.bucket}/prod/vault`;
      const creds = { AWS_ACCESS_KEY_ID: s3.credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey };
      Object.assign(process.env, creds);
      const f = await makeFixture({ data: { kind: 'files', path: 'src' } }, {
        secondary: false,
        extra: { vault: { primary: { url, endpoint: `http://127.0.0.1:${proxyPort}`, region: 'us-east-1', forcePathStyle: true } } },
      });
      await platform(f);
      const r = await cliWithin(['backup', '--config', f.cfgFile, '--type', 'full'], creds);
      expect(refused).toBe(true);
      expect(r.code, r.out).toBe(1);
      // The vault and the refusal are named (the chunk's store fails first; the lock's release,
      // which fails too, may be what is reported).
      expect(r.out).toMatch(new RegExp(`FAILED data: .* in ${url.replaceAll('/', '\\/')}: .*ECONNREFUSED`));
    });
  });
});

describe('the workers are gone after a backup', () => {
  it('after one that succeeded and after one that failed (their threads joined)', async () => {
    const f = await makeFixture({ data: { kind: 'files', path: 'src' } }, { secondary: false });
    await platform(f);
    const alerts = new FileAlertSink(f.alertsFile);
    // Warm-up on the main thread: the thread pool and V8's threads exist from here on.
    process.env.MEMVAULT_WORKERS = '0';
    expect((await runBackups(f.cfg, { type: 'full', alerts, log: silentLogger })).ok).toBe(true);
    const baseline = threads();

    process.env.MEMVAULT_WORKERS = '2';
    const ok = await sampled(() => runBackups(f.cfg, { type: 'full', alerts, log: silentLogger }));
    expect(ok.result.ok).toBe(true);
    expect(ok.most).toBeGreaterThanOrEqual(baseline + 2); // the two workers were running
    expect(await settledThreads(baseline)).toBeLessThanOrEqual(baseline);

    await writeTree(path.join(f.dir, 'src'), { 'weights/c.bin': randomBytes(2 * 1024 * 1024) });
    await fs.rm(path.join(f.dir, 'vault-primary', 'packs'), { recursive: true });
    await breakChunkStore(path.join(f.dir, 'vault-primary'));
    const failed = await sampled(() => runBackups(f.cfg, { type: 'full', alerts, log: silentLogger }));
    expect(failed.result.ok).toBe(false);
    expect(failed.result.failures[0].error).toMatch(/cannot write packs\//);
    expect(failed.most).toBeGreaterThanOrEqual(baseline + 2);
    expect(await settledThreads(baseline)).toBeLessThanOrEqual(baseline);
  });
});
