// Every driver, by kind. The config validator merges each kind's schema with
// the common component fields; the engine looks drivers up here.
//
// Driver modules are small; the database client libraries they use are big
// (pg, redis, mongodb: about 1.4 MB of a 2.3 MB bundle) and load on first use
// with a dynamic import(). A Lambda bundle is one ESM file (no code
// splitting), so the CDK app keeps the libraries of kinds a function cannot
// run out of its bundle (esbuild externals, infra/constructs/handler-functions.ts):
// their import() is then never reached. DRIVER_LIBRARIES says which library
// each kind loads; a test checks it against the import() calls of the drivers.
import type { Driver } from './types.ts';
import type { KindSchemas } from '../core/config.ts';
import { filesDriver } from './files.ts';
import { sqliteDriver } from './sqlite.ts';
import { postgresDriver } from './postgres.ts';
import { vectorDriver } from './vector.ts';
import { redisDriver } from './redis.ts';
import { s3PrefixDriver } from './s3-prefix.ts';
import { mongodbDriver } from './mongodb.ts';
import { ssmConfigDriver } from './ssm-config.ts';
import { rdsSnapshotDriver } from './rds-snapshot.ts';
import { auroraSnapshotDriver } from './aurora-snapshot.ts';

export const drivers: Record<string, Driver<any>> = {
  files: filesDriver,
  sqlite: sqliteDriver,
  postgres: postgresDriver,
  vector: vectorDriver,
  redis: redisDriver,
  's3-prefix': s3PrefixDriver,
  mongodb: mongodbDriver,
  'ssm-config': ssmConfigDriver,
  'rds-snapshot': rdsSnapshotDriver,
  'aurora-snapshot': auroraSnapshotDriver,
};

/** The npm packages a kind's driver loads at run time with import() (besides the AWS SDK, which the Lambda runtime provides). */
export const DRIVER_LIBRARIES: Record<string, readonly string[]> = {
  postgres: ['pg'],
  vector: ['pg'],
  redis: ['redis'],
  mongodb: ['mongodb'],
};

/** Every driver library of DRIVER_LIBRARIES. */
export const ALL_DRIVER_LIBRARIES: readonly string[] = [...new Set(Object.values(DRIVER_LIBRARIES).flat())].sort();

/** The driver libraries the given kinds need. */
export function driverLibraries(kinds: Iterable<string>): string[] {
  return [...new Set([...kinds].flatMap((k) => DRIVER_LIBRARIES[k] ?? []))].sort();
}

export const kindSchemas: KindSchemas = Object.fromEntries(Object.entries(drivers).map(([k, d]) => [k, d.schema]));

export function driverFor(kind: string): Driver<any> {
  const d = drivers[kind];
  if (!d) throw new Error(`no driver for kind "${kind}"`);
  return d;
}
