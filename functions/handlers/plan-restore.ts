// plan-restore: which backup of which component goes where. Reads only the
// catalog of the chosen vault (primary, or the secondary in the DR region):
// latest | backup id | newest at or before a point in time, per component,
// with the time skew between the chosen backups. Each item carries its
// target: <sandbox>/restore-<execution>/<component> by default, or under
// target.dir (checked as the CLI's --target is, and inside the sandbox unless
// outsideSandbox), or for an in-place restore a staging directory next to the
// live data (promoted after validation). Target options with a password in
// a URL are refused here too (validate-restore-input refuses them first): the
// plan is the next state's input and stays in the execution history.
// live data (promoted after validation).
//
// Items of a snapshot kind without target options restore into a new
// instance/cluster <source>-restore-<yyyymmddhhmm> (never the source), said
// in the item's note. On AWS every other item must name a network target in
// its options (a database, a bucket prefix...): a directory would be one
// Lambda function's /tmp, gone before validation; such a restore is refused
// here with the target fields of each kind, and no directory is made.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { planRestore, planContinuousItems, isNonEmptyDir, checkRestoreTarget, type RestoreSelector } from '../core/restore.ts';
import { resolvePath } from '../core/config.ts';
import { UsageError } from '../core/errors.ts';
import { passwordsInUrls } from '../adapters/secrets.ts';
import { isNetworkItem, onAws } from './restore-common.ts';
import { type HandlerDeps, invocationLog, json, lazyHandler, parseEvent, traced } from './deps.ts';

export const planRestoreInput = z.object({
  request: z.object({
    mode: z.enum(['latest', 'backup', 'point-in-time']),
    backupId: z.string().nullable(),
    at: z.string().nullable(),
    components: z.array(z.string()),
    from: z.enum(['primary', 'secondary']),
    /** A sanitized restore: items carry sanitize (never in place). @default false */
    sandbox: z.boolean().default(false),
    target: z.object({ dir: z.string().nullable(), inPlace: z.boolean(), force: z.boolean(), outsideSandbox: z.boolean().default(false), options: z.record(z.string(), z.record(z.string(), z.unknown())).optional() }),
  }),
  executionName: z.string().optional(),
  ...traced,
});

export interface RestoreItem {
  component: string;
  backupId: string;
  manifestKey: string;
  backupTime: string;
  from: 'primary' | 'secondary';
  /** Directory the driver restores into. */
  targetDir: string;
  inPlace: boolean;
  /** In place: the live path the restored data replaces. */
  live: string | null;
  /** Driver target options (e.g. the new instance of a snapshot restore). @default null */
  options?: Record<string, unknown> | null;
  /** A verify-drill item. */
  drill?: boolean;
  /** What the plan chose on the operator's behalf (a derived new instance id), '' when nothing. */
  note?: string;
  /** Apply the component's mask rules (drills, sandbox restores; never in place). */
  sanitize?: boolean;
}

export interface RestorePlanOutput {
  from: 'primary' | 'secondary';
  vault: string;
  inPlace: boolean;
  /** Sandbox root (null in place). */
  targetRoot: string | null;
  skewMs: number;
  components: string[];
  items: RestoreItem[];
}

export function sandboxRoot(deps: HandlerDeps): string {
  return deps.cfg.sandbox ? resolvePath(deps.cfg, deps.cfg.sandbox) : path.join(deps.cfg.baseDir, 'sandbox');
}

export function safeName(s: string | undefined, deps: HandlerDeps): string {
  return (s ?? deps.clock.now().toISOString()).replace(/[^A-Za-z0-9_.-]/g, '-').slice(0, 80);
}

export function makeHandler(deps: HandlerDeps) {
  return async (event: unknown): Promise<RestorePlanOutput> => {
    const e = parseEvent(planRestoreInput, event, 'plan-restore input');
    const log = invocationLog(deps, 'plan-restore', e);
    const r = e.request;
    const passwords = passwordsInUrls(r.target.options ?? {}, 'target.options');
    if (passwords.length) throw new UsageError(`restore input: ${passwords.join('; ')}`);
    if (r.sandbox && r.target.inPlace) throw new UsageError('restore input: sandbox: a sanitized sandbox restore cannot be in place; ask for one or the other');
    const vault = await deps.openVault(r.from);
    const sel: RestoreSelector = r.mode === 'latest' ? { mode: 'latest' } : r.mode === 'backup' ? { mode: 'backup', backupId: r.backupId! } : { mode: 'point-in-time', at: new Date(r.at!) };
    const plan = await planRestore(vault, sel, r.components.length ? r.components : undefined, Object.keys(deps.cfg.components));
    // Continuous components (shipped SQLite WAL): the base snapshot, and the WAL replayed up to the time.
    const continuous = await planContinuousItems(vault, deps.cfg, plan, sel, r.from);
    const name = safeName(e.executionName, deps);
    // As with the CLI's --force, force reaches the drivers (replace what is in the way in the target).
    const problems: string[] = [];
    const targets = new Map<string, { options: Record<string, unknown> | null; note: string; network: boolean }>();
    for (const i of plan.items) {
      const settings = deps.cfg.components[i.component];
      // A component no longer configured: its kind from the backup itself.
      const driver = deps.driverFor(settings?.kind ?? (await vault.readManifestHeader(i.ref)).kind);
      let options: Record<string, unknown> | null = { ...(r.target.force ? { force: true } : {}), ...r.target.options?.[i.component], ...continuous[i.component] };
      let note = '';
      if (!r.target.inPlace && driver.defaultRestoreTarget && settings) {
        // Only what the input left out (a snapshot kind's new instance/cluster id).
        const d = driver.defaultRestoreTarget({ component: i.component, settings, now: deps.clock.now(), from: r.from });
        if (Object.keys(d.options).some((k) => options![k] === undefined)) {
          options = { ...d.options, ...options };
          note = d.note;
        }
      }
      if (Object.keys(options).length === 0) options = null;
      const network = isNetworkItem(driver, options);
      if (onAws(deps.cfg) && !r.target.inPlace && !network) {
        problems.push(driver.networkTargetFields
          ? `restore input: target.options.${i.component}: on AWS a ${driver.kind} restore goes to a network target, not a directory in a Lambda function's /tmp; set ${driver.networkTargetFields}`
          : `restore input: components: ${i.component} is a ${driver.kind} component, restored on the host that holds it (memvault restore), not on AWS; leave it out of "components"`);
      }
      targets.set(i.component, { options, note, network });
    }
    if (problems.length) throw new UsageError(problems.join('; '));
    let targetRoot: string | null = null;
    const needsDir = [...targets.values()].some((t) => !t.network);
    if (!r.target.inPlace && needsDir) {
      targetRoot = path.resolve(r.target.dir ? resolvePath(deps.cfg, r.target.dir) : path.join(sandboxRoot(deps), `restore-${name}`));
      const inDir = plan.items.filter((i) => !targets.get(i.component)!.network).map((i) => i.component);
      await checkRestoreTarget(deps.cfg, {
        root: targetRoot, components: inDir, sandbox: sandboxRoot(deps), outsideSandbox: r.target.outsideSandbox,
        field: r.target.dir ? 'restore input: target.dir' : 'sandbox (the default restore target)',
      });
      if (!r.target.force && (await isNonEmptyDir(targetRoot))) {
        throw new UsageError(`restore input: target.dir: ${targetRoot} is not empty; choose an empty directory or set "target": {"dir": "...", "force": true}`);
      }
      await fs.mkdir(targetRoot, { recursive: true, mode: 0o700 });
    }
    const items: RestoreItem[] = plan.items.map((i) => {
      const t = targets.get(i.component)!;
      if (!r.target.inPlace) {
        return {
          component: i.component, backupId: i.ref.id, manifestKey: i.ref.key, backupTime: i.ref.time.toISOString(), from: r.from,
          targetDir: t.network ? '' : path.join(targetRoot!, i.component), inPlace: false, live: null, options: t.options, note: t.note,
          ...(r.sandbox ? { sanitize: true } : {}),
        };
      }
      const settings = deps.cfg.components[i.component];
      if (!settings || typeof settings.path !== 'string') {
        throw new UsageError(`restore input: target.inPlace: component ${i.component} has no live path in the configuration; restore it into a sandbox (leave out inPlace)`);
      }
      const live = resolvePath(deps.cfg, settings.path);
      return {
        component: i.component, backupId: i.ref.id, manifestKey: i.ref.key, backupTime: i.ref.time.toISOString(), from: r.from,
        targetDir: path.join(path.dirname(live), `.memvault-staging-${name}`, i.component), inPlace: true, live, options: continuous[i.component] ?? null, note: '',
      };
    });
    for (const i of items) if (i.note) log.info('restore target chosen', { component: i.component, note: i.note });
    if (plan.warnings.length) log.warn('history of the restored components has problems', { warnings: plan.warnings });
    log.info('restore planned', { from: r.from, items: items.map((i) => `${i.component}@${i.backupId}`), skewMs: plan.skewMs });
    return json({ from: r.from, vault: vault.storage.url, inPlace: r.target.inPlace, targetRoot, skewMs: plan.skewMs, components: items.map((i) => i.component), items, warnings: plan.warnings });
  };
}

export const handler = lazyHandler(makeHandler);
