// The vault's audit log: who did what to the vault, when, and with what result.
//
//   audit/<yyyymmddThhmmssmmmZ>-<8 hex>    one sealed JSON record per operation
//
// Append-only: every record is a new object under a name no other record has;
// nothing in memvault rewrites or deletes one (retention prunes chunks and
// forgets manifests, never audit/), and on AWS the vault bucket's policy denies
// deleting audit/ objects to every principal. Authenticated: a record is sealed
// with the vault's data key and bound to its object name (AES-GCM, as manifests
// are), so an edited, forged or renamed record fails to open and `memvault audit`
// names it; a record that was never written (an operation whose recording
// failed) leaves a warning in the operation's own log.
//
// Recording never fails the operation it records: a restore that worked stays a
// restore that worked when its record cannot be stored (the log says so).
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import type { Vault } from './vault.ts';
import type { Logger } from '../components/types.ts';
import { errorMessage } from './errors.ts';

export const AUDIT_PREFIX = 'audit/';

export const AUDIT_OPS = ['init', 'backup', 'restore', 'drill', 'verify', 'retention', 'replicate', 'key-add', 'key-remove', 'key-rotate'] as const;
export type AuditOp = (typeof AUDIT_OPS)[number];
export type AuditResult = 'ok' | 'partial' | 'failed';

export interface AuditRecord {
  op: AuditOp;
  result: AuditResult;
  /** Who: MEMVAULT_ACTOR, else the Lambda function (and execution), else user@host. */
  actor: string;
  /** When the operation started and ended (ISO). */
  startedAt: string;
  endedAt: string;
  /** The components it touched (empty for whole-vault operations: verify, replicate, keys). */
  components: string[];
  /** Backups it made, restored, forgot or checked. */
  backupIds: string[];
  /** What went wrong, when result is not ok. */
  error?: string;
  /** Small operation-specific facts (target, counts, key ids); capped in size. */
  details?: Record<string, unknown>;
}

export interface StoredAuditRecord extends AuditRecord {
  key: string;
}

/** Largest serialized record; long error lists and details are cut to fit (MAX_RECORD_BYTES is 64 KiB). */
const MAX_RECORD_JSON = 32 * 1024;
const MAX_ERROR = 4000;
const MAX_IDS = 200;

/** The actor of this process: who the audit log says did it. */
export function auditActor(env: NodeJS.ProcessEnv = process.env, executionId?: string): string {
  if (env.MEMVAULT_ACTOR) return env.MEMVAULT_ACTOR;
  if (env.AWS_LAMBDA_FUNCTION_NAME) return `lambda:${env.AWS_LAMBDA_FUNCTION_NAME}${executionId ? ` for ${executionId}` : ''}`;
  let user = 'unknown';
  try { user = os.userInfo().username; } catch { /* no passwd entry (containers) */ }
  return `${user}@${os.hostname()}${executionId ? ` for ${executionId}` : ''}`;
}

function stamp(d: Date): string {
  return d.toISOString().replace(/[-:]/g, '').replace('.', '');
}

export function auditKey(at: Date): string {
  return `${AUDIT_PREFIX}${stamp(at)}-${randomBytes(4).toString('hex')}`;
}

const KEY_RE = /^audit\/(\d{8}T\d{9}Z)-[0-9a-f]{8}$/;

function bounded(r: AuditRecord): AuditRecord {
  const out: AuditRecord = {
    ...r,
    components: r.components.slice(0, MAX_IDS),
    backupIds: r.backupIds.slice(0, MAX_IDS),
    ...(r.error !== undefined ? { error: r.error.length > MAX_ERROR ? `${r.error.slice(0, MAX_ERROR)}… (cut)` : r.error } : {}),
  };
  if (out.details && JSON.stringify(out).length > MAX_RECORD_JSON) out.details = { cut: `details larger than ${MAX_RECORD_JSON} bytes left out` };
  return out;
}

/** Writes one record; returns its key. Throws when the vault cannot store it (see recordAudit). */
export async function writeAudit(vault: Vault, r: AuditRecord): Promise<string> {
  const key = auditKey(new Date(r.endedAt));
  await vault.writeSealedJson(key, bounded(r));
  return key;
}

/**
 * Writes one record, never throwing: the operation it records has happened
 * whatever becomes of the record. Returns the key, or null (logged) when it
 * could not be stored. The DR stack's functions (MEMVAULT_REGION_ROLE=dr) may
 * only read the vaults and record nothing; CloudTrail's data events on the
 * vault buckets record their reads.
 */
export async function recordAudit(vault: Vault, r: Omit<AuditRecord, 'actor'> & { actor?: string }, log?: Logger, env: NodeJS.ProcessEnv = process.env): Promise<string | null> {
  if (env.MEMVAULT_REGION_ROLE === 'dr') return null;
  try {
    return await writeAudit(vault, { ...r, actor: r.actor ?? auditActor(env) });
  } catch (err) {
    log?.warn('audit record not stored', { vault: vault.storage.url, op: r.op, result: r.result, error: errorMessage(err) });
    return null;
  }
}

export interface AuditQuery {
  since?: Date;
  until?: Date;
  op?: AuditOp;
  component?: string;
}

export interface AuditLog {
  vault: string;
  /** Records that opened, oldest first. */
  records: StoredAuditRecord[];
  /** Objects under audit/ that failed to open or are not records: tampering or damage, by name. */
  damaged: { key: string; error: string }[];
}

/** Reads the audit log: every record authenticated; what fails is reported by name, not skipped silently. */
export async function readAudit(vault: Vault, q: AuditQuery = {}): Promise<AuditLog> {
  const keys: string[] = [];
  const damaged: AuditLog['damaged'] = [];
  for await (const o of vault.storage.list(AUDIT_PREFIX)) {
    if (/\.tmp-[0-9a-f]{12}$/.test(o.key)) continue;
    const m = KEY_RE.exec(o.key);
    if (!m) {
      damaged.push({ key: o.key, error: 'not an audit record name (planted or damaged)' });
      continue;
    }
    keys.push(o.key);
  }
  keys.sort();
  const records: StoredAuditRecord[] = [];
  for (const key of keys) {
    let r: AuditRecord;
    try {
      r = (await vault.readSealedJson(key)) as AuditRecord;
    } catch (err) {
      damaged.push({ key, error: `fails authentication: ${errorMessage(err)}` });
      continue;
    }
    if (!r || typeof r !== 'object' || !AUDIT_OPS.includes(r.op) || typeof r.endedAt !== 'string' || !Array.isArray(r.components)) {
      damaged.push({ key, error: 'opens but is not an audit record' });
      continue;
    }
    const ended = new Date(r.endedAt);
    if (q.since && ended < q.since) continue;
    if (q.until && ended > q.until) continue;
    if (q.op && r.op !== q.op) continue;
    if (q.component && !r.components.includes(q.component)) continue;
    records.push({ ...r, key });
  }
  return { vault: vault.storage.url, records, damaged };
}

/** One line per record, for the CLI. */
export function formatAuditRecord(r: StoredAuditRecord): string {
  const what = [r.components.length ? r.components.join(',') : null, r.backupIds.length ? `backups ${r.backupIds.slice(0, 5).join(',')}${r.backupIds.length > 5 ? ` (+${r.backupIds.length - 5})` : ''}` : null]
    .filter(Boolean).join(' ');
  const secs = ((Date.parse(r.endedAt) - Date.parse(r.startedAt)) / 1000).toFixed(1);
  return `${r.endedAt}  ${r.op.padEnd(10)} ${r.result.padEnd(7)} ${r.actor}  ${what}${what ? '  ' : ''}${secs}s${r.error ? `  error: ${r.error}` : ''}`;
}
