// validate-restore-input: the first step of the restore state machine. Checks
// the input an operator typed in the console (or the CLI built) and normalises
// it; anything wrong fails with a message naming the field and showing a valid
// example. Restores go to a sandbox by default; target.dir must lie inside the
// sandbox unless "outsideSandbox": true; in place only with "target":
// {"inPlace": true}. The target check (checkRestoreTarget) is the CLI's: no
// target may be, contain or be inside a component's live data. A target
// option that is a URL with a password is refused (naming the field, the URL
// shown as postgres://u:***@h): the request is passed from state to state and
// kept in the execution history, so a target's credentials are named by its
// secretArn (a Secrets Manager secret) instead.
// target may be, contain or be inside a component's live data.
//
// In place is for kinds with a live path (files, sqlite). Every other kind is
// refused up front, naming the kind and what to do instead (IN_PLACE_INSTEAD):
// memvault never restores over a live database, bucket or service; restore
// into a new one, validate it, then switch over (for RDS / Aurora: rename and
// swap). On AWS, target.dir is refused too: a directory is one Lambda
// function's /tmp.
import path from 'node:path';
import { z } from 'zod';
import { UsageError } from '../core/errors.ts';
import { checkRestoreTarget } from '../core/restore.ts';
import { resolvePath } from '../core/config.ts';
import { type HandlerDeps, invocationLog, json, lazyHandler, parseEvent, traced } from './deps.ts';
import { sandboxRoot } from './plan-restore.ts';
import { passwordsInUrls, redactUrlsIn } from '../adapters/secrets.ts';
import { onAws } from './restore-common.ts';

export const RESTORE_EXAMPLES = [
  '{"mode":"latest"}',
  '{"mode":"backup","backupId":"20260101-ab12cd34"}',
  '{"mode":"point-in-time","at":"2026-01-01T14:30:00Z","components":["memory-db"],"from":"secondary","target":{"dir":"/srv/restore","outsideSandbox":true}}',
];
const EXAMPLE = `${RESTORE_EXAMPLES[2]} (other modes: ${RESTORE_EXAMPLES[0]}, ${RESTORE_EXAMPLES[1]}; target.dir inside the sandbox needs no outsideSandbox; in place: "target":{"inPlace":true})`;

const restoreRequest = z.object({
  mode: z.enum(['latest', 'backup', 'point-in-time'], { error: (i) => `expected "latest", "backup" or "point-in-time", got ${JSON.stringify(i.input)}` }),
  backupId: z.string().min(1).optional(),
  at: z.string().optional(),
  components: z.array(z.string()).optional(),
  from: z.enum(['primary', 'secondary'], { error: (i) => `expected "primary" or "secondary", got ${JSON.stringify(i.input)}` }).default('primary'),
  /**
   * A sanitized restore for a sandbox: each component's mask rules are applied before
   * validation completes (never with target.inPlace). @default false
   */
  sandbox: z.boolean().default(false),
  target: z.object({
    /** Directory to restore into (inside the sandbox unless outsideSandbox). @default <sandbox>/restore-<execution name> */
    dir: z.string().optional(),
    /** The operator's explicit choice of a target.dir outside the sandbox. @default false */
    outsideSandbox: z.boolean().default(false),
    /** Replace the live data (after a safety backup). @default false */
    inPlace: z.boolean().default(false),
    /** Write into a non-empty sandbox directory. @default false */
    force: z.boolean().default(false),
    /**
     * Driver target options per component, e.g. the NEW instance of an rds-snapshot
     * restore: {"memory-db": {"instanceId": "memory-db-restored"}}. @default none
     */
    options: z.record(z.string(), z.record(z.string(), z.unknown())).optional(),
  }).strict().default({ inPlace: false, force: false, outsideSandbox: false }),
}).strict().superRefine((r, ctx) => {
  if (r.mode === 'backup' && !r.backupId) ctx.addIssue({ code: 'custom', path: ['backupId'], message: 'required when mode is "backup"' });
  if (r.mode !== 'backup' && r.backupId) ctx.addIssue({ code: 'custom', path: ['backupId'], message: `only used with mode "backup", not "${r.mode}"` });
  if (r.mode === 'point-in-time') {
    if (!r.at) ctx.addIssue({ code: 'custom', path: ['at'], message: 'required when mode is "point-in-time" (an ISO time like 2026-01-01T14:30:00Z)' });
    else if (!/^\d{4}-\d{2}-\d{2}/.test(r.at) || Number.isNaN(Date.parse(r.at))) ctx.addIssue({ code: 'custom', path: ['at'], message: `expected an ISO time like 2026-01-01T14:30:00Z, got ${JSON.stringify(r.at)}` });
  } else if (r.at) ctx.addIssue({ code: 'custom', path: ['at'], message: `only used with mode "point-in-time", not "${r.mode}"` });
  for (const c of Object.keys(r.target.options ?? {})) {
    if (r.components && r.components.length && !r.components.includes(c)) ctx.addIssue({ code: 'custom', path: ['target', 'options', c], message: `"${c}" is not among the components to restore (${r.components.join(', ')})` });
  }
  if (r.sandbox && r.target.inPlace) ctx.addIssue({ code: 'custom', path: ['sandbox'], message: 'a sanitized sandbox restore masks data and cannot be in place (target.inPlace: true restores production data unmasked); ask for one or the other' });
  if (r.target.inPlace && r.target.dir) ctx.addIssue({ code: 'custom', path: ['target', 'dir'], message: 'an in-place restore writes to the live locations; leave out target.dir' });
  if (r.target.outsideSandbox && !r.target.dir) ctx.addIssue({ code: 'custom', path: ['target', 'outsideSandbox'], message: 'only used with target.dir (the directory outside the sandbox to restore into)' });
});

export interface RestoreRequest {
  mode: 'latest' | 'backup' | 'point-in-time';
  backupId: string | null;
  at: string | null;
  components: string[];
  from: 'primary' | 'secondary';
  /** A sanitized (masked) restore for a sandbox. */
  sandbox: boolean;
  target: { dir: string | null; inPlace: boolean; force: boolean; outsideSandbox: boolean; options?: Record<string, Record<string, unknown>> };
}

export function parseRestoreRequest(input: unknown): RestoreRequest {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new UsageError(`restore input: expected a JSON object, got ${redactUrlsIn(JSON.stringify(input) ?? String(input))}; a valid input looks like ${EXAMPLE}`);
  }
  const r = parseEvent(restoreRequest, input, 'restore input', EXAMPLE);
  const passwords = passwordsInUrls(r.target.options ?? {}, 'target.options');
  if (passwords.length) throw new UsageError(`restore input: ${passwords.join('; ')}`);
  return {
    mode: r.mode, backupId: r.backupId ?? null, at: r.at ? new Date(r.at).toISOString() : null, components: r.components ?? [],
    from: r.from, sandbox: r.sandbox, target: { dir: r.target.dir ?? null, inPlace: r.target.inPlace, force: r.target.force, outsideSandbox: r.target.outsideSandbox, ...(r.target.options ? { options: r.target.options } : {}) },
  };
}

/** Why a kind is not restored in place, and what to do instead. */
export const IN_PLACE_INSTEAD: Record<string, string> = {
  'rds-snapshot': 'restore into a new instance (target.options.<component>.instanceId; left out: <source>-restore-<yyyymmddhhmm>), check it, then rename and swap: rename the live instance (aws rds modify-db-instance --new-db-instance-identifier <source>-old --apply-immediately), then the restored one to the live name',
  'aurora-snapshot': 'restore into a new cluster (target.options.<component>.clusterId; left out: <source>-restore-<yyyymmddhhmm>), check it, then rename and swap: rename the live cluster (aws rds modify-db-cluster --new-db-cluster-identifier <source>-old --apply-immediately), then the restored one to the live name',
  postgres: 'restore into a new database (target.options.<component>.url or host/database with secretArn), check it, then point the application at it (or ALTER DATABASE ... RENAME TO to swap names)',
  vector: 'restore into a new database or table (target.options.<component>.url and table), check it, then point the application at it',
  redis: 'restore into an empty server or database (target.options.<component>.url, databaseMap), then point the clients at it; with "force": true a restore into the live server replaces the keys it holds',
  mongodb: 'restore into new databases (target.options.<component>.uri or uriEnv with databaseMap), then point the application at them',
  's3-prefix': 'restore into another prefix or bucket (target.options.<component>.bucket and prefix); naming the source bucket and prefix there overwrites the live objects on purpose',
  'ssm-config': 'restore with target.options.<component> {"to": "aws"} (optionally parameterPathMap / secretNameMap to other names): without maps it overwrites the live parameters and secrets on purpose',
};

export const validateRestoreInputEvent = z.object({ input: z.unknown(), ...traced });

export function makeHandler(deps: HandlerDeps) {
  return async (event: unknown): Promise<RestoreRequest> => {
    const e = parseEvent(validateRestoreInputEvent, event, 'validate-restore-input event');
    const log = invocationLog(deps, 'validate-restore-input', e);
    const req = parseRestoreRequest(e.input);
    for (const c of req.components) {
      if (req.target.inPlace && !deps.cfg.components[c]) throw new UsageError(`restore input: components: "${c}" is not configured, so it has no live location for an in-place restore; configured: ${Object.keys(deps.cfg.components).join(', ')}`);
    }
    if (deps.cfg.aws) {
      // Deployed: a target's secret must be one the restore functions were granted (else AccessDenied mid-restore).
      const d = deps.cfg.aws.databaseSecrets;
      const granted = new Set([...d.restoreTargets, ...Object.values(d.components), ...Object.values(d.kinds),
        ...Object.values(deps.cfg.components).map((c) => (c as { secretArn?: string }).secretArn).filter((a): a is string => !!a)]);
      for (const [c, o] of Object.entries(req.target.options ?? {})) {
        const arn = o.secretArn;
        // A partial ARN in config (no 6-character suffix) is granted with the suffix wildcard.
        const isGranted = (a: string) => [...granted].some((g) => a === g || (a.length === g.length + 7 && a.startsWith(`${g}-`)));
        if (typeof arn === 'string' && !isGranted(arn)) {
          throw new UsageError(`restore input: target.options.${c}.secretArn: the restore functions may not read ${arn}; add it to aws.databaseSecrets.restoreTargets and deploy again`);
        }
      }
    }
    if (req.target.inPlace) {
      const named = req.components.length ? req.components : Object.keys(deps.cfg.components);
      const refused = named.filter((c) => typeof deps.cfg.components[c]?.path !== 'string').map((c) => {
        const kind = deps.cfg.components[c].kind;
        return `${c} is a ${kind} component, never restored over its live data: ${(IN_PLACE_INSTEAD[kind] ?? 'restore it into a new target (target.options)').replaceAll('<component>', c)}`;
      });
      if (refused.length) throw new UsageError(`restore input: target.inPlace: ${refused.join('; ')}${req.components.length ? '' : ' (an in-place restore of every component includes these: name the components to restore in place in "components")'}`);
    }
    if (req.target.dir && onAws(deps.cfg)) {
      throw new UsageError('restore input: target.dir: on AWS a restore does not go to a directory (it would be one Lambda function\'s /tmp, gone before the data is validated); leave out target.dir and name each component\'s target in target.options, e.g. {"mode":"latest","components":["memory-db"],"target":{"options":{"memory-db":{"instanceId":"memory-db-restored"}}}}');
    }
    if (req.target.dir) {
      // The components are known only after planning (plan-restore checks each <dir>/<component>);
      // those named here are checked now.
      await checkRestoreTarget(deps.cfg, {
        root: path.resolve(resolvePath(deps.cfg, req.target.dir)), components: req.components,
        field: 'restore input: target.dir', sandbox: sandboxRoot(deps), outsideSandbox: req.target.outsideSandbox,
      });
    }
    log.info('restore requested', { ...req });
    return json(req);
  };
}

export const handler = lazyHandler(makeHandler);
