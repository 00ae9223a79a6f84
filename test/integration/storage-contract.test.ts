// The Storage contract (test/helpers/storage-contract.ts) for the file:// and
// s3:// (s3rver) backends; azblob:// runs it in azure-storage.test.ts.
import path from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { FileStorage } from '../../functions/adapters/storage/file.ts';
import { S3Storage } from '../../functions/adapters/storage/s3.ts';
import type { S3Client } from '@aws-sdk/client-s3';
import { startS3rver, type S3rverHandle } from '../helpers/s3rver.ts';
import { storageContract } from '../helpers/storage-contract.ts';
import { tempDir } from '../helpers/fixture.ts';

let root: string;
let server: S3rverHandle;
let client: S3Client;
beforeAll(async () => {
  root = await tempDir('memvault-contract-');
  server = await startS3rver();
  client = server.client();
});
afterAll(async () => {
  await server?.close();
});

storageContract('file://', () => ({
  make: (prefix) => new FileStorage(path.join(root, prefix)),
  pagedCount: 60,
}));

// S3 lists at most 1000 keys a page; s3rver's continuation tokens need --openssl-legacy-provider (vitest.config.ts).
storageContract('s3:// (s3rver)', () => ({
  make: (prefix) => new S3Storage({ bucket: server.bucket, prefix, client }),
  pagedCount: 1100,
}));
