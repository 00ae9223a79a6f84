// Cooperative vault locks, after restic's: runs that add to a vault (backup,
// replicate into it or out of it) take shared locks; prune takes an exclusive
// one. Each side writes its lock object first and then lists the others, so of
// two racing parties at least one sees the other and backs off.
//
// A lock has a bounded lifetime: its holder rewrites it every `staleMs / 6`;
// one not rewritten for `staleMs`, one dated in the future (beyond a small
// clock skew), one of a process on this host that no longer runs, and one that
// is not a lock at all are dead, ignored and removed by the next run that
// looks. A holder that was paused (or lost its lock object to such a clean-up)
// knows it: `held()` turns false, and the holder re-checks what it relied on
// (a backup re-lists the chunks it skipped; prune stops deleting).
//
// On Lambda a holder cannot outlive its invocation: at the deadline Lambda
// kills it, and no refresh or release follows. So a lock taken during an
// invocation also records `expires` = the invocation's deadline (from the
// Lambda context, set per invocation by handlers/deps.ts) + LOCK_DEADLINE_MARGIN_MS,
// and is dead from then on however recently it was refreshed. No lock taken on
// Lambda lives longer than MAX_LAMBDA_LOCK_LIFETIME_MS: the LockedError Retry
// of every state machine task waits at least that long in total (checked by
// test/statemachines/asl.test.ts), so a waiting task outlasts the lock of a
// timed-out invocation instead of failing while it is still there.
import os from 'node:os';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import type { Storage } from './ports.ts';
import { IntegrityError, LockedError, NotFoundError } from './errors.ts';

export type LockKind = 'backup' | 'replicate' | 'prune';

export interface LockDoc {
  kind: LockKind;
  id: string;
  host: string;
  pid: number;
  time: string;
  /** Dead from this time on whatever its refreshes: its holder's invocation deadline + margin (Lambda). */
  expires?: string;
}

/** Locks dated further ahead than this are bogus (a clock cannot be that wrong): dead. */
export const LOCK_MAX_SKEW_MS = 5 * 60_000;
/** Default lifetime of a lock that is not refreshed. MEMVAULT_LOCK_STALE_MS overrides it. */
export const DEFAULT_LOCK_STALE_MS = 30 * 60_000;
/** A lock taken during a Lambda invocation is dead this long after the invocation's deadline (clock differences between hosts). */
export const LOCK_DEADLINE_MARGIN_MS = 60_000;
/** Lambda's longest function timeout: no invocation, and so no holder, lives longer. */
export const LAMBDA_MAX_TIMEOUT_MS = 900_000;
/** The longest any lock taken on Lambda stays alive, its holder live or dead. */
export const MAX_LAMBDA_LOCK_LIFETIME_MS = LAMBDA_MAX_TIMEOUT_MS + LOCK_DEADLINE_MARGIN_MS;

let deadline: number | undefined;

/**
 * The current invocation's deadline (epoch ms), or undefined outside one.
 * Set by the Lambda entry point (handlers/deps.ts lazyHandler) from
 * `context.getRemainingTimeInMillis()` before each invocation.
 */
export function setInvocationDeadline(ms: number | undefined): void {
  deadline = ms;
}

export function invocationDeadline(): number | undefined {
  return deadline;
}

/** Lock objects are tiny; anything bigger under locks/ is not one of ours. */
export const MAX_LOCK_BYTES = 64 * 1024;

export function lockStaleMs(): number {
  const v = process.env.MEMVAULT_LOCK_STALE_MS;
  const n = v ? Number(v) : NaN;
  return Number.isInteger(n) && n >= 1000 ? n : DEFAULT_LOCK_STALE_MS;
}

/** A lock left by a process on this host that no longer runs (e.g. killed) is dead at once. */
function deadLocalProcess(d: LockDoc): boolean {
  // Lambda sandboxes can share a host name and pid numbers: another sandbox's process is not
  // visible here, so on Lambda (and for locks taken there) only time decides.
  if (d.expires !== undefined || process.env.AWS_LAMBDA_FUNCTION_NAME) return false;
  if (d.host !== os.hostname() || d.pid === process.pid) return false;
  try {
    process.kill(d.pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
  // A killed process nobody has reaped yet (a zombie) still answers signal 0.
  try {
    const stat = readFileSync(`/proc/${d.pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
  } catch {
    return false;
  }
}

function parseLock(raw: Buffer): LockDoc | null {
  try {
    const d = JSON.parse(raw.toString('utf8')) as LockDoc;
    if (!d || typeof d !== 'object' || !['backup', 'replicate', 'prune'].includes(d.kind) || typeof d.id !== 'string'
      || typeof d.host !== 'string' || !Number.isInteger(d.pid) || Number.isNaN(Date.parse(d.time))
      || (d.expires !== undefined && (typeof d.expires !== 'string' || Number.isNaN(Date.parse(d.expires))))) return null;
    return d;
  } catch {
    return null;
  }
}

/** Why a lock is dead, or null when it is alive. */
export function deadReason(d: LockDoc, staleMs: number, now = Date.now()): string | null {
  const t = Date.parse(d.time);
  if (t > now + LOCK_MAX_SKEW_MS) return `dated in the future (${d.time})`;
  if (now - t >= staleMs) return `not refreshed since ${d.time}`;
  if (d.expires !== undefined && now >= Date.parse(d.expires)) return `its holder's invocation ended (expired at ${d.expires})`;
  if (deadLocalProcess(d)) return `its process ${d.pid} on ${d.host} is gone`;
  return null;
}

export interface LockScan {
  active: (LockDoc & { key: string })[];
  dead: { key: string; reason: string }[];
}

export async function scanLocks(storage: Storage, staleMs: number): Promise<LockScan> {
  const scan: LockScan = { active: [], dead: [] };
  for await (const o of storage.list('locks/')) {
    if (o.size > MAX_LOCK_BYTES) { scan.dead.push({ key: o.key, reason: `${o.size} bytes: not a lock` }); continue; }
    let raw: Buffer;
    try {
      raw = await storage.get(o.key, { maxBytes: MAX_LOCK_BYTES });
    } catch (err) {
      if (err instanceof NotFoundError) continue; // released while we listed
      if (err instanceof IntegrityError) { scan.dead.push({ key: o.key, reason: 'too large: not a lock' }); continue; }
      throw err;
    }
    const d = parseLock(raw);
    if (!d || o.key !== `locks/${d.kind}-${d.id}`) { scan.dead.push({ key: o.key, reason: 'not a lock' }); continue; }
    const why = deadReason(d, staleMs);
    if (why) scan.dead.push({ key: o.key, reason: why });
    else scan.active.push({ ...d, key: o.key });
  }
  return scan;
}

/** Removes dead locks; returns what was removed and why. */
export async function removeDeadLocks(storage: Storage, staleMs = lockStaleMs()): Promise<LockScan['dead']> {
  const { dead } = await scanLocks(storage, staleMs);
  for (const d of dead) await storage.delete(d.key);
  return dead;
}

export class VaultLock {
  private timer: NodeJS.Timeout | undefined;
  private lastRefresh: number;
  private lost: string | undefined;
  private constructor(private readonly storage: Storage, readonly key: string, private readonly doc: LockDoc, readonly staleMs: number) {
    this.lastRefresh = Date.parse(doc.time);
  }

  static async acquire(storage: Storage, kind: LockKind, staleMs = lockStaleMs()): Promise<VaultLock> {
    const id = randomBytes(6).toString('hex');
    const doc: LockDoc = { kind, id, host: os.hostname(), pid: process.pid, time: new Date().toISOString() };
    const end = invocationDeadline();
    if (end !== undefined) doc.expires = new Date(end + LOCK_DEADLINE_MARGIN_MS).toISOString();
    const key = `locks/${kind}-${id}`;
    await storage.put(key, Buffer.from(JSON.stringify(doc)));
    let scan: LockScan;
    try {
      scan = await scanLocks(storage, staleMs);
    } catch (err) {
      await storage.delete(key).catch(() => undefined);
      throw err;
    }
    const conflict = scan.active.find((o) => o.id !== id && (kind === 'prune' || o.kind === 'prune'));
    if (conflict) {
      await storage.delete(key);
      throw new LockedError(
        `${storage.url} is locked by a ${conflict.kind} on ${conflict.host} (pid ${conflict.pid}) since ${conflict.time}; try again when it has finished`,
      );
    }
    // Dead locks (killed runs, bogus dates, garbage) are cleared by whoever looks next.
    for (const d of scan.dead) await storage.delete(d.key).catch(() => undefined);
    const lock = new VaultLock(storage, key, doc, staleMs);
    lock.timer = setInterval(() => { void lock.refresh(); }, Math.max(500, Math.floor(staleMs / 6)));
    lock.timer.unref();
    return lock;
  }

  /** Rewrites the lock with the current time, unless it has lapsed or was removed (then it stays lost). */
  private async refresh(): Promise<void> {
    if (this.lost) return;
    if (this.lapsed()) return;
    try {
      await this.storage.get(this.key);
    } catch (err) {
      if (err instanceof NotFoundError) { this.lose('its lock object was removed'); return; }
      return; // transient: try again next time
    }
    const now = new Date();
    this.doc.time = now.toISOString();
    try {
      await this.storage.put(this.key, Buffer.from(JSON.stringify(this.doc)));
      this.lastRefresh = now.getTime();
    } catch {
      // transient: the next refresh tries again; held() turns false if none succeeds in time
    }
  }

  private lapsed(): boolean {
    // Others treat the lock as dead after staleMs; stop trusting it a little before.
    if (Date.now() - this.lastRefresh >= this.staleMs * 0.9) {
      this.lose(`it was not refreshed for ${Math.round((Date.now() - this.lastRefresh) / 1000)} s (process paused or storage unreachable)`);
    }
    return this.lost !== undefined;
  }

  private lose(why: string): void {
    this.lost ??= why;
    if (this.timer) clearInterval(this.timer);
  }

  /**
   * True while nobody can have taken the lock as dead: refreshed in time and
   * its object still there. False means what was decided under it must be
   * checked again (lostReason says why).
   */
  async held(): Promise<boolean> {
    if (this.lapsed()) return false;
    try {
      await this.storage.get(this.key);
    } catch (err) {
      if (err instanceof NotFoundError) this.lose('its lock object was removed');
      else throw err;
    }
    return this.lost === undefined;
  }

  get lostReason(): string | undefined { return this.lost; }

  async release(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.storage.delete(this.key);
  }
}
