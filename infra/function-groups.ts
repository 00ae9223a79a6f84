// Which IAM role each Lambda handler runs as, and what that role may do: one
// role per group of handlers that make the same calls, derived from what each
// handler (and the core code it reaches) actually calls. A handler missing
// from this table fails synth, so a new handler gets a role on purpose.
//
// Vault access levels (objects under vault/ of a bucket, with the bucket's
// KMS key; see functions/core/vault.ts for the layout):
//   read   GetObject, ListBucket, kms:Decrypt (opening a vault unwraps its
//          master secret; SSE-KMS objects decrypt through S3)
//   audit  read, and Put of audit/* (the vault's audit log: new records only;
//          the bucket policy denies deleting one to everyone)
//   lock   audit, and Put/Delete of locks/* (the shared lock a copy holds on
//          the vault it reads)
//   write  read, PutObject anywhere under vault/, DeleteObject only of locks/*
//          and staging/* (a backup's own lock and partition staging), and
//          kms:GenerateDataKey for SSE-KMS writes; never deletes a chunk,
//          manifest, head or tombstone
//   prune  write, and DeleteObject of any vault object (retention only; the
//          vault bucket policy denies these deletes to every other principal)
// In the DR stack every level is capped at read: the DR region's handlers
// restore and verify from the vaults, they never write one.
export type VaultAccess = 'none' | 'read' | 'audit' | 'lock' | 'write' | 'prune';

export interface GroupAccess {
  /** Why the group has what it has (the role's description). */
  readonly why: string;
  readonly handlers: readonly string[];
  /** Access to the primary vault and to the secondary (DR) vault, as the handlers name them. */
  readonly vaults: { readonly primary: VaultAccess; readonly secondary: VaultAccess };
  /** sns:Publish to the region's alert topic (handlers that send alerts themselves). */
  readonly publishAlerts: boolean;
  /**
   * The configured sources: 'read' = s3-prefix objects (and their KMS key),
   * ssm-config parameters and secrets, database secrets; 'restore' = read
   * database secrets and write the configured restore targets.
   */
  readonly sources: 'none' | 'read' | 'restore';
  /** RDS / Aurora / DocumentDB snapshot API calls (source-permissions.ts). */
  readonly snapshots: { readonly describe?: boolean; readonly create?: boolean; readonly delete?: boolean; readonly restore?: boolean };
  /** lambda:InvokeFunction on the Lambda functions the config's hooks name (those of these phases). */
  readonly invokesHooks?: readonly ('backup' | 'restore')[];
}

export const FUNCTION_GROUPS = {
  // Send and summarize: they publish to the alert topic and read nothing
  // (the alert text comes in the state input).
  alerting: {
    why: 'send alerts: publish to the alert topic; no vault, source or secret access',
    handlers: ['send-alert'],
    vaults: { primary: 'none', secondary: 'none' },
    publishAlerts: true,
    sources: 'none',
    snapshots: {},
  },
  // The ends of backup runs, restores and drills: they summarize (the results
  // come in the state input), alert, and add the operation's record to the
  // audit log of the vault it used.
  reporting: {
    why: 'report backup runs, restores and drills: publish to the alert topic, append audit records to either vault; no other writes',
    handlers: ['finish-backup-run', 'finish-drill', 'report-restore'],
    vaults: { primary: 'audit', secondary: 'audit' },
    publishAlerts: true,
    sources: 'none',
    snapshots: {},
  },
  // Planners read the catalog (which side is the execution input's `from`);
  // validate-restore-input and plan-backup check the input against config and catalog.
  planning: {
    why: 'plan backups, restores and drills: read and list both vaults; no writes',
    handlers: ['plan-backup', 'plan-restore', 'plan-drill', 'validate-restore-input'],
    vaults: { primary: 'read', secondary: 'read' },
    publishAlerts: false,
    sources: 'none',
    snapshots: {},
  },
  // rpo-watch: reads both catalogs (the DR copy's age is the replication lag)
  // and alerts on a missed RPO itself.
  rpo: {
    why: 'rpo-watch: read both vault catalogs and alert on a missed RPO or a DR copy behind it',
    handlers: ['check-rpo'],
    vaults: { primary: 'read', secondary: 'read' },
    publishAlerts: true,
    sources: 'none',
    snapshots: {},
  },
  // verify-vault reads every object of the vault the input names.
  verify: {
    why: 'verify drill: read every object of either vault; append its audit record',
    handlers: ['verify-vault'],
    vaults: { primary: 'audit', secondary: 'audit' },
    publishAlerts: false,
    sources: 'none',
    snapshots: {},
  },
  // Backup writers: read a source, add chunks, staging and the manifest to the
  // primary vault under a shared lock (write-manifest also describes the
  // finished service snapshot it records).
  backup: {
    why: 'back up: read the sources, write the primary vault (no deletes but its own locks and staging)',
    handlers: ['export-stream', 'plan-partitions', 'backup-partition', 'merge-partitions', 'write-manifest'],
    vaults: { primary: 'write', secondary: 'none' },
    publishAlerts: false,
    sources: 'read',
    snapshots: { describe: true },
    invokesHooks: ['backup'],
  },
  // Service snapshots: the RDS API only (create, tag, copy to DR, describe);
  // they open the primary vault to resolve the component, never write it.
  snapshot: {
    why: 'start and poll service snapshots: RDS snapshot create, tag, copy and describe; read the primary vault',
    handlers: ['snapshot-start', 'snapshot-poll'],
    vaults: { primary: 'read', secondary: 'none' },
    publishAlerts: false,
    sources: 'none',
    snapshots: { describe: true, create: true },
  },
  // Replication reads the primary under a shared lock and writes the DR vault.
  replicate: {
    why: 'replicate: read the primary vault (holding a lock on it) and write the DR vault',
    handlers: ['replicate'],
    vaults: { primary: 'lock', secondary: 'write' },
    publishAlerts: false,
    sources: 'none',
    snapshots: {},
  },
  // Retention is the only deleter: forgets and prunes both vaults, deletes the
  // service snapshots memvault made (tagged), alerts on what it refused.
  retention: {
    why: 'retention: forget and prune both vaults, delete memvault-tagged service snapshots, alert',
    handlers: ['apply-retention'],
    vaults: { primary: 'prune', secondary: 'prune' },
    publishAlerts: true,
    sources: 'none',
    snapshots: { describe: true, delete: true },
  },
  // Restores read either vault and write only the configured restore targets
  // and drill scratch targets (and new, tagged database instances/clusters
  // from snapshots); cleanup-restore empties a drill's scratch target.
  restore: {
    why: 'restore, validate and clean up drills: read both vaults, write the configured restore and drill targets, restore snapshots into new tagged databases',
    handlers: ['restore-component', 'promote-restore', 'validate-restore', 'cleanup-restore'],
    vaults: { primary: 'read', secondary: 'read' },
    publishAlerts: false,
    sources: 'restore',
    snapshots: { describe: true, restore: true },
    invokesHooks: ['restore'],
  },
} as const satisfies Record<string, GroupAccess>;

/** The Lambda functions the config's hooks invoke, per kind of operation (backup: before/afterBackup). */
export function hookFunctionArns(components: Record<string, { hooks?: Partial<Record<string, { lambda?: { functionArn: string } }[]>> }>, op: 'backup' | 'restore'): string[] {
  const phases = op === 'backup' ? ['beforeBackup', 'afterBackup'] : ['beforeRestore', 'afterRestore'];
  const arns = new Set<string>();
  for (const c of Object.values(components)) for (const p of phases) for (const h of c.hooks?.[p] ?? []) if (h.lambda) arns.add(h.lambda.functionArn);
  return [...arns].sort();
}

export type FunctionGroup = keyof typeof FUNCTION_GROUPS;

/** The group of a handler; undefined when the table has none. */
export function groupOf(handler: string): FunctionGroup | undefined {
  for (const [g, a] of Object.entries(FUNCTION_GROUPS) as [FunctionGroup, GroupAccess][]) {
    if (a.handlers.includes(handler)) return g;
  }
  return undefined;
}

const LEVEL: Record<VaultAccess, number> = { none: 0, read: 1, audit: 2, lock: 3, write: 4, prune: 5 };

/** A group's vault access in a region: the DR stack's handlers only ever read. */
export function vaultAccessIn(group: FunctionGroup, side: 'primary' | 'secondary', regionRole: 'primary' | 'dr'): VaultAccess {
  const a: VaultAccess = FUNCTION_GROUPS[group].vaults[side];
  if (regionRole === 'dr' && LEVEL[a] > LEVEL.read) return 'read';
  return a;
}

export function atLeast(a: VaultAccess, b: VaultAccess): boolean {
  return LEVEL[a] >= LEVEL[b];
}

/** The role name of a group in a region, e.g. Memvault-Primary-Retention (fixed, so the other region's bucket policy can name it). */
export function groupRoleName(stackPrefix: string, regionRole: 'primary' | 'dr', group: FunctionGroup): string {
  const pascal = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);
  return `${stackPrefix}-${regionRole === 'primary' ? 'Primary' : 'Dr'}-${pascal(group)}`;
}

/**
 * Handlers that run a driver's data path (export, restore, validate) and so
 * load its client library (pg, redis, mongodb). Every other handler uses a
 * driver only for its settings and mode, or kinds whose only library is the
 * AWS SDK (s3-prefix partitions, service snapshots, ssm-config), so its bundle
 * leaves every driver library out.
 */
export const DRIVER_HANDLERS: readonly string[] = ['export-stream', 'restore-component', 'promote-restore', 'validate-restore', 'cleanup-restore'];

/** The component kinds whose driver libraries a handler's bundle must contain, given the kinds in config. */
export function kindsRunBy(handler: string, configKinds: Iterable<string>): string[] {
  return DRIVER_HANDLERS.includes(handler) ? [...new Set(configKinds)].sort() : [];
}
