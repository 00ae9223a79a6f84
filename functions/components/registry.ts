// Every driver, by kind. The config validator merges each kind's schema with
// the common component fields; the engine looks drivers up here.
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

export const kindSchemas: KindSchemas = Object.fromEntries(Object.entries(drivers).map(([k, d]) => [k, d.schema]));

export function driverFor(kind: string): Driver<any> {
  const d = drivers[kind];
  if (!d) throw new Error(`no driver for kind "${kind}"`);
  return d;
}
