// Starts @20minutes/s3rver in-process on 127.0.0.1 (random free port, fresh
// temporary directory) with one bucket, for tests of the S3 storage backend.
//
// s3rver encrypts ListObjectsV2 continuation tokens with DES, which OpenSSL 3
// only offers through the legacy provider: the test process must run with
// node --openssl-legacy-provider (vitest.config.ts passes it to the forks), or
// any listing longer than one page fails with a 500.
import { createRequire } from 'node:module';
import { mkdtemp, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { S3Client } from '@aws-sdk/client-s3';
import { createS3Client } from '../../functions/adapters/storage/s3.ts';

interface S3rverOptions {
  address: string;
  port: number;
  directory: string;
  silent: boolean;
  allowMismatchedSignatures: boolean;
  vhostBuckets: boolean;
  resetOnClose: boolean;
  configureBuckets: { name: string }[];
}
interface S3rverInstance {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
  httpServer?: Server;
}
type S3rverClass = new (opts: S3rverOptions) => S3rverInstance;

// s3rver is CommonJS without type declarations.
const S3rver = createRequire(import.meta.url)('@20minutes/s3rver') as S3rverClass;

export const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

export interface S3rverHandle {
  /** http://127.0.0.1:PORT */
  endpoint: string;
  bucket: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  /** A new client for this server (path-style, S3RVER credentials); destroy it when done. */
  client(): S3Client;
  /** Stops the server and removes its directory. */
  close(): Promise<void>;
}

export function legacyOpenSslAvailable(): boolean {
  return process.execArgv.includes('--openssl-legacy-provider') || /--openssl-legacy-provider/.test(process.env.NODE_OPTIONS ?? '');
}

export async function startS3rver(bucket = `vault-${randomBytes(4).toString('hex')}`): Promise<S3rverHandle> {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'memvault-s3rver-'));
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    directory,
    silent: true,
    allowMismatchedSignatures: true,
    vhostBuckets: false,
    resetOnClose: false,
    configureBuckets: [{ name: bucket }],
  });
  let address: AddressInfo;
  try {
    address = await server.run();
  } catch (err) {
    await rm(directory, { recursive: true, force: true });
    throw err;
  }
  const endpoint = `http://127.0.0.1:${address.port}`;
  const clients: S3Client[] = [];
  let closed = false;
  return {
    endpoint,
    bucket,
    credentials: { ...S3RVER_CREDENTIALS },
    client() {
      const c = createS3Client({ endpoint, region: 'us-east-1', credentials: { ...S3RVER_CREDENTIALS } });
      clients.push(c);
      return c;
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const c of clients) c.destroy();
      // Keep-alive sockets would hold close() open until they time out.
      server.httpServer?.closeAllConnections();
      await server.close();
      await rm(directory, { recursive: true, force: true });
    },
  };
}
