// Handler plumbing and the scheduler: configuration from the environment
// (JSON or a file path; neither is a loud ConfigError), the handler module
// contract, and the cron grouping and firing of `memvault schedule`.
import { describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { configFromEnv, lazyHandler, defaultDeps } from '../../functions/handlers/deps.ts';
import { makeHandler as makeSendAlert } from '../../functions/handlers/send-alert.ts';
import { makeHandler as makeCheckRpo } from '../../functions/handlers/check-rpo.ts';
import { scheduledJobs, dueJobs, runScheduler, type ScheduledJob } from '../../local/scheduler.ts';
import { ConfigError } from '../../functions/core/errors.ts';
import type { Alert } from '../../functions/core/ports.ts';
import { platformFixture } from '../statemachines/helpers.ts';

describe('configuration from the environment', () => {
  it('reads MEMVAULT_CONFIG_JSON (the validated config) and MEMVAULT_CONFIG (a path)', async () => {
    const f = await platformFixture();
    const fromJson = configFromEnv({ MEMVAULT_CONFIG_JSON: JSON.stringify(f.cfg) });
    expect(fromJson.components).toEqual(f.cfg.components);
    expect(fromJson.baseDir).toBe(f.dir);
    const fromFile = configFromEnv({ MEMVAULT_CONFIG: f.cfgFile });
    expect(fromFile.vault).toEqual(f.cfg.vault);
  });

  it('fails loudly, naming both variables, when neither is set or the JSON is bad', () => {
    expect(() => configFromEnv({})).toThrow(ConfigError);
    expect(() => configFromEnv({})).toThrow(/MEMVAULT_CONFIG_JSON.*MEMVAULT_CONFIG/);
    expect(() => configFromEnv({ MEMVAULT_CONFIG_JSON: '{nope' })).toThrow(/MEMVAULT_CONFIG_JSON: not valid JSON/);
    expect(() => configFromEnv({ MEMVAULT_CONFIG_JSON: JSON.stringify({ vault: { primary: 'ftp://x' } }) })).toThrow(/vault\.primary/);
  });

  it('reads the environment at cold start on Lambda, on first call elsewhere', async () => {
    expect(() => lazyHandler(() => async () => 1, { AWS_LAMBDA_FUNCTION_NAME: 'memvault-check-rpo' })).toThrow(ConfigError);
    const h = lazyHandler(() => async () => 1, {});
    await expect(h({})).rejects.toThrow(ConfigError);
  });
});

describe('handlers with injected dependencies', () => {
  it('send-alert unwraps a Lambda cause and names the component and step', async () => {
    const f = await platformFixture();
    const sent: Alert[] = [];
    const h = makeSendAlert(defaultDeps(f.cfg, { alerts: { send: async (a) => { sent.push(a); } }, clock: { now: () => new Date('2026-01-02T03:04:05Z') } }));
    const r = await h({ event: 'backup', component: 'memory-db', step: 'export', error: { Error: 'IntegrityError', Cause: JSON.stringify({ errorType: 'IntegrityError', errorMessage: 'chunk 1f is missing', trace: [] }) } });
    // The cause a Fail state shows says the failure was alerted (the EventBridge rule skips it); the alert's is plain.
    expect(r).toEqual({ subject: 'backup failed: memory-db', errorName: 'IntegrityError', cause: '[alerted] chunk 1f is missing' });
    expect(sent).toEqual([expect.objectContaining({ severity: 'error', component: 'memory-db', step: 'export', cause: 'chunk 1f is missing', time: '2026-01-02T03:04:05.000Z' })]);
  });

  it("check-rpo is quiet before a component's first scheduled backup is due, then reports one without any backup as breached", async () => {
    const f = await platformFixture(); // schedule 0 2 * * *, rpo 26h, vault made now
    const sent: Alert[] = [];
    const at = (ms: number) => defaultDeps(f.cfg, { alerts: { send: async (a) => { sent.push(a); } }, clock: { now: () => new Date(Date.now() + ms) } });
    const fresh = await makeCheckRpo(at(0))({});
    expect(fresh.breaches).toEqual([]);
    expect(fresh.components.map((c) => c.firstBackupDue)).toEqual([expect.stringMatching(/T02:00:00\.000Z$/), expect.stringMatching(/T02:00:00\.000Z$/)]);
    expect(sent).toEqual([]);
    // The first 02:00 after the vault was made, plus 26 hours, has passed with no backup.
    const r = await makeCheckRpo(at(51 * 3_600_000))({});
    expect(r.breaches.map((b) => b.component)).toEqual(['docs', 'memory-db']);
    expect(sent.map((a) => a.component)).toEqual(['docs', 'memory-db']);
    expect(sent[0].cause).toMatch(/no backup at all .* though the first was due at .*T02:00:00/);
  });
});

describe('memvault schedule', () => {
  it('groups components sharing a cron into one backup-run and adds the vault-wide jobs', async () => {
    const f = await platformFixture({ weights: { kind: 'files', path: 'data/docs', schedule: '0 3 * * 0', scheduleType: 'full' } });
    const jobs = scheduledJobs(f.cfg);
    expect(jobs.map((j) => [j.stateMachine, j.cron, j.input])).toEqual([
      ['backup-run', '0 2 * * *', { schedule: '0 2 * * *', timezone: 'UTC' }],
      ['backup-run', '0 3 * * 0', { schedule: '0 3 * * 0', timezone: 'UTC' }],
      ['verify-drill', '0 4 * * *', {}],
      ['retention', '30 5 * * *', {}],
      ['rpo-watch', '*/15 * * * *', {}],
    ]);
    expect(jobs[0].id).toContain('docs, memory-db');
    expect(dueJobs(jobs, new Date('2026-01-04T01:59:00Z'), new Date('2026-01-04T03:00:00Z')).map((j) => j.cron)).toEqual(['0 2 * * *', '0 3 * * 0', '*/15 * * * *']);
    await fs.rm(path.join(f.dir), { recursive: true, force: true });
  });

  it('starts each job at its fire time on a simulated clock and logs the outcome', async () => {
    let t = new Date('2026-01-01T01:58:30Z').getTime();
    const jobs: ScheduledJob[] = [
      { id: 'backup-run 0 2 * * *', stateMachine: 'backup-run', cron: '0 2 * * *', timezone: 'UTC', input: { schedule: '0 2 * * *' } },
      { id: 'rpo-watch', stateMachine: 'rpo-watch', cron: '*/15 * * * *', timezone: 'UTC', input: {} },
    ];
    const started: string[] = [];
    const lines: Record<string, unknown>[] = [];
    const stop = new AbortController();
    await runScheduler({
      jobs,
      now: () => new Date(t),
      sleep: async (ms) => { t += ms; if (t > Date.parse('2026-01-01T02:31:00Z')) stop.abort(); },
      signal: stop.signal,
      log: (l) => lines.push(l),
      start: async (j) => { started.push(`${new Date(t).toISOString().slice(11, 16)} ${j.stateMachine}`); return { status: 'SUCCEEDED', durationMs: 5 }; },
    });
    expect(started).toEqual(['02:00 backup-run', '02:00 rpo-watch', '02:15 rpo-watch', '02:30 rpo-watch']);
    expect(lines.filter((l) => l.msg === 'execution finished')).toHaveLength(4);
  });
});
