// Drill scratch targets, shared by the drivers (not a driver itself).
//
// On AWS, restore-component and validate-restore run in different Lambda
// functions, each with its own /tmp: a restore into a directory is gone (and
// never seen) by the time it is validated, and /tmp holds at most 10 GB. So a
// drill restores each component into the network target named by its
// `components.<name>.drill` setting, the way AWS Backup restore testing does:
// restore into a scratch target unique to the run, validate there, remove it.
//
//   postgres, vector  drill: {url | host.. | secretArn}  a server where memvault may
//                     CREATE DATABASE memvault_drill_<component>_<tag> and DROP it after
//   redis             drill: {url, db}  scratch databases db, db+1, ... one per
//                     backed-up database, that must be empty; FLUSHDB after
//   mongodb           drill: {uri | uriEnv, databasePrefix}  databases
//                     <prefix><tag>_<n>, dropped after
//   s3-prefix         drill: {bucket, prefix}  objects under <prefix><tag>/, deleted after
//   ssm-config        drill: {parameterPath, secretPrefix}  /<path>/<tag>/<original name>,
//                     <prefix><tag>/<original name>, deleted after
//   rds/aurora        no drill setting: the drill checks the snapshots and their DR copies
//   files, sqlite     the sandbox directory (the local runtime runs every step in one process)
import { createHash } from 'node:crypto';

/**
 * A short tag unique to a drill run and component: lowercase hex, safe in every
 * scratch name (PostgreSQL identifiers, MongoDB database names, S3 keys, SSM paths).
 */
export function drillTag(run: string, component: string): string {
  return 'd' + createHash('sha256').update(`${run}\0${component}`).digest('hex').slice(0, 11);
}

/** A name for the scratch database of a component's drill: at most 63 characters, [a-z0-9_]. */
export function scratchDatabaseName(component: string, tag: string): string {
  const c = component.toLowerCase().replace(/[^a-z0-9]+/g, '_').slice(0, 30);
  return `memvault_drill_${c}_${tag}`;
}

/** Scratch names are memvault's own: a cleanup removes nothing else. */
export const SCRATCH_DATABASE = /^memvault_drill_[a-z0-9_]{1,30}_d[0-9a-f]{11}$/;
