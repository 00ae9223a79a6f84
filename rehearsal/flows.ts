// The flows a deployed memvault runs by itself or from the console, as the
// rehearsal starts them: each schedule of the template fired with its own
// input and role (backup-run per schedule group, with replication; the daily
// verify-drill; retention in both regions; rpo-watch), and the README's
// console restores (`{"mode": "latest"}` in the primary region,
// `{"mode": "latest", "from": "secondary"}` in the DR region). A flow passes
// when its executions SUCCEEDED and what a user relies on holds: restored
// data equals the source (objects byte for byte, table rows, Redis keys), an
// alert names the failed component, no call was denied unexpectedly.
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import pg from 'pg';
import { createClient } from 'redis';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT as REPO_ROOT } from './configs.ts';
import type { Rehearsal } from './deploy.ts';
import type { ExecutionRecord } from './machines.ts';

export interface FlowResult {
  config: string;
  flow: string;
  ok: boolean;
  durationMs: number;
  executions: { name: string; stateMachine: string; status: string; error?: string; cause?: string }[];
  problems: string[];
}

export interface DeniedCall { principal: string; action: string; resources: string[]; error?: string; reason?: string }

/** Every AccessDenied the gateway answered and every authorize() refusal it recorded. */
export function deniedCalls(r: Rehearsal): DeniedCall[] {
  return r.gateway.calls.filter((c) => !c.allowed).map((c) => ({
    principal: c.principal, action: c.action, resources: c.resources, error: c.error,
    // The IAM check that said no, and why (role policy, resource policy, condition).
    reason: (c as { checks?: { allowed: boolean; action: string; reason: string }[] }).checks?.find((k) => !k.allowed)?.reason,
  }));
}

function summary(e: ExecutionRecord): FlowResult['executions'][number] {
  return { name: e.name, stateMachine: e.stateMachineArn.split(':').pop()!, status: e.status, error: e.error, cause: e.cause?.slice(0, 2000) };
}

async function flow(r: Rehearsal, name: string, body: (problems: string[]) => Promise<ExecutionRecord[]>): Promise<FlowResult> {
  const t0 = Date.now();
  const problems: string[] = [];
  let executions: ExecutionRecord[] = [];
  try {
    executions = await body(problems);
  } catch (err) {
    problems.push(`${(err as Error).name}: ${(err as Error).message}`);
  }
  for (const e of executions) {
    if (e.status !== 'SUCCEEDED') problems.push(`${e.stateMachineArn.split(':').pop()} ${e.name}: ${e.status} ${e.error ?? ''}: ${(e.cause ?? '').slice(0, 600)}`);
  }
  return { config: r.label, flow: name, ok: problems.length === 0, durationMs: Date.now() - t0, executions: executions.map(summary), problems };
}

/** Fires every backup-run schedule (one execution per cron group; replication is its last step). */
export function backupRun(r: Rehearsal): Promise<FlowResult> {
  return flow(r, 'scheduled backup-run (every component) + replication', async (problems) => {
    const out: ExecutionRecord[] = [];
    const schedules = r.schedules.targeting('memvault-backup-run');
    if (!schedules.length) problems.push('no schedule targets memvault-backup-run');
    for (const s of schedules) out.push(await r.schedules.fire(s));
    const backedUp = new Set<string>();
    for (const e of out) {
      const o = e.output as { components?: { component: string }[]; replication?: { skipped?: boolean } | null } | undefined;
      for (const c of o?.components ?? []) backedUp.add(c.component);
      if (e.status === 'SUCCEEDED' && (!o?.replication || o.replication.skipped)) problems.push(`${e.name}: backup-run did not replicate to the secondary vault`);
    }
    for (const c of Object.keys(r.overlaid.doc.components)) {
      if (r.overlaid.doc.components[c].schedule && !backedUp.has(c) && out.every((e) => e.status === 'SUCCEEDED')) problems.push(`component ${c} was not in any backup-run's output`);
    }
    return out;
  });
}

function fireJob(r: Rehearsal, machine: string, label: string): Promise<FlowResult> {
  return flow(r, label, async (problems) => {
    const s = r.schedules.targeting(machine);
    if (s.length !== 1) { problems.push(`expected one schedule for ${machine}, found ${s.length}`); return []; }
    return [await r.schedules.fire(s[0])];
  });
}

export const verifyDrill = (r: Rehearsal) => fireJob(r, 'memvault-verify-drill', 'daily verify-drill schedule');
export const retention = (r: Rehearsal) => fireJob(r, 'memvault-retention', 'retention schedule (both vaults)');
export const rpoWatch = (r: Rehearsal) => fireJob(r, 'memvault-rpo-watch', 'rpo-watch schedule');

/**
 * The README's console restore inputs (the JSON lines starting {"mode": in its
 * "Deploy to AWS" section), as written: the one with "from": "secondary" runs in
 * the DR region, the other in the primary. Components the rehearsed config does
 * not have are left out of the input (and their target options with them).
 */
export function readmeRestoreInputs(readme = readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8')): Record<'primary' | 'dr', Record<string, any>> {
  const lines = readme.split('\n').filter((l) => /^\{"mode": "latest"/.test(l.trim())).map((l) => JSON.parse(l.trim()) as Record<string, any>);
  const dr = lines.find((x) => x.from === 'secondary');
  const primary = lines.find((x) => x.from === undefined);
  if (!dr || !primary) throw new Error('README.md: no console restore example inputs ({"mode": "latest", ...} lines) for the primary and the DR region');
  return { primary, dr };
}

function forConfig(input: Record<string, any>, components: string[]): Record<string, any> {
  const out = structuredClone(input);
  if (Array.isArray(out.components)) out.components = out.components.filter((c: string) => components.includes(c));
  const options = out.target?.options as Record<string, unknown> | undefined;
  if (options) for (const c of Object.keys(options)) if (!components.includes(c)) delete options[c];
  return out;
}

/** The README's console restore in the primary region or, from the secondary vault, in the DR region. */
export function consoleRestore(r: Rehearsal, where: 'primary' | 'dr'): Promise<FlowResult> {
  const input = forConfig(readmeRestoreInputs()[where], Object.keys(r.overlaid.doc.components));
  return flow(r, `console restore ${JSON.stringify(input)} in the ${where === 'primary' ? 'primary' : 'DR'} region`, async (problems) => {
    const region = where === 'primary' ? r.primaryRegion : r.drRegion;
    const sm = r.sfn.byName('memvault-restore', region);
    const e = await r.sfn.start(sm.arn, input);
    if (e.status === 'SUCCEEDED') problems.push(...(await restoredDataProblems(r, e.output)));
    return [e];
  });
}

/** Compares what a restore reports it wrote with the seeded source data. */
export async function restoredDataProblems(r: Rehearsal, output: unknown): Promise<string[]> {
  const problems: string[] = [];
  const comps = ((output as { components?: { component: string; location: string }[] })?.components ?? []);
  for (const c of comps) {
    const kind = r.overlaid.doc.components[c.component]?.kind as string | undefined;
    const loc = String(c.location ?? '');
    if (/^\/tmp(\/|$)/.test(loc) || /^\//.test(loc)) {
      problems.push(`${c.component}: restored into ${loc}, a directory of the function instance that ran the restore (gone with it; another function cannot read it)`);
      continue;
    }
    try {
      if (loc.startsWith('s3://')) problems.push(...(await compareObjects(r, c.component, loc)));
      else if (/^postgres(ql)?:\/\//.test(loc)) problems.push(...(await compareTable(r, c.component, loc)));
      else if (/^rediss?:\/\//.test(loc)) problems.push(...(await compareRedis(r, c.component, loc)));
      else if (kind !== 'rds-snapshot' && kind !== 'aurora-snapshot' && kind !== 'ssm-config') problems.push(`${c.component}: restore reports location ${loc}, which the rehearsal cannot read back`);
    } catch (err) {
      problems.push(`${c.component}: reading back ${loc}: ${(err as Error).message}`);
    }
  }
  return problems;
}

async function compareObjects(r: Rehearsal, component: string, loc: string): Promise<string[]> {
  const m = /^s3:\/\/([^/]+)\/?(.*)$/.exec(loc)!;
  const [bucket, prefix] = [m[1], m[2]];
  const src = r.overlaid.seeds.s3Sources.find((s) => s.component === component);
  if (!src) return [`${component}: no seeded source to compare with`];
  const objs = r.seeded.objects.filter((o) => o.bucket === src.bucket);
  const problems: string[] = [];
  const listed = await r.s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
  const keys = new Set((listed.Contents ?? []).map((o) => o.Key!));
  for (const o of objs) {
    const rel = o.key.slice(src.prefix.length);
    const target = [...keys].find((k) => k.endsWith(rel) || k.endsWith(o.key));
    if (!target) { problems.push(`${component}: ${o.key} missing under ${loc}`); continue; }
    const got = Buffer.from(await (await r.s3.send(new GetObjectCommand({ Bucket: bucket, Key: target }))).Body!.transformToByteArray());
    if (!got.equals(o.body)) problems.push(`${component}: ${target} differs from the source ${o.key}`);
  }
  return problems;
}

async function compareTable(r: Rehearsal, component: string, loc: string): Promise<string[]> {
  const t = r.seeded.tables.find((x) => x.component === component);
  if (!t) return [];
  const u = new URL(loc);
  u.password = r.passwordFor(decodeURIComponent(u.username) || undefined);
  const c = new pg.Client({ connectionString: u.toString() });
  await c.connect();
  try {
    const q = () => `SELECT md5(string_agg(x::text, ',' ORDER BY x::text)) AS h, count(*) AS n FROM ${t.table.split('.').map((p) => `"${p}"`).join('.')} x`;
    const got = (await c.query(q())).rows[0];
    const s = new pg.Client({ connectionString: r.postgres.urlFor(t.database) });
    await s.connect();
    const want = (await s.query(q())).rows[0];
    await s.end();
    return got.h === want.h ? [] : [`${component}: ${t.table} restored at ${u.pathname} has ${got.n} rows, not equal to the source's ${want.n}`];
  } finally {
    await c.end();
  }
}

async function compareRedis(r: Rehearsal, component: string, loc: string): Promise<string[]> {
  const u = new URL(loc);
  if (u.username) u.password = r.dbPassword;
  const c = createClient({ url: u.toString() });
  await c.connect();
  try {
    const problems: string[] = [];
    for (const [k, v] of Object.entries(r.seeded.redisKeys)) {
      if ((await c.get(k)) !== v) problems.push(`${component}: key ${k} not restored as in the source`);
    }
    return problems.slice(0, 5);
  } finally {
    await c.quit();
  }
}

/** The flows `npm run rehearse` runs for one config, in order. */
export async function allFlows(r: Rehearsal): Promise<FlowResult[]> {
  const out: FlowResult[] = [];
  out.push(await backupRun(r));
  out.push(await verifyDrill(r));
  out.push(await consoleRestore(r, 'primary'));
  out.push(await consoleRestore(r, 'dr'));
  out.push(await retention(r));
  out.push(await rpoWatch(r));
  return out;
}
