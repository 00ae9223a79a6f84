// Restore planning and execution.
//
// Planning reads the authenticated catalog (core/catalog.ts: only backups that
// open count; names that do not are never chosen):
//   latest         newest backup of each chosen component; refused, naming the
//                  missing backup, when the vault's head or this machine's memory
//                  shows a newer one was deleted (choose one with --backup)
//   backup ID      that backup (its component)
//   at TIME        per component, the newest backup at or before TIME; the
//                  spread between the chosen backups' times is reported as skew
// Execution restores each component into <target>/<component>, each file
// checked chunk by chunk and by SHA-256 before it is renamed into place, then
// runs the driver's validation and measures the recovery time.
//
// Target check (checkRestoreTarget), the same for the CLI and the restore state
// machine: symlinks in the target path are resolved (realpath of the deepest
// existing ancestor); the state machine's target must lie inside the sandbox
// unless the input says "outsideSandbox": true (the CLI's --target is the
// operator's explicit choice); and, except for an in-place restore (staged,
// after a safety backup), neither the target root nor any <target>/<component>
// may be, contain or be inside a component's live data (its configured path).
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Vault } from './vault.ts';
import type { ManifestRef } from './manifest.ts';
import { readCatalog, problemsOf } from './catalog.ts';
import type { ComponentConfig, MemvaultConfig } from './config.ts';
import { resolvePath } from './config.ts';
import type { Storage, Clock } from './ports.ts';
import type { Driver, Logger, ValidationReport } from '../components/types.ts';
import { IntegrityError, NotFoundError, PermanentError, UsageError } from './errors.ts';
import { checkRoomForRestore, restoresIntoDirectory } from './space.ts';
import { runRecoveryChecks } from '../components/checks.ts';
import { report } from '../components/types.ts';
import { runAfterHooks, runBeforeHooks } from '../components/hooks.ts';
import { sanitizeRestored } from '../components/mask-run.ts';
import type { MaskOutcome } from './mask.ts';
import { continuousOf } from './continuous.ts';
import { chooseSqliteBase } from '../components/sqlite-wal.ts';
import { parseManifestKey } from './manifest.ts';
import { choosePgBase, isPhysicalComponent } from '../components/pg-physical-plan.ts';

/** The config file a restore_command reads (physical postgres restores run the memvault CLI's wal-fetch). */
export function requireConfigFile(cfg: MemvaultConfig, component: string): string {
  if (!cfg.file) throw new UsageError(`${component}: a physical PostgreSQL restore runs \`memvault wal-fetch --config FILE\` as restore_command, and this configuration was not loaded from a file`);
  return cfg.file;
}

export type RestoreSelector =
  | { mode: 'latest' }
  | { mode: 'backup'; backupId: string }
  | { mode: 'point-in-time'; at: Date };

export interface RestorePlanItem {
  component: string;
  ref: ManifestRef;
}

export interface RestorePlan {
  items: RestorePlanItem[];
  /** Largest time difference between the chosen backups (point-in-time consistency across components). */
  skewMs: number;
  /** Damage and broken links in the chosen components' histories (the plan avoids them). */
  warnings: string[];
}

function describe(refs: ManifestRef[]): string {
  return refs.slice(0, 10).map((r) => `${r.id} (${r.component}, ${r.time.toISOString()})`).join(', ') + (refs.length > 10 ? `, ... ${refs.length - 10} more` : '');
}

export async function planRestore(vault: Vault, sel: RestoreSelector, components: string[] | undefined, configured: string[]): Promise<RestorePlan> {
  const storage = vault.storage;
  const cat = await readCatalog(vault);
  const catalog = cat.entries;
  const present = [...new Set(catalog.map((r) => r.component))];
  const known = new Set([...configured, ...present]);
  for (const c of components ?? []) {
    if (!known.has(c)) throw new UsageError(`unknown component "${c}"; components: ${[...known].sort().join(', ') || '(none)'}`);
  }
  if (catalog.length === 0) {
    const damage = cat.damaged.length ? `; ${cat.damaged.length} object(s) under manifests/ do not open as backups of this vault (run \`memvault verify\`)` : '';
    throw new NotFoundError(`${storage.url} holds no backups yet${damage}`);
  }
  const items: RestorePlanItem[] = [];

  if (sel.mode === 'backup') {
    const ref = catalog.find((r) => r.id === sel.backupId);
    if (!ref) {
      const bad = cat.damaged.find((d) => d.key.endsWith(`.${sel.backupId}`));
      if (bad) throw new IntegrityError(`backup "${sel.backupId}" cannot be restored from ${storage.url}: ${bad.key} ${bad.problem}`, bad.key);
      throw new NotFoundError(`no backup with id "${sel.backupId}" in ${storage.url}; newest backups: ${describe(catalog)}`);
    }
    if (components && components.length > 0 && !components.includes(ref.component)) {
      throw new UsageError(`backup ${sel.backupId} is of component ${ref.component}, not ${components.join(', ')}`);
    }
    return { items: [{ component: ref.component, ref }], skewMs: 0, warnings: problemsOf(cat, ref.component) };
  }

  const chosen = components && components.length > 0 ? components : present.sort();
  const warnings: string[] = [];
  for (const c of chosen) {
    const refs = catalog.filter((r) => r.component === c);
    if (refs.length === 0) throw new NotFoundError(`component ${c} has no backups in ${storage.url}; components with backups: ${present.join(', ')}`);
    warnings.push(...problemsOf(cat, c));
    if (sel.mode === 'latest') {
      // "Latest" must not silently mean "the newest one an attacker left".
      const gone = cat.chain.find((p) => p.component === c && (p.problem === 'missing-newest' || p.problem === 'rolled-back'));
      if (gone) {
        throw new IntegrityError(`component ${c}: ${gone.detail}. The newest backup that opens is ${refs[0].id} (${refs[0].time.toISOString()}); to restore it, ask for it by id: --backup ${refs[0].id} (state machine: {"mode":"backup","backupId":"${refs[0].id}"})`);
      }
      items.push({ component: c, ref: refs[0] });
    } else {
      const ref = refs.find((r) => r.time.getTime() <= sel.at.getTime());
      if (!ref) {
        const first = refs[refs.length - 1];
        throw new NotFoundError(`component ${c} has no backup at or before ${sel.at.toISOString()}; its first backup is ${first.id} at ${first.time.toISOString()}`);
      }
      items.push({ component: c, ref });
    }
  }
  const times = items.map((i) => i.ref.time.getTime());
  return { items, skewMs: times.length ? Math.max(...times) - Math.min(...times) : 0, warnings };
}

/**
 * Continuous sqlite components restored with --latest or --at: the base is the newest
 * snapshot (a backup recording its WAL position) at or before the time, and the driver
 * replays the shipped WAL up to it. Rewrites those items of the plan; returns their
 * target options (continuousUntil: ISO time or "latest").
 */
export async function planContinuousItems(vault: Vault, cfg: MemvaultConfig, plan: RestorePlan, sel: RestoreSelector, side: 'primary' | 'secondary' = 'primary'): Promise<TargetOptions> {
  const out: TargetOptions = {};
  for (const item of plan.items) {
    const c = cfg.components[item.component];
    if (c?.kind === 'postgres' && isPhysicalComponent(c)) {
      // Physical base backups: the newest that ended at or before the time, then the archived WAL replayed
      // by the server itself through restore_command (this config's wal-fetch, same vault). A backup
      // chosen by id is recovered to the end of that backup (its consistent point).
      const walOptions = { walConfig: requireConfigFile(cfg, item.component), walFrom: side };
      if (sel.mode === 'backup') { out[item.component] = { ...walOptions, continuousUntil: 'immediate' }; continue; }
      const at = sel.mode === 'point-in-time' ? sel.at : null;
      const base = await choosePgBase(vault, item.component, at);
      item.ref = parseManifestKey(base.key)!;
      out[item.component] = { ...walOptions, continuousUntil: at ? at.toISOString() : 'latest' };
      continue;
    }
    if (sel.mode === 'backup') continue;
    if (!c || c.kind !== 'sqlite' || !continuousOf(c)) continue;
    const at = sel.mode === 'point-in-time' ? sel.at : null;
    const base = await chooseSqliteBase(vault, item.component, at);
    item.ref = parseManifestKey(base.key)!;
    out[item.component] = { continuousUntil: at ? at.toISOString() : 'latest' };
  }
  return out;
}

export interface ComponentRestoreResult {
  component: string;
  backupId: string;
  backupTime: string;
  location: string;
  bytes: number;
  entries: number;
  validation: ValidationReport;
  durationMs: number;
  /** A sanitized restore (--sanitize) of a component with mask rules: what each rule changed. */
  masking?: MaskOutcome | null;
  /** Point-in-time restores of continuous components: the newest commit restored. */
  recoveryPoint?: string;
  /** How the data reached the target, where the driver has more than one way (redis: rdb-sync or restore). */
  method?: string;
}

export interface RestoreResult {
  target: string;
  from: string;
  skewMs: number;
  components: ComponentRestoreResult[];
  /** Wall time from start of the restore to validated data. */
  recoveryTimeMs: number;
  ok: boolean;
}

export interface RestoreDeps {
  cfg: MemvaultConfig;
  vault: Vault;
  driverFor(kind: string): Driver<any>;
  log: Logger;
  clock?: Clock;
}

export async function isNonEmptyDir(p: string): Promise<boolean> {
  try {
    return (await fs.readdir(p)).length > 0;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    if ((err as NodeJS.ErrnoException).code === 'ENOTDIR') throw new UsageError(`restore target ${p} is not a directory`);
    throw err;
  }
}

/** Restores one planned item into <targetRoot>/<component>. */
export async function restoreItem(deps: RestoreDeps, item: RestorePlanItem, targetRoot: string, options?: Record<string, unknown>, sanitize = false): Promise<ComponentRestoreResult> {
  const t0 = Date.now();
  const manifest = await deps.vault.readManifestHeader(item.ref);
  const settings = deps.cfg.components[item.component] ?? { kind: manifest.kind, critical: false, timezone: 'UTC', scheduleType: 'incremental', retention: {} };
  const driver = deps.driverFor(manifest.kind);
  const dir = path.join(targetRoot, item.component);
  const resolve = (p: string) => resolvePath(deps.cfg, p);
  // Room first: a restore that cannot fit fails before it writes anything.
  if (restoresIntoDirectory(manifest.kind, options)) await checkRoomForRestore(item.component, manifest, dir);
  const hookCtx = { component: item.component, kind: manifest.kind, location: dir };
  await runBeforeHooks(settings as ComponentConfig, 'beforeRestore', hookCtx);
  deps.log.info('restore started', { component: item.component, backupId: manifest.id, target: dir });
  let r;
  try {
    r = await driver.restore({ component: item.component, settings: settings as never, manifest, vault: deps.vault, target: { dir, options }, resolve, log: deps.log });
  } catch (err) {
    const failed = await runAfterHooks(settings as ComponentConfig, 'afterRestore', { ...hookCtx, result: 'failed' });
    if (failed.length) deps.log.warn('afterRestore hooks failed after a failed restore', { component: item.component, failed });
    throw err;
  }
  // --sanitize: validated against the backup, then masked, before anything else reads the target.
  const masking = sanitize
    ? await sanitizeRestored({ driver, component: item.component, settings: settings as ComponentConfig, manifest, target: { dir, options }, location: r.location, vault: deps.vault, resolve, log: deps.log, ...(driver.isNetworkTarget?.(options) ? {} : { directory: dir }) })
    : null;
  let validation = await driver.validate({ component: item.component, settings: settings as never, manifest, vault: deps.vault, target: { dir, options }, location: r.location, resolve, log: deps.log, ...(masking ? { masked: masking } : {}) });
  if (masking) validation = report([...validation.checks, { name: `masking: ${masking.rules.length} rule(s) applied after ${masking.validatedBeforeMasking} checks against the backup passed`, ok: true, actual: masking.note }]);
  // The component's recovery checks (config checks:), on the restored data, after the driver's own.
  const checks = deps.cfg.components[item.component]?.checks ?? [];
  if (checks.length > 0) {
    const ran = await runRecoveryChecks({ component: item.component, kind: manifest.kind, location: r.location, options }, checks);
    validation = report([...validation.checks, ...ran]);
  }
  // After-hooks (restart the service), then their failures fail the restore like a failed check.
  const hooksFailed = await runAfterHooks(settings as ComponentConfig, 'afterRestore', { ...hookCtx, location: r.location, result: validation.ok ? 'ok' : 'failed' });
  if (hooksFailed.length) validation = report([...validation.checks, ...hooksFailed.map((f) => ({ name: 'afterRestore hook', ok: false, expected: 'success', actual: f }))]);
  const durationMs = Date.now() - t0;
  deps.log.info('restore finished', { component: item.component, backupId: manifest.id, ok: validation.ok, durationMs });
  return {
    component: item.component, backupId: manifest.id, backupTime: manifest.startedAt, location: r.location,
    bytes: r.bytes, entries: r.entries, validation, durationMs, ...(sanitize ? { masking } : {}), ...(r.recoveryPoint ? { recoveryPoint: r.recoveryPoint } : {}),
    ...(r.method ? { method: r.method } : {}),
  };
}

/** Per-component driver target options, e.g. { 'memory-db': { url: 'postgres://...' } }. */
export type TargetOptions = Record<string, Record<string, unknown>>;

/**
 * Parses `--target-option [COMPONENT:]KEY=VALUE` arguments. Without a
 * component the option applies to every restored component. VALUE is read as
 * JSON when it parses (true, 5, ["a"]), else as a string.
 */
export function parseTargetOptions(args: string[], components: string[]): TargetOptions {
  const out: TargetOptions = {};
  for (const arg of args) {
    const m = /^(?:([a-z0-9][a-z0-9_-]*):)?([A-Za-z][A-Za-z0-9_.-]*)=(.*)$/s.exec(arg);
    if (!m) throw new UsageError(`--target-option: expected [COMPONENT:]KEY=VALUE, e.g. memory-db:url=postgres://localhost/restored, got "${arg}"`);
    const [, component, key, raw] = m;
    if (component && !components.includes(component)) {
      throw new UsageError(`--target-option ${arg}: "${component}" is not restored here; restored components: ${components.join(', ')}`);
    }
    let value: unknown = raw;
    try { value = JSON.parse(raw); } catch { /* a plain string */ }
    for (const c of component ? [component] : components) (out[c] ??= {})[key] = value;
  }
  return out;
}

export async function restorePlan(deps: RestoreDeps, plan: RestorePlan, target: string, force: boolean, options: TargetOptions = {}, sanitize = false): Promise<RestoreResult> {
  const t0 = Date.now();
  const targetRoot = path.resolve(target);
  await checkRestoreTarget(deps.cfg, { root: targetRoot, components: plan.items.map((i) => i.component), field: '--target' });
  if (!force && (await isNonEmptyDir(targetRoot))) {
    throw new UsageError(`restore target ${targetRoot} is not empty; choose an empty directory or pass --force to write into it`);
  }
  await fs.mkdir(targetRoot, { recursive: true, mode: 0o700 });
  const results: ComponentRestoreResult[] = [];
  for (const item of plan.items) {
    const o = options[item.component];
    results.push(await restoreItem(deps, item, targetRoot, force ? { force: true, ...o } : o, sanitize));
  }
  return {
    target: targetRoot,
    from: deps.vault.storage.url,
    skewMs: plan.skewMs,
    components: results,
    recoveryTimeMs: Date.now() - t0,
    ok: results.every((r) => r.validation.ok),
  };
}

export function parseAt(s: string): Date {
  const d = new Date(s);
  if (Number.isNaN(d.getTime()) || !/^\d{4}-\d{2}-\d{2}/.test(s)) {
    throw new UsageError(`--at: expected an ISO time like 2026-01-01T14:30:00Z, got "${s}"`);
  }
  return d;
}

/**
 * `p` with its symlinks resolved: the realpath of its deepest existing ancestor, joined with
 * the rest (which does not exist yet, or is a dangling link, which a restore replaces and
 * never follows).
 */
export async function resolveExisting(p: string): Promise<string> {
  const abs = path.resolve(p);
  const rest: string[] = [];
  for (let cur = abs; ; cur = path.dirname(cur)) {
    try {
      return path.join(await fs.realpath(cur), ...rest.reverse());
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if ((code !== 'ENOENT' && code !== 'ENOTDIR') || path.dirname(cur) === cur) throw err;
      rest.push(path.basename(cur));
    }
  }
}

function inside(child: string, parent: string): boolean {
  return child !== parent && child.startsWith(parent.endsWith(path.sep) ? parent : parent + path.sep);
}

export interface RestoreTargetRequest {
  /** The target root (absolute): components go to <root>/<component>. */
  root: string;
  /** Components restored under it. */
  components: string[];
  /** The input field named in messages: "--target", "restore input: target.dir". */
  field: string;
  /** The state machine: the sandbox the target must resolve inside. Unset for the CLI. */
  sandbox?: string;
  /** The operator's explicit "outsideSandbox": true. */
  outsideSandbox?: boolean;
}

/**
 * The restore target check shared by the CLI (restorePlan) and the restore state machine
 * (validate-restore-input, plan-restore, plan-drill, restore-component). Throws a UsageError
 * naming the field, the component and the path, and the fix; returns the resolved root.
 */
export async function checkRestoreTarget(cfg: MemvaultConfig, req: RestoreTargetRequest): Promise<string> {
  const root = await resolveExisting(req.root);
  const shown = (p: string, real: string) => (p === real ? p : `${p} (${real})`);
  if (req.sandbox !== undefined && !req.outsideSandbox) {
    const sandbox = await resolveExisting(req.sandbox);
    if (root !== sandbox && !inside(root, sandbox)) {
      throw new UsageError(`${req.field}: ${shown(req.root, root)} is outside the sandbox ${sandbox}; restore into a directory inside it, e.g. "target": {"dir": "${path.join(sandbox, 'my-restore')}"}, or, to restore outside the sandbox on purpose, set "target": {"dir": "${req.root}", "outsideSandbox": true}`);
    }
  }
  const live: { name: string; path: string; real: string }[] = [];
  for (const [name, c] of Object.entries(cfg.components)) {
    if (typeof c.path !== 'string') continue;
    const p = resolvePath(cfg, c.path);
    live.push({ name, path: p, real: await resolveExisting(p) });
  }
  // Each <root>/<component> first (the more precise message; a link there may lead to live data
  // that the root does not contain), then the root.
  const targets: { what: string; real: string }[] = [];
  for (const c of req.components) {
    const dir = path.join(req.root, c);
    const real = await resolveExisting(dir);
    targets.push({ what: `the restore target of ${c}, ${shown(dir, real)},`, real });
  }
  targets.push({ what: `the restore target ${shown(req.root, root)}`, real: root });
  for (const t of targets) {
    for (const l of live) {
      const relation = t.real === l.real ? 'is' : inside(t.real, l.real) ? 'is inside' : inside(l.real, t.real) ? 'contains' : null;
      if (!relation) continue;
      const fix = req.sandbox !== undefined
        ? 'restore into an empty directory elsewhere, or restore in place with "target": {"inPlace": true} (staged, after a safety backup)'
        : 'restore into an empty directory elsewhere, or restore in place through the restore state machine (memvault run restore --input \'{"mode":"latest","target":{"inPlace":true}}\'), which takes a safety backup first';
      throw new UsageError(`${req.field}: ${t.what} ${relation} the live data of ${l.name} (components.${l.name}.path: ${shown(l.path, l.real)}); ${fix}`);
    }
  }
  return root;
}
