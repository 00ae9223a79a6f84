// plan-drill: the first step of verify-drill. Chooses how much chunk data this
// run reads (a subset window of verifySubsetPercent, moving each day, so every
// chunk is read once over 100/percent days; or "all") and the newest backup of
// each component, and where it is restored:
//   - a component with a `drill` setting: its scratch target, with names unique
//     to this run (components/drill.ts), removed again by cleanup-restore;
//   - snapshot kinds: nowhere (their snapshots and DR copies are checked);
//   - a sqlite component with `continuous`: its newest base snapshot, with the
//     shipped WAL replayed onto it (so the drill measures its recovery point);
//   - otherwise a sandbox directory, locally only: on AWS each step runs in
//     another function with its own /tmp, so a component without a drill
//     target fails the plan, naming components.<name>.drill.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { readCatalog } from '../core/catalog.ts';
import { checkRestoreTarget, requireConfigFile } from '../core/restore.ts';
import { ConfigError, NotFoundError } from '../core/errors.ts';
import { drillTag } from '../components/drill.ts';
import { hasDrillCheck, hasDrillTargets } from '../components/types.ts';
import { onAws } from './restore-common.ts';
import { continuousOf } from '../core/continuous.ts';
import { parseManifestKey } from '../core/manifest.ts';
import { chooseSqliteBase } from '../components/sqlite-wal.ts';
import { choosePgBase, isPhysicalComponent } from '../components/pg-physical-plan.ts';
import { type HandlerDeps, invocationLog, json, lazyHandler, parseEvent, side, traced } from './deps.ts';
import { sandboxRoot, safeName, type RestoreItem } from './plan-restore.ts';

export const planDrillInput = z.object({
  request: z.object({
    from: side.default('primary'),
    /** "all", "none", or a percentage of chunk data to read. @default jobs.verifySubsetPercent */
    readData: z.union([z.literal('all'), z.literal('none'), z.number().min(1).max(100)]).optional(),
    /** Components to restore (default: every component with a backup). */
    components: z.array(z.string()).optional(),
  }).strict(),
  executionName: z.string().optional(),
  ...traced,
});

export type ReadData = 'all' | 'none' | { percent: number; cycleIndex: number };

export interface DrillPlan {
  from: 'primary' | 'secondary';
  readData: ReadData;
  sandbox: string;
  items: RestoreItem[];
}

/** Subset window for a day: N = 100/percent windows, day d reads window d mod N. */
export function subsetFor(percent: number, now: Date): { percent: number; cycleIndex: number } {
  const windows = Math.ceil(100 / percent);
  return { percent, cycleIndex: Math.floor(now.getTime() / 86_400_000) % windows };
}

export function makeHandler(deps: HandlerDeps) {
  return async (event: unknown): Promise<DrillPlan> => {
    const e = parseEvent(planDrillInput, event, 'verify-drill input', '{"from":"primary","readData":10}');
    const log = invocationLog(deps, 'plan-drill', e);
    const r = e.request;
    const rd = r.readData ?? deps.cfg.jobs.verifySubsetPercent;
    const readData: ReadData = rd === 'all' || rd === 'none' ? rd : rd >= 100 ? 'all' : subsetFor(rd, deps.clock.now());
    const vault = await deps.openVault(r.from);
    const catalog = (await readCatalog(vault, { now: deps.clock.now() })).entries;
    const sandbox = path.join(sandboxRoot(deps), `drill-${safeName(e.executionName, deps)}`);
    const newest = new Map<string, (typeof catalog)[number]>();
    for (const ref of catalog) if (!newest.has(ref.component)) newest.set(ref.component, ref);
    for (const c of r.components ?? []) if (!newest.has(c)) throw new NotFoundError(`verify-drill input: components: "${c}" has no backup in ${vault.storage.url}`);
    const names = r.components ?? [...newest.keys()].sort();
    const run = e.executionName ?? deps.clock.now().toISOString();
    const problems: string[] = [];
    const inSandbox: string[] = [];
    const items: RestoreItem[] = [];
    for (const c of names) {
      const ref = newest.get(c)!;
      const base = { component: c, backupId: ref.id, manifestKey: ref.key, backupTime: ref.time.toISOString(), from: r.from, inPlace: false, live: null, drill: true, sanitize: true };
      const settings = deps.cfg.components[c];
      const driver = deps.driverFor(settings?.kind ?? ref.kind);
      if (hasDrillCheck(driver)) {
        items.push({ ...base, targetDir: '', options: null });
        continue;
      }
      const options = settings && hasDrillTargets(driver) ? driver.drillTarget({ component: c, settings, tag: drillTag(run, c) }) : undefined;
      if (options) {
        items.push({ ...base, targetDir: '', options });
      } else if (onAws(deps.cfg)) {
        problems.push(hasDrillTargets(driver)
          ? `components.${c}.drill: not set; on AWS a drill restores ${c} (${driver.kind}) into a scratch target named there (see README, "Drills"), not into a Lambda function's /tmp`
          : `components.${c}: a ${driver.kind} component cannot be drilled on AWS (it lives on a host); drill it with the local runtime, or leave it out of "components"`);
      } else if (settings?.kind === 'postgres' && isPhysicalComponent(settings)) {
        // Physical postgres: the newest base backup and every archived WAL segment, replayed by a private
        // server in the sandbox (stopped after), so the drill measures the RPO.
        const b = await choosePgBase(vault, c, null);
        const ref = parseManifestKey(b.key)!;
        inSandbox.push(c);
        items.push({ ...base, backupId: ref.id, manifestKey: ref.key, backupTime: ref.time.toISOString(), targetDir: path.join(sandbox, c), options: { continuousUntil: 'latest', walConfig: requireConfigFile(deps.cfg, c), walFrom: r.from } });
      } else if (settings?.kind === 'sqlite' && continuousOf(settings)) {
        // Continuous: the newest base snapshot and everything shipped since, so the drill measures the RPO.
        const b = await chooseSqliteBase(vault, c, null);
        const ref = parseManifestKey(b.key)!;
        inSandbox.push(c);
        items.push({ ...base, backupId: ref.id, manifestKey: ref.key, backupTime: ref.time.toISOString(), targetDir: path.join(sandbox, c), options: { continuousUntil: 'latest' } });
      } else {
        inSandbox.push(c);
        items.push({ ...base, targetDir: path.join(sandbox, c), options: null });
      }
    }
    if (problems.length) throw new ConfigError(problems);
    if (inSandbox.length) {
      // The drill's sandbox is checked as any restore target is (never live data), and created 0700.
      await checkRestoreTarget(deps.cfg, { root: sandbox, components: inSandbox, sandbox: sandboxRoot(deps), field: 'sandbox (where drills restore)' });
      await fs.mkdir(sandbox, { recursive: true, mode: 0o700 });
    }
    log.info('drill planned', { from: r.from, readData, components: names });
    return json({ from: r.from, readData, sandbox, items });
  };
}

export const handler = lazyHandler(makeHandler);
