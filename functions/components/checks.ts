// Recovery checks (config: components.<name>.checks): what the runbooks' post-
// recovery checklist asks after the data is back: the service answers (HTTP
// probe), the data is there (a SQL query on the restored database), the model
// loads (a command). Run after the driver's own validation, in every restore
// and every drill; each check is one named line of the validation report, so
// a failed check fails the restore or drill naming it.
import { spawn } from 'node:child_process';
import type { RecoveryCheck } from '../core/config.ts';
import type { ValidationCheck } from './types.ts';
import { errorMessage } from '../core/errors.ts';

export interface CheckTarget {
  component: string;
  kind: string;
  /** Where the data was restored: a file, a directory, a database url (redacted) or a service id. */
  location: string;
  /** The driver's target options (a restore target url for the database kinds). */
  options?: Record<string, unknown>;
}

const snippet = (s: string) => (s.length > 200 ? `${s.slice(0, 200)}…` : s);

export async function httpCheck(c: Pick<NonNullable<RecoveryCheck['http']>, 'url' | 'expectStatus' | 'timeoutSeconds'> & { method: string; bodyContains?: string }): Promise<{ ok: boolean; expected: string; actual: string }> {
  const expected = `HTTP ${c.expectStatus}${c.bodyContains !== undefined ? ` with a body containing ${JSON.stringify(c.bodyContains)}` : ''}`;
  try {
    const res = await fetch(c.url, { method: c.method, signal: AbortSignal.timeout(c.timeoutSeconds * 1000), redirect: 'manual' });
    const body = c.method === 'HEAD' ? '' : await res.text();
    const ok = res.status === c.expectStatus && (c.bodyContains === undefined || body.includes(c.bodyContains));
    return { ok, expected, actual: `HTTP ${res.status}: ${snippet(body)}` };
  } catch (err) {
    return { ok: false, expected, actual: `${c.method} ${c.url} failed: ${errorMessage(err)}` };
  }
}

async function sqlValue(t: CheckTarget, query: string): Promise<unknown> {
  if (t.kind === 'sqlite') {
    const { DatabaseSync } = await import('node:sqlite');
    const db = new DatabaseSync(t.location, { readOnly: true });
    try {
      const row = db.prepare(query).get() as Record<string, unknown> | undefined;
      return row ? Object.values(row)[0] : undefined;
    } finally {
      db.close();
    }
  }
  if (t.kind === 'postgres' || t.kind === 'vector') {
    const url = typeof t.options?.url === 'string' ? t.options.url : undefined;
    if (!url) throw new Error('a sql check on a postgres or vector component needs the restore target url (target option url)');
    const pg = (await import('pg')).default;
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      const r = await client.query({ text: query, rowMode: 'array' });
      return r.rows[0]?.[0];
    } finally {
      await client.end();
    }
  }
  throw new Error(`sql checks apply to sqlite, postgres and vector components, not ${t.kind}`);
}

async function sqlCheck(t: CheckTarget, c: NonNullable<RecoveryCheck['sql']>): Promise<{ ok: boolean; expected: string; actual: string }> {
  const expected = c.expect !== undefined ? `${JSON.stringify(String(c.expect))}` : c.expectAtLeast !== undefined ? `at least ${c.expectAtLeast}` : 'a row';
  try {
    const v = await sqlValue(t, c.query);
    const text = v === null || v === undefined ? String(v) : typeof v === 'object' ? JSON.stringify(v) : String(v);
    let ok = v !== undefined;
    if (c.expect !== undefined) ok = text === String(c.expect);
    else if (c.expectAtLeast !== undefined) ok = Number(text) >= c.expectAtLeast;
    return { ok, expected, actual: text };
  } catch (err) {
    return { ok: false, expected, actual: `query failed: ${errorMessage(err)}` };
  }
}

export function commandCheck(t: CheckTarget & { env?: Record<string, string> }, c: Pick<NonNullable<RecoveryCheck['command']>, 'argv' | 'expectExitCode' | 'timeoutSeconds'> & { stdoutContains?: string }): Promise<{ ok: boolean; expected: string; actual: string }> {
  const expected = `exit ${c.expectExitCode}${c.stdoutContains !== undefined ? ` with output containing ${JSON.stringify(c.stdoutContains)}` : ''}`;
  return new Promise((resolve) => {
    let out = '';
    const child = spawn(c.argv[0], c.argv.slice(1), {
      env: { ...process.env, MEMVAULT_COMPONENT: t.component, MEMVAULT_RESTORED: t.location, ...t.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), c.timeoutSeconds * 1000);
    child.stdout.on('data', (d) => { if (out.length < 65536) out += d; });
    child.stderr.on('data', (d) => { if (out.length < 65536) out += d; });
    child.on('error', (err) => { clearTimeout(timer); resolve({ ok: false, expected, actual: `${c.argv[0]}: ${errorMessage(err)}` }); });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const ok = code === c.expectExitCode && (c.stdoutContains === undefined || out.includes(c.stdoutContains));
      resolve({ ok, expected, actual: `${signal ? `killed by ${signal} after ${c.timeoutSeconds} s` : `exit ${code}`}: ${snippet(out.trim())}` });
    });
  });
}

/** Runs the component's checks one after another; one ValidationCheck per check, named `check <name>`. */
export async function runRecoveryChecks(t: CheckTarget, checks: readonly RecoveryCheck[]): Promise<ValidationCheck[]> {
  const out: ValidationCheck[] = [];
  for (const c of checks) {
    const r = c.http ? await httpCheck(c.http) : c.sql ? await sqlCheck(t, c.sql) : await commandCheck(t, c.command!);
    out.push({ name: `check ${c.name}`, ok: r.ok, expected: r.expected, actual: r.actual });
  }
  return out;
}
