// Starts Azurite's blob service (npm package azurite) in a child process on
// 127.0.0.1 with a free port, in memory, with one container, for tests of the
// azblob:// storage backend. The account is Azurite's well-known development
// account (devstoreaccount1 and its published key, nothing secret).
import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { BlobServiceClient, StorageSharedKeyCredential } from '@azure/storage-blob';

export const AZURITE_ACCOUNT = 'devstoreaccount1';
export const AZURITE_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export interface AzuriteHandle {
  /** The blob service endpoint: http://127.0.0.1:PORT/devstoreaccount1 */
  endpoint: string;
  account: string;
  key: string;
  container: string;
  /** AZURE_STORAGE_CONNECTION_STRING for this server. */
  connectionString: string;
  /** A service client with the account key. */
  service(): BlobServiceClient;
  /** Creates another container. */
  createContainer(name: string): Promise<void>;
  close(): Promise<void>;
}

const MAIN = path.join(path.dirname(createRequire(import.meta.url).resolve('azurite/package.json')), 'dist', 'src', 'blob', 'main.js');

export async function startAzurite(container = `vault-${randomBytes(4).toString('hex')}`): Promise<AzuriteHandle> {
  // Its working directory: Azurite may write a debug log or database files there.
  const cwd = await mkdtemp(path.join(os.tmpdir(), 'memvault-azurite-'));
  const child: ChildProcess = spawn(process.execPath, [
    MAIN, '--blobHost', '127.0.0.1', '--blobPort', '0', '--inMemoryPersistence',
    '--skipApiVersionCheck', '--loose', '--disableTelemetry', '--silent',
  ], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`azurite did not start within 30 s:\n${output}`)), 30_000);
    const onData = (d: Buffer) => {
      output += d.toString();
      const m = /listens on http:\/\/127\.0\.0\.1:(\d+)/.exec(output);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`azurite exited with ${code}:\n${output}`));
    });
  });
  const endpoint = `http://127.0.0.1:${port}/${AZURITE_ACCOUNT}`;
  const service = () => new BlobServiceClient(endpoint, new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY));
  const createContainer = async (name: string) => { await service().getContainerClient(name).create(); };
  await createContainer(container);
  let closed = false;
  return {
    endpoint,
    account: AZURITE_ACCOUNT,
    key: AZURITE_KEY,
    container,
    connectionString: `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT};AccountKey=${AZURITE_KEY};BlobEndpoint=${endpoint};`,
    service,
    createContainer,
    async close() {
      if (closed) return;
      closed = true;
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
        if (child.exitCode === null) child.kill('SIGKILL');
      }
      await rm(cwd, { recursive: true, force: true });
    },
  };
}
