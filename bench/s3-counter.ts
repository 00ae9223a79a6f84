// A loopback S3 server for the benchmarks (@20minutes/s3rver, as in
// test/helpers/s3rver.ts) that counts the requests it serves, by type, so each
// step of each tool can report how many S3 requests it made. Counting happens
// at the server: whatever client (memvault's SDK, restic's minio-go) sent them.
//
// s3rver encrypts ListObjectsV2 continuation tokens with DES: the process must
// run with node --openssl-legacy-provider (the npm script passes it).
import { createRequire } from 'node:module';
import { mkdtemp, rm } from 'node:fs/promises';
import type { IncomingMessage, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { createS3Client } from '../functions/adapters/storage/s3.ts';

interface S3rverInstance { run(): Promise<AddressInfo>; close(): Promise<void>; httpServer?: Server }
const S3rver = createRequire(import.meta.url)('@20minutes/s3rver') as new (o: Record<string, unknown>) => S3rverInstance;

export const S3_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
export const REQUEST_TYPES = ['PUT', 'GET', 'HEAD', 'LIST', 'DELETE', 'OTHER'] as const;
export type RequestType = (typeof REQUEST_TYPES)[number];
export type RequestCounts = Record<RequestType, number>;

export const noRequests = (): RequestCounts => ({ PUT: 0, GET: 0, HEAD: 0, LIST: 0, DELETE: 0, OTHER: 0 });
export const totalRequests = (c: RequestCounts) => REQUEST_TYPES.reduce((s, t) => s + c[t], 0);

/** The S3 operation type of a path-style request. */
export function requestType(req: IncomingMessage): RequestType {
  const u = new URL(req.url ?? '/', 'http://x');
  const parts = u.pathname.split('/').filter(Boolean);
  const onObject = parts.length >= 2;
  switch (req.method) {
    case 'PUT': return onObject ? 'PUT' : 'OTHER';
    case 'GET': return onObject ? 'GET' : u.searchParams.has('location') ? 'OTHER' : 'LIST';
    case 'HEAD': return 'HEAD';
    case 'DELETE': return onObject ? 'DELETE' : 'OTHER';
    case 'POST': return u.searchParams.has('delete') ? 'DELETE' : 'OTHER';
    default: return 'OTHER';
  }
}

export interface CountingS3 {
  endpoint: string;
  bucket: string;
  /** Requests since the last reset (per type). */
  counts: RequestCounts;
  reset(): void;
  /** Objects under a prefix (listing not counted). */
  objects(prefix: string): Promise<{ count: number; bytes: number }>;
  close(): Promise<void>;
}

export async function startCountingS3(bucket = 'bench'): Promise<CountingS3> {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'memvault-bench-s3rver-'));
  const server = new S3rver({
    address: '127.0.0.1', port: 0, directory, silent: true, allowMismatchedSignatures: true,
    vhostBuckets: false, resetOnClose: false, configureBuckets: [{ name: bucket }],
  });
  const address = await server.run();
  const endpoint = `http://127.0.0.1:${address.port}`;
  let counting = true;
  const h: CountingS3 = {
    endpoint,
    bucket,
    counts: noRequests(),
    reset() { h.counts = noRequests(); },
    async objects(prefix) {
      counting = false;
      const c = createS3Client({ endpoint, region: 'us-east-1', credentials: { ...S3_CREDENTIALS } });
      let count = 0, bytes = 0, token: string | undefined;
      try {
        do {
          const r = await c.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
          for (const o of r.Contents ?? []) { count++; bytes += o.Size ?? 0; }
          token = r.IsTruncated ? r.NextContinuationToken : undefined;
        } while (token);
      } finally {
        c.destroy();
        counting = true;
      }
      return { count, bytes };
    },
    async close() {
      server.httpServer?.closeAllConnections();
      await server.close();
      await rm(directory, { recursive: true, force: true });
    },
  };
  server.httpServer!.prependListener('request', (req: IncomingMessage) => { if (counting) h.counts[requestType(req)]++; });
  return h;
}
