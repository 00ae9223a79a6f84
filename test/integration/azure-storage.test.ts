// azblob:// vaults against Azurite on loopback: the storage contract every
// backend passes, credentials from the environment, the error mapping for a
// wrong key, a missing container and an unreachable endpoint, and a backup +
// restore of a small tree through the real CLI.
import { promises as fs } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ContainerSASPermissions } from '@azure/storage-blob';
import { stringify } from 'yaml';
import { AzureBlobStorage, loadAzureSdk, serviceClient, type AzureSdk } from '../../functions/adapters/storage/azure-blob.ts';
import { LazyAzureBlobStorage, parseAzblobUrl } from '../../functions/adapters/storage/azure-location.ts';
import { RetryingStorage } from '../../functions/adapters/storage/retrying.ts';
import { ConfigError, NotFoundError, PermanentError, TransientStorageError } from '../../functions/core/errors.ts';
import { startAzurite, type AzuriteHandle } from '../helpers/azurite.ts';
import { listKeys, storageContract } from '../helpers/storage-contract.ts';
import { tempDir, writeTree } from '../helpers/fixture.ts';
import { cli } from '../helpers/cli.ts';

let az: AzuriteHandle;
let sdk: AzureSdk;
beforeAll(async () => {
  sdk = await loadAzureSdk();
  az = await startAzurite();
});
afterAll(async () => {
  await az?.close();
});

const fastRetry = { attempts: 3, baseMs: 1, maxMs: 1, sleep: async () => {} };

function keyEnv(key = az.key): NodeJS.ProcessEnv {
  return { AZURE_STORAGE_KEY: key };
}

storageContract('azblob:// (Azurite)', () => ({
  make: (prefix, o) => AzureBlobStorage.withSdk(sdk, { url: `azblob://${az.account}/${az.container}/${prefix}`, endpoint: az.endpoint }, keyEnv(), o),
  pageSize: 10,
  pagedCount: 55,
}));

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return port;
}

describe('azblob:// locations and credentials', () => {
  it('parses azblob://account/container/prefix and rejects what Azure would', () => {
    expect(parseAzblobUrl('azblob://acct1/backups/prod//memvault/')).toEqual({ account: 'acct1', container: 'backups', prefix: 'prod/memvault' });
    expect(parseAzblobUrl('azblob://acct1/backups')).toEqual({ account: 'acct1', container: 'backups', prefix: '' });
    for (const url of ['azblob://acct1', 'azblob://acct1/', 'azblob://Acct1/backups', 'azblob://a/backups', 'azblob://acct1/Backups', 'azblob://acct1/a--b', 's3://acct1/backups']) {
      expect(() => parseAzblobUrl(url), url).toThrow(ConfigError);
    }
    expect(new LazyAzureBlobStorage({ url: 'azblob://acct1/backups/p/' }).url).toBe('azblob://acct1/backups/p');
  });

  it('without credentials in the environment, fails naming the variables to set', () => {
    const err = (() => { try { serviceClient(sdk, 'acct1', undefined, {}, 'azblob://acct1/c1c'); } catch (e) { return e; } })();
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/azblob:\/\/acct1\/c1c: no Azure credentials: set AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_KEY .* or AZURE_STORAGE_SAS_TOKEN/);
  });

  it('a connection string for another account is refused', () => {
    expect(() => serviceClient(sdk, 'otheracct', undefined, { AZURE_STORAGE_CONNECTION_STRING: az.connectionString }, 'azblob://otheracct/c1c'))
      .toThrow(/is for storage account devstoreaccount1, not otheracct/);
  });

  it('AZURE_STORAGE_CONNECTION_STRING reaches the vault through its BlobEndpoint; the endpoint variable works with a key; a SAS token works', async () => {
    const url = `azblob://${az.account}/${az.container}/vaults/env`;
    const viaCs = new RetryingStorage(new LazyAzureBlobStorage({ url }, { AZURE_STORAGE_CONNECTION_STRING: az.connectionString }));
    await viaCs.put('chunks/aa/one', Buffer.from('through the connection string'));
    const viaKey = new LazyAzureBlobStorage({ url }, { AZURE_STORAGE_KEY: az.key, MEMVAULT_AZURE_BLOB_ENDPOINT: az.endpoint });
    expect((await viaKey.get('chunks/aa/one')).toString()).toBe('through the connection string');
    expect(await viaKey.sweepTemporary(0)).toEqual({ removed: 0, bytes: 0 });
    expect(await listKeys(viaKey, '')).toEqual(['chunks/aa/one']);
    // A container SAS with read, add, create, write, delete and list.
    const sasUrl = await az.service().getContainerClient(az.container).generateSasUrl({
      permissions: ContainerSASPermissions.parse('racwdl'), expiresOn: new Date(Date.now() + 3_600_000),
    });
    const viaSas = new LazyAzureBlobStorage({ url, endpoint: az.endpoint }, { AZURE_STORAGE_SAS_TOKEN: new URL(sasUrl).search });
    await viaSas.put('chunks/aa/two', Buffer.from('through a SAS'));
    expect(await listKeys(viaSas, '')).toEqual(['chunks/aa/one', 'chunks/aa/two']);
    await viaSas.delete('chunks/aa/two');
    expect(await viaKey.has('chunks/aa/two')).toBe(false);
  });
});

describe('azblob:// error mapping against Azurite', () => {
  it('a wrong account key is a PermanentError naming the vault url and the credentials, not retried', async () => {
    const wrongKey = Buffer.from(randomBytes(64)).toString('base64');
    let calls = 0;
    const inner = AzureBlobStorage.withSdk(sdk, { url: `azblob://${az.account}/${az.container}/vaults/primary`, endpoint: az.endpoint }, keyEnv(wrongKey));
    const counting = { ...inner, url: inner.url, get: (k: string) => { calls++; return inner.get(k); } } as unknown as AzureBlobStorage;
    const err = await new RetryingStorage(counting, fastRetry).get('vault.json').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PermanentError);
    expect(err).not.toBeInstanceOf(NotFoundError);
    expect((err as Error).message).toContain(`azblob://${az.account}/${az.container}/vaults/primary`);
    expect((err as Error).message).toMatch(/access denied to storage account devstoreaccount1 for GetBlob; check AZURE_STORAGE_KEY/);
    expect(calls).toBe(1);
    await expect(inner.put('x', Buffer.from('x'))).rejects.toThrow(/access denied .* for PutBlob/);
    await expect(inner.has('x')).rejects.toBeInstanceOf(PermanentError);
  });

  it('a missing container is a PermanentError naming it', async () => {
    const s = AzureBlobStorage.withSdk(sdk, { url: `azblob://${az.account}/no-such-container/v`, endpoint: az.endpoint }, keyEnv());
    await expect(s.put('k', Buffer.from('x'))).rejects.toThrow(/container no-such-container does not exist in storage account devstoreaccount1/);
    const drain = async () => { for await (const _ of s.list('')) void _; };
    await expect(drain()).rejects.toThrow(/azblob:ListBlobs azblob:\/\/devstoreaccount1\/no-such-container\/v: container no-such-container does not exist/);
  });

  it('an unreachable endpoint is a TransientStorageError naming the vault url and the endpoint (retried, then reported)', async () => {
    const endpoint = `http://127.0.0.1:${await closedPort()}/${az.account}`;
    const s = AzureBlobStorage.withSdk(sdk, { url: `azblob://${az.account}/${az.container}/v`, endpoint }, keyEnv());
    const started = Date.now();
    const err = await new RetryingStorage(s, fastRetry).get('vault.json').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransientStorageError);
    expect((err as Error).message).toContain(`azblob://${az.account}/${az.container}/v`);
    expect((err as Error).message).toContain(`cannot reach the blob endpoint ${endpoint}`);
    expect(Date.now() - started).toBeLessThan(20_000);
    // With a SAS token the endpoint is named without the token.
    const sas = AzureBlobStorage.withSdk(sdk, { url: `azblob://${az.account}/${az.container}/v`, endpoint }, { AZURE_STORAGE_SAS_TOKEN: '?sv=2024-01-01&sp=r&sig=SECRETSIG%2Fx' });
    const sasErr = await sas.has('vault.json').catch((e: unknown) => e);
    expect(sasErr).toBeInstanceOf(TransientStorageError);
    expect((sasErr as Error).message).toContain(`cannot reach the blob endpoint ${endpoint}:`);
    expect((sasErr as Error).message).not.toContain('SECRETSIG');
  });
});

describe('memvault CLI with an azblob:// vault (Azurite)', () => {
  let dir: string;
  let cfgFile: string;
  const url = () => `azblob://${az.account}/${az.container}/cli-vault`;
  const env = () => ({ AZURE_STORAGE_KEY: az.key });

  beforeAll(async () => {
    dir = await tempDir();
    cfgFile = path.join(dir, 'memvault.yaml');
    await fs.writeFile(cfgFile, stringify({
      vault: { primary: { url: url(), endpoint: az.endpoint } },
      encryption: { key: 'memvault.key' },
      alerts: [{ type: 'file', path: 'alerts.jsonl' }],
      components: { graph: { kind: 'files', path: 'platform/graph' }, weights: { kind: 'files', path: 'platform/weights' } },
    }));
    await writeTree(path.join(dir, 'platform'), {
      'graph/nodes.jsonl': '{"id":1,"label":"concept"}\n'.repeat(2000),
      'graph/edges/part-0.jsonl': '{"from":1,"to":2}\n'.repeat(500),
      'weights/w.bin': randomBytes(3 * 1024 * 1024),
      'weights/empty.bin': Buffer.alloc(0),
    });
  });

  it('init, backup, list and restore: the restored bytes equal the originals', async () => {
    const init = await cli(['init', '--config', cfgFile, '--json'], { env: env() });
    expect(init.code, init.stderr).toBe(0);
    expect(JSON.parse(init.stdout).primary).toMatchObject({ url: url(), created: true });

    const b = await cli(['backup', '--config', cfgFile, '--type', 'full', '--json'], { env: env() });
    expect(b.code, b.stderr).toBe(0);
    expect(JSON.parse(b.stdout).outcomes.map((o: { component: string }) => o.component).sort()).toEqual(['graph', 'weights']);

    // The objects are blobs in the container under the vault prefix.
    const names: string[] = [];
    for await (const blob of az.service().getContainerClient(az.container).listBlobsFlat({ prefix: 'cli-vault/' })) names.push(blob.name);
    expect(names).toContain('cli-vault/vault.json');
    expect(names.some((n) => n.startsWith('cli-vault/manifests/graph/'))).toBe(true);

    const l = await cli(['list', '--config', cfgFile, '--json'], { env: env() });
    expect(l.code, l.stderr).toBe(0);
    expect(JSON.parse(l.stdout).backups.length).toBe(2);

    const target = path.join(dir, 'restored');
    const r = await cli(['restore', '--config', cfgFile, '--latest', '--target', target, '--json'], { env: env() });
    expect(r.code, r.stderr).toBe(0);
    for (const rel of ['graph/nodes.jsonl', 'graph/edges/part-0.jsonl', 'weights/w.bin', 'weights/empty.bin']) {
      const original = await fs.readFile(path.join(dir, 'platform', rel));
      const [component, ...rest] = rel.split('/');
      const restored = await fs.readFile(path.join(target, component, ...rest));
      expect(restored.equals(original), rel).toBe(true);
    }
  });

  it('a wrong account key fails with exit 1 and a message naming the vault url', async () => {
    const r = await cli(['list', '--config', cfgFile], { env: { AZURE_STORAGE_KEY: randomBytes(64).toString('base64') } });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(url());
    expect(r.stderr).toMatch(/access denied to storage account devstoreaccount1/);
  });

  it('an unreachable endpoint fails with exit 1 after the retries, naming the vault url and the endpoint', async () => {
    const endpoint = `http://127.0.0.1:${await closedPort()}/${az.account}`;
    const r = await cli(['list', '--config', cfgFile], { env: { ...env(), MEMVAULT_AZURE_BLOB_ENDPOINT: endpoint } });
    // The config's endpoint wins over the variable: point the config at the closed port instead.
    expect(r.code).toBe(0);
    const unreachable = path.join(dir, 'unreachable.yaml');
    await fs.writeFile(unreachable, (await fs.readFile(cfgFile, 'utf8')).replace(az.endpoint, endpoint));
    const u = await cli(['list', '--config', unreachable], { env: env() });
    expect(u.code).toBe(1);
    expect(u.stderr).toContain(url());
    expect(u.stderr).toContain(`cannot reach the blob endpoint ${endpoint}`);
  });

  it('no credentials at all fails with exit 2 naming the variables', async () => {
    const r = await cli(['init', '--config', cfgFile], { env: { AZURE_STORAGE_KEY: '', AZURE_STORAGE_CONNECTION_STRING: '', AZURE_STORAGE_SAS_TOKEN: '' } });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${url()}: no Azure credentials`);
  });
});
