// Named errors. The class name is the error type that ASL Retry/Catch match on,
// so it must survive bundling: every class sets `name` explicitly.
//
// Two families: RetryableError (throttling, transient I/O, a snapshot still being
// created) and PermanentError (bad input, missing key, corrupt data). Only the
// first is ever retried, by the caller or by the state machine.

export class MemvaultError extends Error {
  /** Exit code for the CLI: 1 failure, 2 bad usage or bad config. */
  readonly exitCode: number = 1;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'MemvaultError';
  }
}

export class RetryableError extends MemvaultError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RetryableError';
  }
}

export class PermanentError extends MemvaultError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PermanentError';
  }
}

/** Bad configuration or bad input: names the field and what is wrong. */
export class ConfigError extends PermanentError {
  override readonly exitCode = 2;
  readonly problems: string[];
  constructor(problems: string[] | string) {
    const list = Array.isArray(problems) ? problems : [problems];
    super(list.length === 1 ? list[0] : `${list.length} problems:\n  ${list.join('\n  ')}`);
    this.name = 'ConfigError';
    this.problems = list;
  }
}

export class UsageError extends PermanentError {
  override readonly exitCode = 2;
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** A requested thing (component, backup, object) does not exist. */
export class NotFoundError extends PermanentError {
  constructor(message: string) {
    super(message);
    this.name = 'NotFoundError';
  }
}

/** Stored data failed authentication or its checksum. */
export class IntegrityError extends PermanentError {
  readonly objectKey: string | undefined;
  constructor(message: string, objectKey?: string) {
    super(message);
    this.name = 'IntegrityError';
    this.objectKey = objectKey;
  }
}

/** The key cannot open this vault. Nothing is written after this. */
export class WrongKeyError extends PermanentError {
  constructor(message: string) {
    super(message);
    this.name = 'WrongKeyError';
  }
}

/** Another process holds a conflicting vault lock (backup vs prune). */
export class LockedError extends RetryableError {
  constructor(message: string) {
    super(message);
    this.name = 'LockedError';
  }
}

/** A backup's chunks were pruned while it ran without a valid lock: nothing recorded; run it again. */
export class BackupRacedError extends RetryableError {
  constructor(message: string) {
    super(message);
    this.name = 'BackupRacedError';
  }
}

/** The destination region already has the maximum of concurrent cross-region snapshot copies. Retryable. */
export class SnapshotCopyLimitError extends RetryableError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SnapshotCopyLimitError';
  }
}

/** The instance/cluster/snapshot is in a state that forbids the call now (stopped, already snapshotting, modifying). Retryable. */
export class SourceBusyError extends RetryableError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SourceBusyError';
  }
}

/** The storage backend failed in a way a retry can fix (5xx, throttling, reset). */
export class TransientStorageError extends RetryableError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TransientStorageError';
  }
}

/** A service-side job (snapshot, copy) is still running; poll again later. */
export class NotReadyError extends RetryableError {
  constructor(message: string) {
    super(message);
    this.name = 'NotReadyError';
  }
}

/** A service is throttling us. */
export class ThrottledError extends RetryableError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ThrottledError';
  }
}

/**
 * Every retryable class, the one list the state machines' Retry rules are
 * checked against (test/statemachines/asl.test.ts reads the ASL files and
 * fails naming the state machine, the state and the missing name). A class
 * above that extends RetryableError but is missing here fails that test too:
 * it compares this list with the module's exports.
 */
export const RETRYABLE_ERRORS = [
  RetryableError, LockedError, BackupRacedError, SnapshotCopyLimitError, SourceBusyError, TransientStorageError, NotReadyError, ThrottledError,
] as const;

/** The ASL error names of RETRYABLE_ERRORS (each class's `name`, as a Lambda failure reports it). */
export const RETRYABLE_ERROR_NAMES: readonly string[] = RETRYABLE_ERRORS.map((C) => new C('').name);

/**
 * The cause of an execution that ends failed after its failure was alerted
 * (send-alert's `cause`, finish-backup-run's and check-rpo's summaries) starts
 * with this. The EventBridge failure rule (infra/constructs/alerts.ts) skips
 * such executions, so one failure is one alert; an execution that fails
 * without it (a timeout, an abort, a failed alert step, a missing Catch) is
 * alerted by the rule instead.
 */
export const ALERTED_CAUSE_PREFIX = '[alerted] ';

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function isRetryable(err: unknown): boolean {
  return err instanceof RetryableError;
}
