// The memvault command. Every command takes --config FILE and --json
// (machine-readable output on stdout, nothing else there). Exit codes:
// 0 success, 1 failure, 2 bad usage or bad config.
import { parseArgs } from 'node:util';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { loadConfigFile, locateConfig, type MemvaultConfig } from '../functions/core/config.ts';
import { kindSchemas, driverFor } from '../functions/components/registry.ts';
import { ConfigError, MemvaultError, UsageError, errorMessage } from '../functions/core/errors.ts';
import { BACKUP_TYPES, type BackupType } from '../functions/core/manifest.ts';
import { Vault, listManifestNames } from '../functions/core/vault.ts';
import { readCatalog } from '../functions/core/catalog.ts';
import { planRestore, planContinuousItems, restorePlan, parseAt, parseTargetOptions, type RestoreSelector } from '../functions/core/restore.ts';
import { verifyVault } from '../functions/core/verify.ts';
import { migrateVault } from '../functions/core/migrate.ts';
import { alertSink, keyProvider, openStorage, openVault, location, type Side } from '../functions/services.ts';
import { initVaults, replicateVaults, retentionRun, runBackups, verifyAudit, watchContinuous } from '../functions/ops.ts';
import { keyAdd, keyList, keyRemove, keyRotate } from '../functions/key-ops.ts';
import { AUDIT_OPS, formatAuditRecord, readAudit, recordAudit, type AuditOp } from '../functions/core/audit.ts';
import { jsonLogger } from '../functions/logger.ts';
import { bytes, ms, progress, table } from './format.ts';
import type { RemoteEvent, RemoteResult } from '../functions/adapters/sfn.ts';
import { METRICS, fileMetrics, seconds } from '../functions/handlers/metrics.ts';

const USAGE = `memvault: backup and recovery for AI memory platforms

usage:
  memvault init                                   create the vault(s) and the key
  memvault init --authenticate-vault-config       once, for vaults made before vault.json was authenticated
  memvault config validate
  memvault backup [--type full|incremental|critical] [--component NAME]...
  memvault list [--component NAME] [--from primary|secondary]
                                                  backups that open under the key, newest first, and damage
  memvault list --names-only                      manifest names without the key (auditors; not verified)
  memvault restore (--latest | --backup ID | --at ISO-TIME) [--component NAME]...
                   --target DIR [--from primary|secondary] [--force] [--sanitize]
                   [--target-option [COMPONENT:]KEY=VALUE]...   e.g. memory-db:url=postgres://host/db
  memvault verify [--read-data | --read-data-subset PERCENT] [--from primary|secondary]
  memvault key list                               the keys that open the vault(s)
  memvault key add (--key-file PATH | --kms-key ARN [--kms-region R])
                                                  let another key open the vault(s)
  memvault key remove --key-id ID                 revoke a key: it opens nothing from then on
  memvault key rotate [--kms-key ARN [--kms-region R]]
                                                  replace the configured key (a key file in place)
  memvault audit [--since ISO-TIME] [--op OP] [--component NAME] [--from primary|secondary]
                                                  the vault's audit log: who did what, when, result
  memvault replicate                              copy what the secondary vault lacks
  memvault retention [--dry-run]                  forget by policy, then prune
  memvault migrate [--from primary|secondary]     convert a memvault/1 vault (a chunk per object) to
                                                  memvault/2 (packs + chunk index); resumable
  memvault demo [--dir DIR] [--weights-mb N]      the end-to-end drill on a generated platform
  memvault run NAME [--input JSON]                run a state machine once (backup-run, restore,
                                                  verify-drill, retention, rpo-watch), locally
  memvault run NAME --remote [--input JSON]       ... or the deployed one on AWS (Step Functions),
                   (--state-machine-arn ARN | --region R --account ID [--prefix memvault])
  memvault restore ... --remote (--state-machine-arn ARN | --region R --account ID)
                                                  restore through the deployed restore state machine
  memvault schedule                               foreground daemon: start the state machines on
                                                  their cron schedules (and ship continuous components)
  memvault wal-push --component NAME %p %f       archive_command: seal one WAL file into the vault
                                                  (0 if that file is already there, identical)
  memvault wal-fetch --component NAME [--from primary|secondary] %f %p
                                                  restore_command: fetch and check one WAL file
  memvault watch [--component NAME]...            foreground: ship the WAL of sqlite components with
                                                  continuous: into the vault (restore --at any moment)
  memvault report [--out FILE] [--metrics FILE] [--from primary|secondary]
                                                  recovery report: a self-contained HTML page (default
                                                  memvault-report.html) and a text summary: backups,
                                                  sizes and dedup, RPO now vs target, restore times vs
                                                  RTO, drills (restores and drills from the metrics
                                                  file, default $MEMVAULT_METRICS_FILE)

every command: --config FILE (or $MEMVAULT_CONFIG, or ./memvault.yaml), --json
exit codes: 0 success, 1 failure, 2 bad usage or bad config`;

type Out = { json: boolean; print(human: string, data: unknown): void };

function output(json: boolean): Out {
  return {
    json,
    print(human, data) {
      process.stdout.write(json ? `${JSON.stringify(data, null, 2)}\n` : `${human}\n`);
    },
  };
}

function loadConfig(file: string | undefined): MemvaultConfig {
  return loadConfigFile(locateConfig(file), kindSchemas);
}

const common = {
  config: { type: 'string' },
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

function parse<T extends Record<string, { type: 'string' | 'boolean'; multiple?: boolean; default?: unknown; short?: string }>>(args: string[], options: T) {
  try {
    return parseArgs({ args, options: { ...common, ...options } as never, allowPositionals: false, strict: true }).values as Record<string, any>;
  } catch (err) {
    throw new UsageError(`${errorMessage(err)}\n\n${USAGE}`);
  }
}

function side(v: unknown): Side {
  if (v === undefined || v === 'primary') return 'primary';
  if (v === 'secondary') return 'secondary';
  throw new UsageError(`--from: expected primary or secondary, got "${String(v)}"`);
}

const remoteOptions = {
  remote: { type: 'boolean', default: false },
  'state-machine-arn': { type: 'string' },
  region: { type: 'string' },
  account: { type: 'string' },
  prefix: { type: 'string' },
} as const;

/** Runs a state machine once, locally (in-process) or remotely (Step Functions), printing each state as it completes. */
async function runStateMachineCommand(name: string, input: unknown, a: Record<string, any>): Promise<number> {
  const printEvent = (e: RemoteEvent) => {
    if (e.type === 'entered') return;
    process.stderr.write(`${e.time.toISOString()}  ${e.type === 'failed' ? 'FAILED' : 'done  '}  ${e.state}${e.type === 'failed' ? `: ${e.detail}` : ''}\n`);
  };
  let r: RemoteResult;
  if (a.remote) {
    const { SFNClient } = await import('@aws-sdk/client-sfn');
    const { runRemote, stateMachineArnFor } = await import('../functions/adapters/sfn.ts');
    const region = a.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION;
    let arn = a['state-machine-arn'] as string | undefined;
    if (!arn) {
      if (!region || !a.account) throw new UsageError('--remote: give --state-machine-arn ARN, or --region REGION (or $AWS_REGION) and --account ID');
      arn = stateMachineArnFor(name, { region, account: a.account, prefix: a.prefix });
    }
    r = await runRemote({ client: new SFNClient(region ? { region } : {}), stateMachineArn: arn, input, onEvent: a.json ? undefined : printEvent });
  } else {
    const cfg = loadConfig(a.config);
    const { runLocal } = await import('../local/runtime.ts');
    r = await runLocal(name, input, { cfg, waitMs: 1000, retryMs: 1000, onEvent: a.json ? undefined : printEvent });
  }
  const human = r.status === 'SUCCEEDED'
    ? `${name} succeeded (${ms(r.durationMs)}): ${r.executionArn}\n${JSON.stringify(r.output, null, 2)}`
    : `${name} ${r.status}: ${r.error}: ${r.cause}\n${r.executionArn}`;
  output(a.json).print(human, { status: r.status, executionArn: r.executionArn, output: r.output, error: r.error, cause: r.cause, durationMs: r.durationMs });
  return r.status === 'SUCCEEDED' ? 0 : 1;
}

/** --target-option for a remote restore: the components are not known here, so each option names its component. */
function remoteTargetOptions(args: string[], components: string[]) {
  for (const arg of args) {
    if (components.length === 0 && !/^[a-z0-9][a-z0-9_-]*:/.test(arg)) {
      throw new UsageError(`--target-option ${arg}: with --remote, name the component (COMPONENT:KEY=VALUE) or pass --component`);
    }
  }
  const named = args.map((x) => /^([a-z0-9][a-z0-9_-]*):/.exec(x)?.[1]).filter((x): x is string => !!x);
  return parseTargetOptions(args, [...new Set([...components, ...named])]);
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return cmd ? 0 : 2;
  }
  const log = jsonLogger({ command: cmd });

  switch (cmd) {
    case 'init': {
      const a = parse(rest, { 'authenticate-vault-config': { type: 'boolean', default: false } });
      const cfg = loadConfig(a.config);
      if (a['authenticate-vault-config']) {
        // Vaults made before vault.json was authenticated: the operator vouches for their settings once.
        const sides: Side[] = cfg.vault.secondary ? ['primary', 'secondary'] : ['primary'];
        const done: { url: string; authenticated: boolean }[] = [];
        for (const s of sides) {
          const storage = openStorage(cfg, location(cfg, s));
          done.push({ url: storage.url, authenticated: await Vault.authenticateConfig(storage, await keyProvider(cfg, s)) });
        }
        output(a.json).print(done.map((d) => `${d.url}: vault.json ${d.authenticated ? 'now authenticated' : 'was already authenticated'}`).join('\n'), done);
        return 0;
      }
      const r = await initVaults(cfg);
      output(a.json).print([
        `key: ${r.key.type} ${r.key.keyId}${r.key.file ? ` (${r.key.file})` : ''}${r.key.created ? ' created' : ''}`,
        `primary vault: ${r.primary.url} (vault ${r.primary.vaultId}) ${r.primary.created ? 'created' : 'already initialized'}`,
        ...(r.secondary ? [`secondary vault: ${r.secondary.url} ${r.secondary.created ? 'created as replica' : 'already initialized'}`] : []),
      ].join('\n'), r);
      return 0;
    }

    case 'config': {
      const [sub, ...more] = rest;
      if (sub !== 'validate') throw new UsageError(`unknown command "config ${sub ?? ''}"; did you mean "config validate"?`);
      const a = parse(more, {});
      try {
        const cfg = loadConfig(a.config);
        output(a.json).print(`${cfg.file}: valid, ${Object.keys(cfg.components).length} components (${Object.entries(cfg.components).map(([n, c]) => `${n}: ${c.kind}`).join(', ')})`,
          { ok: true, file: cfg.file, components: Object.keys(cfg.components) });
        return 0;
      } catch (err) {
        if (err instanceof ConfigError) {
          if (a.json) output(true).print('', { ok: false, problems: err.problems });
          else process.stderr.write(`invalid configuration:\n${err.problems.map((p) => `  ${p}`).join('\n')}\n`);
          return 2;
        }
        throw err;
      }
    }

    case 'backup': {
      const a = parse(rest, { type: { type: 'string', default: 'incremental' }, component: { type: 'string', multiple: true } });
      if (!BACKUP_TYPES.includes(a.type)) throw new UsageError(`--type: expected full, incremental or critical, got "${a.type}"`);
      const cfg = loadConfig(a.config);
      const p = progress(!a.json && process.stderr.isTTY === true);
      const r = await runBackups(cfg, {
        type: a.type as BackupType, components: a.component, alerts: alertSink(cfg, { json: a.json }), log,
        onProgress: (c, s) => p.update(`${c}: read ${bytes(s.bytesRead)}, new ${bytes(s.newBytes)}, stored ${bytes(s.bytesStored)}`),
      });
      p.done();
      const rows = r.outcomes.map((o) => [o.component, o.type, o.backupId, bytes(o.stats.bytesTotal), bytes(o.stats.bytesRead), bytes(o.stats.newBytes), bytes(o.stats.bytesStored), ms(o.stats.durationMs)]);
      const human = [
        table(['component', 'type', 'backup id', 'size', 'read', 'new', 'stored', 'time'], rows),
        ...r.outcomes.filter((o) => o.type !== 'full' && o.parent).map((o) => `${o.component}: changed since ${o.parent}: ${bytes(o.stats.newBytes)} new of ${bytes(o.stats.bytesTotal)} (${bytes(o.stats.bytesUnchanged)} unchanged files not re-read)`),
        ...r.failures.map((f) => `FAILED ${f.component}: ${f.error}`),
      ].join('\n');
      output(a.json).print(human, r);
      return r.ok ? 0 : 1;
    }

    case 'list': {
      const a = parse(rest, { component: { type: 'string' }, from: { type: 'string' }, 'names-only': { type: 'boolean', default: false } });
      const cfg = loadConfig(a.config);
      const s = side(a.from);
      if (a['names-only']) {
        // For auditors, who may list the vault but not use its key: names, not verified backups.
        const storage = openStorage(cfg, location(cfg, s));
        const refs = await listManifestNames(storage, a.component);
        output(a.json).print(
          [`${storage.url}: manifest names only, NOT verified (without the vault key a name proves nothing; \`memvault list\` opens each)`,
            refs.length ? table(['time', 'component', 'type', 'backup id'], refs.map((r) => [r.time.toISOString(), r.component, r.type, r.id])) : 'no manifest names'].join('\n'),
          { verified: false, names: refs.map((r) => ({ id: r.id, component: r.component, type: r.type, time: r.time.toISOString(), key: r.key })) },
        );
        return 0;
      }
      const vault = await openVault(cfg, s);
      const cat = await readCatalog(vault, a.component ? { component: a.component } : {});
      if (a.component && !cfg.components[a.component] && cat.entries.length === 0) {
        throw new UsageError(`unknown component "${a.component}"; configured: ${Object.keys(cfg.components).join(', ')}`);
      }
      const problems = [
        ...cat.chain.map((c) => `BROKEN CHAIN ${c.component}: ${c.detail}`),
        ...cat.damaged.map((d) => `DAMAGED ${d.key}: ${d.problem}`),
      ];
      output(a.json).print(
        [cat.entries.length ? table(['time', 'component', 'type', 'backup id', 'seq'], cat.entries.map((r) => [r.time.toISOString(), r.component, r.type, r.id, r.chain ? String(r.chain.seq) : '-'])) : `no backups in ${vault.storage.url}`,
          ...problems, ...(problems.length ? [`${problems.length} problem(s): run \`memvault verify\``] : [])].join('\n'),
        {
          backups: cat.entries.map((r) => ({ id: r.id, component: r.component, type: r.type, time: r.time.toISOString(), seq: r.chain?.seq ?? null, digest: r.digest })),
          damaged: cat.damaged, chainProblems: cat.chain,
        },
      );
      return problems.length ? 1 : 0;
    }

    case 'restore': {
      const a = parse(rest, {
        latest: { type: 'boolean', default: false }, backup: { type: 'string' }, at: { type: 'string' },
        component: { type: 'string', multiple: true }, target: { type: 'string' }, from: { type: 'string' }, force: { type: 'boolean', default: false },
        'target-option': { type: 'string', multiple: true },
        sanitize: { type: 'boolean', default: false },
        ...remoteOptions,
      });
      if (a.remote) {
        const modes = [a.latest, a.backup !== undefined, a.at !== undefined].filter(Boolean).length;
        if (modes !== 1) throw new UsageError('restore: give exactly one of --latest, --backup ID, --at ISO-TIME');
        const input = {
          mode: a.latest ? 'latest' : a.backup ? 'backup' : 'point-in-time',
          ...(a.backup ? { backupId: a.backup } : {}),
          ...(a.at ? { at: parseAt(a.at).toISOString() } : {}),
          ...(a.component ? { components: a.component } : {}),
          from: side(a.from),
          ...(a.sanitize ? { sandbox: true } : {}),
          ...(a.target || a.force || a['target-option'] ? { target: {
            // --target is the operator's explicit choice, as for a local restore.
            ...(a.target ? { dir: a.target, outsideSandbox: true } : {}),
            ...(a.force ? { force: true } : {}),
            ...(a['target-option'] ? { options: remoteTargetOptions(a['target-option'], a.component ?? []) } : {}),
          } } : {}),
        };
        return runStateMachineCommand('restore', input, a);
      }
      const modes = [a.latest, a.backup !== undefined, a.at !== undefined].filter(Boolean).length;
      if (modes !== 1) throw new UsageError('restore: give exactly one of --latest, --backup ID, --at ISO-TIME');
      if (!a.target) throw new UsageError('restore: --target DIR is required (an empty directory, or pass --force)');
      const sel: RestoreSelector = a.latest ? { mode: 'latest' } : a.backup ? { mode: 'backup', backupId: a.backup } : { mode: 'point-in-time', at: parseAt(a.at) };
      const cfg = loadConfig(a.config);
      const s = side(a.from);
      const vault = await openVault(cfg, s);
      const plan = await planRestore(vault, sel, a.component, Object.keys(cfg.components));
      // Continuous components: the base snapshot for the time, and the shipped WAL replayed up to it.
      const continuous = await planContinuousItems(vault, cfg, plan, sel, s);
      const startedAt = new Date().toISOString();
      const audited = { op: 'restore' as const, components: plan.items.map((i) => i.component), backupIds: plan.items.map((i) => i.ref.id) };
      let r;
      try {
        const options = parseTargetOptions(a['target-option'] ?? [], plan.items.map((i) => i.component));
        for (const [c, o] of Object.entries(continuous)) options[c] = { ...options[c], ...o };
        r = await restorePlan({ cfg, vault, driverFor, log }, plan, a.target, a.force, options, a.sanitize);
      } catch (err) {
        await recordAudit(vault, { ...audited, result: 'failed', startedAt, endedAt: new Date().toISOString(), error: errorMessage(err), details: { from: s, target: a.target } }, log);
        if (!(err instanceof UsageError)) {
          await alertSink(cfg, { json: a.json }).send({
            severity: 'error', subject: `restore failed: ${plan.items.map((i) => i.component).join(', ')}`, step: 'restore',
            cause: errorMessage(err), message: errorMessage(err), time: new Date().toISOString(),
          });
        }
        throw err;
      }
      if (!r.ok) {
        const failed = r.components.filter((c) => !c.validation.ok);
        await alertSink(cfg, { json: a.json }).send({
          severity: 'error', subject: `restore failed validation: ${failed.map((c) => c.component).join(', ')}`, step: 'validate', time: new Date().toISOString(),
          component: failed.length === 1 ? failed[0].component : undefined,
          message: failed.flatMap((c) => c.validation.checks.filter((k) => !k.ok).map((k) => `${c.component}: ${k.name}: expected ${JSON.stringify(k.expected)}, got ${JSON.stringify(k.actual)}`)).join('; '),
        });
      }
      await recordAudit(vault, {
        ...audited, result: r.ok ? 'ok' : 'failed', startedAt, endedAt: new Date().toISOString(),
        ...(r.ok ? {} : { error: r.components.filter((c) => !c.validation.ok).map((c) => `${c.component}: validation failed`).join('; ') }),
        details: { from: s, target: r.target, recoveryTimeMs: r.recoveryTimeMs },
      }, log);
      const human = [
        table(['component', 'backup id', 'backup time', 'bytes', 'valid', 'time'], r.components.map((c) => [c.component, c.backupId, c.backupTime, bytes(c.bytes), c.validation.ok ? 'yes' : 'NO', ms(c.durationMs)])),
        `restored from ${r.from} into ${r.target}; recovery time ${ms(r.recoveryTimeMs)}${plan.items.length > 1 ? `; skew between components ${ms(r.skewMs)}` : ''}`,
        ...r.components.flatMap((c) => (c.masking?.rules ?? []).map((m) => `masked ${c.component}: ${m.rule} (${m.describe}): ${m.touched} ${m.unit}`)),
        ...(a.sanitize ? r.components.filter((c) => !c.masking).map((c) => `not masked ${c.component}: no mask rules`) : []),
        ...r.components.filter((c) => c.recoveryPoint).map((c) => `${c.component}: backup ${c.backupId} and the shipped WAL replayed up to ${c.recoveryPoint}`),
        ...r.components.flatMap((c) => c.validation.checks.filter((k) => !k.ok).map((k) => `INVALID ${c.component}: ${k.name}: expected ${JSON.stringify(k.expected)}, got ${JSON.stringify(k.actual)}`)),
        ...plan.warnings.map((w) => `WARNING: ${w}`),
      ].join('\n');
      output(a.json).print(human, { ...r, warnings: plan.warnings });
      // The measured recovery time, as the restore state machine records it (report-restore), for `memvault report`.
      // Only to the file: stdout is the command's own output.
      if (r.ok && process.env.MEMVAULT_METRICS_FILE) fileMetrics(process.env.MEMVAULT_METRICS_FILE).emit(r.components.map((c) => ({ name: METRICS.restoreDuration, value: seconds(r.recoveryTimeMs), dimension: c.component })), new Date());
      return r.ok ? 0 : 1;
    }

    case 'verify': {
      const a = parse(rest, { 'read-data': { type: 'boolean', default: false }, 'read-data-subset': { type: 'string' }, from: { type: 'string' } });
      let readData: 'none' | 'all' | { percent: number } = 'none';
      if (a['read-data']) readData = 'all';
      if (a['read-data-subset'] !== undefined) {
        const pct = Number(String(a['read-data-subset']).replace(/%$/, ''));
        if (!(pct > 0 && pct <= 100)) throw new UsageError(`--read-data-subset: expected a percentage in (0, 100], got "${a['read-data-subset']}"`);
        readData = { percent: pct, ...{ cycleIndex: Math.floor(Date.now() / 86_400_000) } };
      }
      const cfg = loadConfig(a.config);
      const vault = await openVault(cfg, side(a.from));
      const p = progress(!a.json && process.stderr.isTTY === true);
      const startedAt = new Date().toISOString();
      let r;
      try {
        r = await verifyVault(vault, { readData, onProgress: (d, t) => p.update(`read ${d}/${t} chunks`) });
      } catch (err) {
        await recordAudit(vault, { op: 'verify', result: 'failed', startedAt, endedAt: new Date().toISOString(), components: [], backupIds: [], error: errorMessage(err) }, log);
        throw err;
      } finally {
        p.done();
      }
      await recordAudit(vault, verifyAudit(r, startedAt, readData), log);
      const human = [
        `${r.vault}: ${r.manifests} backups, ${r.chunksReferenced} chunks referenced, ${r.chunksInVault} in the vault (${r.packs} packs, ${r.unreferencedPacks} unreferenced), ${r.chunksRead} read, ${r.unreferencedChunks} unreferenced`,
        ...r.chainProblems.map((c) => `BROKEN CHAIN ${c.component}: ${c.detail}`),
        ...r.damagedIndexes.map((d) => `DAMAGED INDEX ${d.key}: ${d.error}`),
        ...r.damagedPacks.map((d) => `DAMAGED PACK ${d.key}: ${d.error}`),
        ...r.damagedManifests.map((d) => `DAMAGED ${d.key}: ${d.error}`),
        ...r.problems.map((p) => `${p.problem.toUpperCase()} chunk ${p.chunk}: ${p.detail}; needed by ${p.backups.join(', ')}`),
        r.ok ? 'no problems found' : `${r.problems.length + r.damagedManifests.length + r.chainProblems.length + r.damagedIndexes.length + r.damagedPacks.length} problem(s); damaged backups: ${r.damagedBackups.join(', ') || '(none named)'}`,
      ].join('\n');
      output(a.json).print(human, r);
      if (!r.ok) {
        await alertSink(cfg, { json: a.json }).send({
          severity: 'error', subject: 'vault verification found damage', step: 'verify', message: human, time: new Date().toISOString(),
          details: { damagedBackups: r.damagedBackups },
        });
      }
      return r.ok ? 0 : 1;
    }

    case 'key': {
      const [sub, ...more] = rest;
      const a = parse(more, { 'key-file': { type: 'string' }, 'kms-key': { type: 'string' }, 'kms-region': { type: 'string' }, 'key-id': { type: 'string' } });
      const cfg = loadConfig(a.config);
      const kms = a['kms-key'] ? { kmsKey: a['kms-key'], region: a['kms-region'] } : undefined;
      switch (sub) {
        case 'list': {
          const l = await keyList(cfg);
          output(a.json).print(l.map((v) => [`${v.vault}:`, ...v.keys.map((k) => `  ${k.type} key ${k.keyId}${k.current ? '  (this configuration)' : ''}`)].join('\n')).join('\n'), l);
          return 0;
        }
        case 'add': {
          if ((a['key-file'] === undefined) === (kms === undefined)) throw new UsageError('key add: give one of --key-file PATH or --kms-key ARN');
          const r = await keyAdd(cfg, kms ?? { keyFile: a['key-file']! });
          output(a.json).print(r.map((x) => `${x.vault}: key ${x.keyId} ${x.added ? 'added' : 'was already a key'}`).join('\n'), r);
          return 0;
        }
        case 'remove': {
          if (!a['key-id']) throw new UsageError('key remove: --key-id ID is required (see `memvault key list`)');
          const r = await keyRemove(cfg, a['key-id']);
          output(a.json).print(r.map((x) => `${x.vault}: key ${a['key-id']} ${x.removed ? 'removed: it no longer opens this vault' : 'not a key of this vault'}`).join('\n'), r);
          return 0;
        }
        case 'rotate': {
          const r = await keyRotate(cfg, kms);
          output(a.json).print([
            ...r.map((x) => `${x.vault}: key ${x.from} replaced by ${x.to}`),
            kms ? 'now set encryption.kms in the configuration to the new key' : 'the key file now holds the new key; the old key opens nothing',
          ].join('\n'), r);
          return 0;
        }
        default:
          throw new UsageError(`key: expected list, add, remove or rotate, got ${JSON.stringify(sub ?? '')}`);
      }
    }

    case 'audit': {
      const a = parse(rest, { since: { type: 'string' }, op: { type: 'string' }, component: { type: 'string' }, from: { type: 'string' } });
      if (a.op !== undefined && !AUDIT_OPS.includes(a.op as AuditOp)) throw new UsageError(`--op: expected one of ${AUDIT_OPS.join(', ')}, got "${a.op}"`);
      const cfg = loadConfig(a.config);
      const vault = await openVault(cfg, side(a.from));
      const l = await readAudit(vault, { since: a.since ? parseAt(a.since) : undefined, op: a.op as AuditOp | undefined, component: a.component });
      const human = [
        `${l.vault}: ${l.records.length} record(s)`,
        ...l.records.map(formatAuditRecord),
        ...l.damaged.map((d) => `DAMAGED ${d.key}: ${d.error}`),
      ].join('\n');
      output(a.json).print(human, l);
      return l.damaged.length ? 1 : 0;
    }

    case 'migrate': {
      const a = parse(rest, { from: { type: 'string' } });
      const cfg = loadConfig(a.config);
      const s = side(a.from);
      const p = progress(!a.json && process.stderr.isTTY === true);
      const r = await migrateVault(openStorage(cfg, location(cfg, s)), await keyProvider(cfg, s), { onProgress: (d) => p.update(`packed ${d} chunks`) });
      p.done();
      output(a.json).print(`${r.vault}: ${r.from} -> ${r.to}: ${r.chunksPacked} chunks packed into ${r.packsWritten} packs (${r.chunksAlreadyIndexed} already indexed), ${r.chunkObjectsDeleted} chunk objects removed`, r);
      return 0;
    }

    case 'replicate': {
      const a = parse(rest, {});
      const cfg = loadConfig(a.config);
      const p = progress(!a.json && process.stderr.isTTY === true);
      const r = await replicateVaults(cfg, (d, t) => p.update(`copied ${d}/${t}`));
      p.done();
      output(a.json).print([
        `replicated ${r.from} -> ${r.to}: ${r.chunksCopied} chunks, ${r.manifestsCopied} manifests, ${bytes(r.bytesCopied)} copied; ${r.alreadyPresent} backups already there (${ms(r.durationMs)})`,
        ...r.notCopied.map((n) => `NOT COPIED ${n.key}: ${n.problem}`),
      ].join('\n'), r);
      if (r.notCopied.length) {
        await alertSink(cfg, { json: a.json }).send({
          severity: 'error', subject: `replicate found damage in ${r.from}`, step: 'replicate', time: new Date().toISOString(),
          message: r.notCopied.slice(0, 10).map((n) => `${n.key}: ${n.problem}`).join('; '), details: { notCopied: r.notCopied.map((n) => n.key) },
        });
      }
      return r.notCopied.length ? 1 : 0;
    }

    case 'retention': {
      const a = parse(rest, { 'dry-run': { type: 'boolean', default: false } });
      const cfg = loadConfig(a.config);
      const rs = await retentionRun(cfg, { dryRun: a['dry-run'], alerts: alertSink(cfg, { json: a.json }) });
      const would = a['dry-run'] ? 'would be ' : '';
      const human = [...rs.vaults.map((r) => [
        `${r.vault}${r.dryRun ? ' (dry run: nothing deleted)' : ''}: ${r.forgotten.length} backups ${r.dryRun ? 'would be ' : ''}forgotten, ${r.kept} kept; ${r.chunksPruned} chunks (${bytes(r.bytesPruned)}) ${r.dryRun ? 'would be ' : ''}pruned, ${r.chunksKept} kept; ${r.packsDeleted} packs deleted, ${r.packsRepacked} repacked (${bytes(r.bytesRepacked)} rewritten)`,
        ...r.forgotten.map((f) => `  forget ${f.component} ${f.id} (${f.time})`),
        ...r.chainProblems.map((c) => `  BROKEN CHAIN: ${c}`),
        ...r.damaged.map((d) => `  DAMAGED ${d.key}: ${d.problem}`),
        ...(r.pruneSkipped ? [`  PRUNE SKIPPED: ${r.pruneSkipped}`] : []),
      ].join('\n')), ...rs.snapshots.flatMap((p) => p.regions.map((g) =>
        `${p.component} snapshots in ${g.region}: ${g.deleted.length} ${would}deleted (${g.deleted.map((d) => d.id).join(', ') || 'none'}), ${g.kept.length} kept, ${g.skipped.length} skipped`)),
      ...rs.wal.map((w) => `${w.vault}: ${w.component} shipped WAL: ${w.deleted.length} object(s) ${would}deleted (no kept snapshot needs them), ${w.kept} kept`)].join('\n');
      output(a.json).print(human, rs);
      const troubled = rs.vaults.filter((r) => r.pruneSkipped || r.damaged.length || r.chainProblems.length);
      for (const r of troubled) {
        await alertSink(cfg, { json: a.json }).send({
          severity: 'error', subject: `retention found damage in ${r.vault}`, step: 'retention', time: new Date().toISOString(),
          message: [r.pruneSkipped, ...r.chainProblems, ...r.damaged.map((d) => `${d.key}: ${d.problem}`)].filter(Boolean).slice(0, 10).join('; '),
          details: { vault: r.vault, damaged: r.damaged.map((d) => d.key) },
        });
      }
      return troubled.length ? 1 : 0;
    }

    case 'demo': {
      const a = parse(rest, { dir: { type: 'string' }, 'weights-mb': { type: 'string' } });
      const { runDemo } = await import('../local/demo.ts');
      const r = await runDemo({ dir: a.dir, weightsMb: a['weights-mb'] ? Number(a['weights-mb']) : undefined, json: a.json });
      if (a.json) output(true).print('', r);
      return r.ok ? 0 : 1;
    }

    case 'run': {
      const [name, ...more] = rest;
      if (!name || name.startsWith('-')) throw new UsageError(`run: name a state machine: backup-run, restore, verify-drill, retention, rpo-watch\n\n${USAGE}`);
      const a = parse(more, { input: { type: 'string' }, ...remoteOptions });
      let input: unknown = {};
      if (a.input !== undefined) {
        try {
          input = JSON.parse(a.input);
        } catch (err) {
          throw new UsageError(`--input: not valid JSON (${errorMessage(err)}); e.g. --input '{"type":"full"}'`);
        }
      }
      return runStateMachineCommand(name, input, a);
    }

    case 'schedule': {
      const a = parse(rest, {});
      const cfg = loadConfig(a.config);
      const { scheduledJobs, runScheduler } = await import('../local/scheduler.ts');
      const { runLocal } = await import('../local/runtime.ts');
      const stop = new AbortController();
      process.once('SIGINT', () => stop.abort());
      process.once('SIGTERM', () => stop.abort());
      // Continuous components ship their WAL alongside the schedules.
      const shipping = watchContinuous(cfg, { signal: stop.signal, log, alerts: alertSink(cfg, { json: a.json }) })
        .catch((err: unknown) => log.error('continuous shipping stopped', { error: errorMessage(err) }));
      await runScheduler({
        jobs: scheduledJobs(cfg),
        signal: stop.signal,
        log: (line) => process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), ...line })}\n`),
        start: async (job) => {
          const r = await runLocal(job.stateMachine, job.input, { cfg, waitMs: 1000, retryMs: 1000 });
          return { status: r.status, error: r.error, cause: r.cause, durationMs: r.durationMs, executionArn: r.executionArn };
        },
      });
      await shipping;
      return 0;
    }

    case 'wal-push':
    case 'wal-fetch': {
      let parsed;
      try {
        parsed = parseArgs({ args: rest, options: { ...common, component: { type: 'string' }, from: { type: 'string' } }, allowPositionals: true, strict: true });
      } catch (err) {
        throw new UsageError(`${errorMessage(err)}\n\n${USAGE}`);
      }
      const a = parsed.values as Record<string, any>;
      const [one, two] = parsed.positionals;
      if (!a.component || parsed.positionals.length !== 2) throw new UsageError(`${cmd}: expected --component NAME ${cmd === 'wal-push' ? '%p %f' : '%f %p'}`);
      const cfg = loadConfig(a.config);
      const c = cfg.components[a.component];
      if (!c || c.kind !== 'postgres') throw new UsageError(`${cmd}: --component ${a.component} is not a postgres component; configured: ${Object.keys(cfg.components).join(', ')}`);
      if (cmd === 'wal-push' && a.from !== undefined) throw new UsageError('wal-push: --from is for wal-fetch (archiving always goes to the primary vault)');
      // wal-fetch --from secondary: a restore from the DR vault fetches its WAL there too.
      const vault = await openVault(cfg, side(a.from));
      const { walPush, walFetch } = await import('../functions/components/pg-wal.ts');
      if (cmd === 'wal-push') {
        const r = await walPush(vault, a.component, path.resolve(one), two);
        output(a.json).print(r.stored ? `${two}: archived as ${r.key}` : `${two}: already archived, identical (${r.key})`, r);
      } else {
        const r = await walFetch(vault, a.component, one, path.resolve(two));
        output(a.json).print(`${one}: fetched from ${r.key}`, r);
      }
      return 0;
    }

    case 'watch': {
      const a = parse(rest, { component: { type: 'string', multiple: true } });
      const cfg = loadConfig(a.config);
      const stop = new AbortController();
      process.once('SIGINT', () => stop.abort());
      process.once('SIGTERM', () => stop.abort());
      const { continuousComponents } = await import('../functions/ops.ts');
      const names = continuousComponents(cfg, a.component);
      if (names.length === 0) throw new UsageError('watch: no sqlite component has a continuous: block');
      log.info('watching', { components: names });
      await watchContinuous(cfg, { components: names, signal: stop.signal, log, alerts: alertSink(cfg, { json: a.json }) });
      return 0;
    }

    case 'report': {
      const a = parse(rest, { out: { type: 'string' }, metrics: { type: 'string' }, from: { type: 'string' } });
      const cfg = loadConfig(a.config);
      const { buildReport, parseMetricLines } = await import('../functions/core/report.ts');
      const { renderHtml, renderText } = await import('./report-html.ts');
      const vault = await openVault(cfg, side(a.from));
      const catalog = await readCatalog(vault);
      const metricsFile = (a.metrics as string | undefined) ?? (process.env.MEMVAULT_METRICS_FILE || undefined);
      let metricsText = '';
      if (metricsFile) {
        try {
          metricsText = await readFile(metricsFile, 'utf8');
        } catch (err) {
          // The environment's file appears with the first restore or drill; a file named on the command line must exist.
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || a.metrics) throw new UsageError(`--metrics ${metricsFile}: cannot read it (${errorMessage(err)})`);
        }
      }
      // Restores and drills, locally and on AWS, append audit records to the vault (records that do
      // not open are left out here; `memvault audit` names them).
      const audit = (await readAudit(vault)).records.filter((r) => r.op === 'restore' || r.op === 'drill');
      const report = buildReport({
        cfg, catalog, vaultUrl: vault.storage.url, vaultCreated: new Date(vault.doc.createdAt),
        metrics: parseMetricLines(metricsText), metricsFile: metricsFile ? path.resolve(metricsFile) : null, audit, now: new Date(),
      });
      const out = path.resolve(a.out ?? 'memvault-report.html');
      await writeFile(out, renderHtml(report));
      output(a.json).print(`${renderText(report)}\nreport written to ${out}`, { ...report, file: out });
      return 0;
    }

    default:
      throw new UsageError(`unknown command "${cmd}"\n\n${USAGE}`);
  }
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err) => {
    const code = err instanceof MemvaultError ? err.exitCode : 1;
    const msg = err instanceof ConfigError ? `invalid configuration:\n${err.problems.map((p) => `  ${p}`).join('\n')}` : errorMessage(err);
    process.stderr.write(`memvault: ${msg}\n`);
    if (process.env.MEMVAULT_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
    process.exitCode = code;
  },
);
