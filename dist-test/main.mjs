var __defProp = Object.defineProperty;
var __getOwnPropNames = Object.getOwnPropertyNames;
var __esm = (fn, res, err) => function __init() {
  if (err) throw err[0];
  try {
    return fn && (res = (0, fn[__getOwnPropNames(fn)[0]])(fn = 0)), res;
  } catch (e) {
    throw err = [e], e;
  }
};
var __export = (target, all) => {
  for (var name in all)
    __defProp(target, name, { get: all[name], enumerable: true });
};

// functions/core/errors.ts
function errorMessage(err) {
  return err instanceof Error ? err.message : String(err);
}
function isRetryable(err) {
  return err instanceof RetryableError;
}
var MemvaultError, RetryableError, PermanentError, ConfigError, UsageError, NotFoundError, IntegrityError, WrongKeyError, LockedError, TransientStorageError, NotReadyError, ThrottledError;
var init_errors = __esm({
  "functions/core/errors.ts"() {
    "use strict";
    MemvaultError = class extends Error {
      /** Exit code for the CLI: 1 failure, 2 bad usage or bad config. */
      exitCode = 1;
      constructor(message, options) {
        super(message, options);
        this.name = "MemvaultError";
      }
    };
    RetryableError = class extends MemvaultError {
      constructor(message, options) {
        super(message, options);
        this.name = "RetryableError";
      }
    };
    PermanentError = class extends MemvaultError {
      constructor(message, options) {
        super(message, options);
        this.name = "PermanentError";
      }
    };
    ConfigError = class extends PermanentError {
      exitCode = 2;
      problems;
      constructor(problems) {
        const list = Array.isArray(problems) ? problems : [problems];
        super(list.length === 1 ? list[0] : `${list.length} problems:
  ${list.join("\n  ")}`);
        this.name = "ConfigError";
        this.problems = list;
      }
    };
    UsageError = class extends PermanentError {
      exitCode = 2;
      constructor(message) {
        super(message);
        this.name = "UsageError";
      }
    };
    NotFoundError = class extends PermanentError {
      constructor(message) {
        super(message);
        this.name = "NotFoundError";
      }
    };
    IntegrityError = class extends PermanentError {
      objectKey;
      constructor(message, objectKey) {
        super(message);
        this.name = "IntegrityError";
        this.objectKey = objectKey;
      }
    };
    WrongKeyError = class extends PermanentError {
      constructor(message) {
        super(message);
        this.name = "WrongKeyError";
      }
    };
    LockedError = class extends RetryableError {
      constructor(message) {
        super(message);
        this.name = "LockedError";
      }
    };
    TransientStorageError = class extends RetryableError {
      constructor(message, options) {
        super(message, options);
        this.name = "TransientStorageError";
      }
    };
    NotReadyError = class extends RetryableError {
      constructor(message) {
        super(message);
        this.name = "NotReadyError";
      }
    };
    ThrottledError = class extends RetryableError {
      constructor(message, options) {
        super(message, options);
        this.name = "ThrottledError";
      }
    };
  }
});

// functions/core/cron.ts
import { CronExpressionParser } from "cron-parser";
function parseCron(expr, tz = "UTC") {
  const fields = expr.trim().split(/\s+/);
  if (fields.length !== 5) {
    throw new ConfigError(`cron "${expr}": expected 5 fields (minute hour day-of-month month day-of-week), got ${fields.length}`);
  }
  try {
    return CronExpressionParser.parse(expr, { tz, strict: false });
  } catch (err) {
    throw new ConfigError(`cron "${expr}": ${err.message}`);
  }
}
function nextRun(expr, from, tz = "UTC") {
  const it = CronExpressionParser.parse(expr, { tz, currentDate: from });
  return it.next().toDate();
}
var init_cron = __esm({
  "functions/core/cron.ts"() {
    "use strict";
    init_errors();
  }
});

// functions/core/aws-config.ts
import { z } from "zod";
var got, positiveInt, intIn, AWS_ACCOUNT, AWS_REGION, account, region, secretArn, principalArn, LOG_RETENTION_DAYS, logRetention, lambdaSizingSchema, vpcSchema, DR_STATE_MACHINES, awsSchema;
var init_aws_config = __esm({
  "functions/core/aws-config.ts"() {
    "use strict";
    got = (i) => JSON.stringify(i.input);
    positiveInt = z.number({ error: (i) => `expected a positive integer, got ${got(i)}` }).int({ error: (i) => `expected a positive integer, got ${got(i)}` }).positive({ error: (i) => `expected a positive integer, got ${got(i)}` });
    intIn = (min, max, unit) => z.number({ error: (i) => `expected ${unit} between ${min} and ${max}, got ${got(i)}` }).int({ error: (i) => `expected ${unit} between ${min} and ${max}, got ${got(i)}` }).min(min, { error: (i) => `expected ${unit} between ${min} and ${max}, got ${got(i)}` }).max(max, { error: (i) => `expected ${unit} between ${min} and ${max}, got ${got(i)}` });
    AWS_ACCOUNT = /^\d{12}$/;
    AWS_REGION = /^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$/;
    account = z.string({ error: (i) => `expected a 12-digit AWS account id, got ${got(i)}` }).regex(AWS_ACCOUNT, { error: (i) => `expected a 12-digit AWS account id, got ${got(i)}` });
    region = z.string({ error: (i) => `expected an AWS region like eu-west-1, got ${got(i)}` }).regex(AWS_REGION, { error: (i) => `expected an AWS region like eu-west-1, got ${got(i)}` });
    secretArn = z.string().regex(
      /^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+$/,
      { error: (i) => `expected a Secrets Manager secret ARN (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME), got ${got(i)}` }
    );
    principalArn = z.string().regex(
      /^arn:aws[a-z-]*:(iam::\d{12}:(root|role\/[\w+=,.@/-]+|user\/[\w+=,.@/-]+)|sts::\d{12}:assumed-role\/[\w+=,.@/-]+)$/,
      { error: (i) => `expected an IAM role, user or account root ARN, got ${got(i)}` }
    );
    LOG_RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653];
    logRetention = z.number().refine((n) => LOG_RETENTION_DAYS.includes(n), {
      error: (i) => `expected one of the CloudWatch Logs retention periods (${LOG_RETENTION_DAYS.join(", ")}), got ${got(i)}`
    });
    lambdaSizingSchema = z.object({
      /** Memory in MB (CPU scales with it). */
      memoryMb: intIn(128, 10240, "a memory size in MB").optional(),
      /** Timeout in seconds; Lambda's maximum is 900. */
      timeoutSeconds: intIn(1, 900, "a timeout in seconds").optional(),
      /** /tmp size in MB (scratch copies of databases). */
      ephemeralStorageMb: intIn(512, 10240, "an ephemeral storage size in MB").optional(),
      /** Reserved concurrency (caps parallel exports against one database). */
      reservedConcurrency: intIn(1, 1e3, "a reserved concurrency").optional()
    }).strict();
    vpcSchema = z.object({
      subnetIds: z.array(z.string().regex(/^subnet-[0-9a-f]{8,17}$/, { error: (i) => `expected a subnet id (subnet-...), got ${got(i)}` })).min(1, "list at least one subnet id"),
      securityGroupIds: z.array(z.string().regex(/^sg-[0-9a-f]{8,17}$/, { error: (i) => `expected a security group id (sg-...), got ${got(i)}` })).min(1, "list at least one security group id"),
      /**
       * Handlers (kebab-case file names under functions/handlers) that run in the VPC.
       * @default the handlers that reach databases: export-*, restore-*, promote-restore, validate-restore, snapshot-*
       */
      handlers: z.array(z.string().regex(/^[a-z0-9][a-z0-9-]*$/, "expected a handler file name in kebab-case, e.g. export-postgres")).optional()
    }).strict();
    DR_STATE_MACHINES = ["restore", "verify-drill"];
    awsSchema = z.object({
      /** AWS account both stacks deploy to. */
      account,
      /** Primary region: vault, schedules, all state machines. */
      region,
      /** Disaster-recovery region: the secondary vault and the restore state machine. */
      drRegion: region,
      /**
       * Prefix of stack names (`<prefix>-Primary`, `<prefix>-Dr`) and, lowercased, of
       * bucket, key alias, topic and state machine names.
       * @default Memvault
       */
      stackPrefix: z.string().regex(/^[A-Za-z][A-Za-z0-9-]{0,19}$/, {
        error: (i) => `expected 1-20 letters, digits or -, starting with a letter, got ${got(i)}`
      }).default("Memvault"),
      /** Who receives alerts (failed backups, drills, RPO breaches, failed executions). */
      alerts: z.object({
        emails: z.array(z.email({ error: (i) => `expected an email address, got ${got(i)}` })).default([]),
        https: z.array(z.url({ protocol: /^https$/, error: (i) => `expected an https:// URL, got ${got(i)}` })).default([])
      }).strict().default({ emails: [], https: [] }),
      /** S3 Object Lock on both vault buckets (ransomware protection). Only settable when a bucket is created. */
      objectLock: z.object({
        mode: z.enum(["governance", "compliance"], { error: (i) => `expected "governance" or "compliance", got ${got(i)}` }),
        days: intIn(1, 36500, "a number of days")
      }).strict().optional(),
      /** Subnets and security groups for the handlers that reach databases (primary region). */
      vpc: vpcSchema.optional(),
      /** The same for the DR region's handlers. */
      drVpc: vpcSchema.optional(),
      /** Secrets Manager ARNs of database credentials, by component name or by kind. */
      databaseSecrets: z.object({
        components: z.record(z.string(), secretArn).default({}),
        kinds: z.record(z.string(), secretArn).default({})
      }).strict().default({ components: {}, kinds: {} }),
      /** Lambda sizing overrides: for all handlers and per handler (kebab-case file name). */
      lambda: z.object({
        default: lambdaSizingSchema.optional(),
        handlers: z.record(z.string().regex(/^[a-z0-9][a-z0-9-]*$/, "expected a handler file name in kebab-case"), lambdaSizingSchema).default({})
      }).strict().default({ handlers: {} }),
      /** Retention of Lambda and state machine logs, in days. @default 90 */
      logRetentionDays: logRetention.default(90),
      /** Retention of the S3 server access logs, in days. @default 365 */
      accessLogRetentionDays: positiveInt.default(365),
      /**
       * Days a version replaced or deleted by the engine (prune, lock release) is kept
       * before lifecycle removes it. With Object Lock it is at least the lock period.
       * @default 30
       */
      noncurrentVersionDays: positiveInt.default(30),
      /**
       * Storage-class transitions of chunk objects. `false` disables one; a number of
       * days overrides the default derived from the components' retention.
       * @default STANDARD_IA after 30 days and GLACIER_IR after 90 days, each only
       *   when the longest retention keeps chunks long enough to pay off
       */
      lifecycle: z.object({
        infrequentAccessAfterDays: z.union([z.literal(false), intIn(30, 36500, "a number of days (S3 needs at least 30)")]).optional(),
        glacierInstantRetrievalAfterDays: z.union([z.literal(false), intIn(1, 36500, "a number of days")]).optional()
      }).strict().default({}),
      /** Who may assume the recovery team and auditor roles. @default the account (IAM policies decide) */
      roles: z.object({
        recoveryTeam: z.array(principalArn).default([]),
        auditors: z.array(principalArn).default([])
      }).strict().default({ recoveryTeam: [], auditors: [] }),
      /** State machines also deployed in the DR region (they work from the secondary vault). @default ["restore"] */
      drStateMachines: z.array(z.enum(DR_STATE_MACHINES, {
        error: (i) => `expected one of ${DR_STATE_MACHINES.join(", ")}, got ${got(i)}`
      })).default(["restore"]),
      /** Overrides of the AWS values of non-Lambda ASL placeholders (see infra/substitutions.ts). */
      substitutions: z.record(z.string().regex(/^[A-Za-z][A-Za-z0-9]*$/, "expected a placeholder name"), z.string()).default({})
    }).strict().superRefine((a, ctx) => {
      if (a.drRegion === a.region) {
        ctx.addIssue({ code: "custom", path: ["drRegion"], message: `must differ from aws.region (both are ${a.region}): the DR copy needs another region` });
      }
    });
  }
});

// functions/core/config.ts
import { readFileSync, existsSync } from "node:fs";
import path from "node:path";
import { parse as parseYaml, YAMLParseError } from "yaml";
import { z as z2 } from "zod";
function makeConfigSchema(kinds) {
  const component = z2.looseObject({ kind: z2.string() }).superRefine((c, ctx) => {
    const schema = kinds[c.kind];
    if (!schema) {
      ctx.addIssue({
        code: "custom",
        path: ["kind"],
        message: `unknown kind "${c.kind}"; known kinds: ${Object.keys(kinds).sort().join(", ")}`
      });
    }
  }).transform((c, ctx) => {
    const schema = kinds[c.kind];
    if (!schema) return z2.NEVER;
    const full = componentBaseSchema.extend(schema.shape).strict();
    const r = full.safeParse(c);
    if (!r.success) {
      for (const issue of r.error.issues) {
        ctx.addIssue({ ...issue, code: "custom", message: issue.message, path: issue.path });
      }
      return z2.NEVER;
    }
    return r.data;
  });
  return z2.object({
    vault: z2.object({
      primary: vaultLocation,
      secondary: vaultLocation.optional()
    }).strict(),
    encryption: encryptionSchema,
    alerts: z2.array(alertSinkSchema).default([{ type: "stdout" }]),
    /** Where restore drills and default restores go (sandbox). */
    sandbox: z2.string().optional(),
    /** Schedules of the vault-wide jobs run by `memvault schedule`. */
    jobs: z2.object({
      verifyDrill: cronField.default("0 4 * * *"),
      retention: cronField.default("30 5 * * *"),
      rpoWatch: cronField.default("*/15 * * * *"),
      /** Percent of chunk data read on each drill; over 100/N runs all of it is read. */
      verifySubsetPercent: z2.number().min(1).max(100).default(10)
    }).strict().default({ verifyDrill: "0 4 * * *", retention: "30 5 * * *", rpoWatch: "*/15 * * * *", verifySubsetPercent: 10 }),
    components: z2.record(
      z2.string().regex(COMPONENT_NAME, "component names are lowercase letters, digits, - and _"),
      component
    ).refine((m) => Object.keys(m).length > 0, "define at least one component"),
    /** Deployment settings for the CDK app (functions/core/aws-config.ts). */
    aws: awsSchema.optional()
  }).strict();
}
function formatIssues(error) {
  return error.issues.map((i) => {
    const p = i.path.map(String).join(".");
    let msg = i.message;
    if (i.code === "unrecognized_keys") msg = `unknown field(s): ${i.keys.join(", ")}`;
    return p ? `${p}: ${msg}` : msg;
  });
}
function parseConfig(raw, kinds, baseDir, file) {
  const r = makeConfigSchema(kinds).safeParse(raw ?? {});
  if (!r.success) throw new ConfigError(formatIssues(r.error));
  const cfg = r.data;
  cfg.baseDir = baseDir;
  if (file) cfg.file = file;
  return cfg;
}
function locateConfig(explicit, env = process.env, cwd = process.cwd()) {
  const candidate = explicit ?? env.MEMVAULT_CONFIG ?? path.join(cwd, "memvault.yaml");
  const abs = path.resolve(cwd, candidate);
  if (!existsSync(abs)) {
    throw new ConfigError(`config file not found: ${abs} (pass --config FILE, set MEMVAULT_CONFIG, or create memvault.yaml here)`);
  }
  return abs;
}
function loadConfigFile(file, kinds) {
  let raw;
  try {
    raw = parseYaml(readFileSync(file, "utf8"));
  } catch (err) {
    if (err instanceof YAMLParseError) throw new ConfigError(`${file}: invalid YAML: ${err.message}`);
    throw new ConfigError(`${file}: cannot read: ${err.message}`);
  }
  return parseConfig(raw, kinds, path.dirname(file), file);
}
function resolvePath(cfg, p) {
  return path.resolve(cfg.baseDir, p);
}
var COMPONENT_NAME, vaultLocation, positiveInt2, retentionSchema, duration, cronField, componentBaseSchema, alertSinkSchema, encryptionSchema;
var init_config = __esm({
  "functions/core/config.ts"() {
    "use strict";
    init_errors();
    init_cron();
    init_aws_config();
    COMPONENT_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;
    vaultLocation = z2.union([
      z2.string().transform((url) => ({ url })),
      z2.object({
        url: z2.string(),
        endpoint: z2.string().url().optional(),
        region: z2.string().optional(),
        /** Path-style addressing for S3-compatible servers. */
        forcePathStyle: z2.boolean().optional()
      }).strict()
    ]).superRefine((v, ctx) => {
      if (!/^(file|s3):\/\//.test(v.url)) {
        ctx.addIssue({ code: "custom", message: `expected file://DIR or s3://bucket/prefix, got "${v.url}"` });
      }
    });
    positiveInt2 = z2.number({ error: (i) => `expected a positive integer, got ${JSON.stringify(i.input)}` }).int({ error: (i) => `expected a positive integer, got ${JSON.stringify(i.input)}` }).positive({ error: (i) => `expected a positive integer, got ${JSON.stringify(i.input)}` });
    retentionSchema = z2.object({
      /** Forget backups older than this many days (the newest backup is always kept). */
      days: positiveInt2.optional(),
      keepLast: positiveInt2.optional(),
      keepDaily: positiveInt2.optional(),
      keepWeekly: positiveInt2.optional(),
      keepMonthly: positiveInt2.optional()
    }).strict();
    duration = z2.string().regex(/^\d+(m|h|d)$/, "expected a duration like 90m, 26h or 8d");
    cronField = z2.string().superRefine((s, ctx) => {
      try {
        parseCron(s);
      } catch (err) {
        ctx.addIssue({ code: "custom", message: err.message });
      }
    });
    componentBaseSchema = z2.object({
      kind: z2.string(),
      critical: z2.boolean().default(false),
      /** Cron expression (5 fields, minute first) for scheduled backups. */
      schedule: cronField.optional(),
      /** IANA time zone the schedule is read in. @default UTC */
      timezone: z2.string().default("UTC"),
      /** Backup type the schedule runs. @default incremental */
      scheduleType: z2.enum(["full", "incremental"]).default("incremental"),
      /** Recovery point objective: alert when the newest backup is older. */
      rpo: duration.optional(),
      retention: retentionSchema.default({}),
      /** Free-form description for reports. */
      description: z2.string().optional()
    });
    alertSinkSchema = z2.discriminatedUnion("type", [
      z2.object({ type: z2.literal("stdout") }).strict(),
      z2.object({ type: z2.literal("file"), path: z2.string() }).strict(),
      z2.object({ type: z2.literal("sns"), topicArn: z2.string(), region: z2.string().optional() }).strict()
    ]);
    encryptionSchema = z2.object({
      /** Local key file (created by `memvault init`, mode 0600). */
      key: z2.string().optional(),
      /** KMS keys: one per vault region (primary, secondary). */
      kms: z2.object({
        primary: z2.string(),
        secondary: z2.string().optional(),
        region: z2.string().optional(),
        secondaryRegion: z2.string().optional()
      }).strict().optional()
    }).strict().refine((e) => e.key !== void 0 || e.kms !== void 0, {
      message: "set encryption.key (a local key file) or encryption.kms (KMS key ids)"
    });
  }
});

// functions/components/types.ts
function report(checks) {
  return { ok: checks.every((c) => c.ok), checks };
}
function hasServiceRetention(d) {
  return typeof d.pruneSnapshots === "function";
}
var init_types = __esm({
  "functions/components/types.ts"() {
    "use strict";
  }
});

// functions/core/chunker.ts
function highMask(bits) {
  return (2 ** bits - 1) * 2 ** (32 - bits) | 0;
}
async function* chunkStream(src, gear, p = DEFAULT_CHUNKER) {
  const c = new Chunker(gear, p);
  for await (const b of src) {
    const buf = Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
    for (const chunk of c.push(buf)) yield chunk;
  }
  const last = c.finish();
  if (last) yield last;
}
var DEFAULT_CHUNKER, Chunker;
var init_chunker = __esm({
  "functions/core/chunker.ts"() {
    "use strict";
    DEFAULT_CHUNKER = { min: 512 * 1024, avg: 1024 * 1024, max: 8 * 1024 * 1024 };
    Chunker = class {
      parts = [];
      size = 0;
      h = 0;
      maskS;
      maskL;
      gear;
      p;
      // No parameter properties here: this module also runs in worker threads
      // under Node's own type stripping (chunk-worker.ts), which allows only erasable syntax.
      constructor(gear, p = DEFAULT_CHUNKER) {
        this.gear = gear;
        this.p = p;
        if (!(p.min > 0 && p.min <= p.avg && p.avg <= p.max)) throw new Error(`invalid chunker params ${JSON.stringify(p)}`);
        const bits = Math.round(Math.log2(p.avg));
        this.maskS = highMask(bits + 2);
        this.maskL = highMask(bits - 2);
      }
      /** Feeds bytes; returns the chunks completed by them. */
      push(buf) {
        const out = [];
        const { min, avg, max } = this.p;
        const gear = this.gear;
        const maskS = this.maskS;
        const maskL = this.maskL;
        const end = buf.length;
        let h = this.h;
        let start = 0;
        let i = 0;
        while (i < end) {
          const cur = this.size + (i - start);
          if (cur < min) {
            i += Math.min(min - cur, end - i);
            h = 0;
            continue;
          }
          let cut = -1;
          if (cur < avg) {
            const lim = Math.min(end, i + (avg - cur));
            for (; i < lim; i++) {
              h = (h << 1) + gear[buf[i]] | 0;
              if ((h & maskS) === 0) {
                cut = i + 1;
                break;
              }
            }
          } else {
            const lim = Math.min(end, i + (max - cur));
            for (; i < lim; i++) {
              h = (h << 1) + gear[buf[i]] | 0;
              if ((h & maskL) === 0) {
                cut = i + 1;
                break;
              }
            }
            if (cut < 0 && this.size + (i - start) >= max) cut = i;
          }
          if (cut >= 0) {
            const tail = buf.subarray(start, cut);
            out.push(this.parts.length === 0 ? tail : Buffer.concat([...this.parts, tail], this.size + tail.length));
            this.parts = [];
            this.size = 0;
            start = cut;
            i = cut;
            h = 0;
          }
        }
        if (start < end) {
          this.parts.push(buf.subarray(start));
          this.size += end - start;
        }
        this.h = h;
        return out;
      }
      /** Returns the last, possibly short, chunk (or null when nothing is pending). */
      finish() {
        if (this.size === 0) return null;
        const last = this.parts.length === 1 ? this.parts[0] : Buffer.concat(this.parts, this.size);
        this.parts = [];
        this.size = 0;
        this.h = 0;
        return last;
      }
    };
  }
});

// functions/core/chunk-codec.ts
import zlib from "node:zlib";
function chunkKey(id) {
  return `chunks/${id.slice(0, 2)}/${id}`;
}
function chunkAad(kind, key) {
  const b = Buffer.allocUnsafe(1 + Buffer.byteLength(key));
  b[0] = kind;
  b.write(key, 1);
  return b;
}
function compressionLevel(data) {
  if (data.length < 256 * 1024) return 3;
  const sample = data.subarray(0, 64 * 1024);
  const z16 = zlib.zstdCompressSync(sample, { params: { [zlib.constants.ZSTD_c_compressionLevel]: 1 } });
  if (z16.length >= sample.length * 0.9) return 0;
  return z16.length >= sample.length * 0.8 ? 1 : 3;
}
function zstdOptions(inputLength, level) {
  return { chunkSize: Math.min(ZSTD_CHUNK, inputLength + (inputLength >> 8) + 1024), params: { [zlib.constants.ZSTD_c_compressionLevel]: level } };
}
function worthCompressing(compressed, original) {
  return compressed < original * 0.97;
}
var CHUNK_RAW, CHUNK_ZSTD, ZSTD_CHUNK;
var init_chunk_codec = __esm({
  "functions/core/chunk-codec.ts"() {
    "use strict";
    CHUNK_RAW = 2;
    CHUNK_ZSTD = 3;
    ZSTD_CHUNK = 2 * 1024 * 1024;
  }
});

// functions/core/crypto.ts
import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync, randomBytes, randomFillSync, webcrypto } from "node:crypto";
function webKeys(k) {
  k.web ??= Promise.all([
    subtle.importKey("raw", k.dataKey, { name: "AES-GCM" }, false, ["encrypt", "decrypt"]),
    subtle.importKey("raw", k.idKey, { name: "HMAC", hash: "SHA-256" }, false, ["sign"])
  ]).then(([data, id]) => ({ data, id }));
  return k.web;
}
async function chunkIdAsync(k, data) {
  const { id } = await webKeys(k);
  return Buffer.from(await subtle.sign("HMAC", id, data)).toString("hex");
}
async function sealChunkAsync(k, plaintext, kind, aad) {
  const { data } = await webKeys(k);
  const head = Buffer.allocUnsafe(13);
  head[0] = kind;
  randomFillSync(head, 1, 12);
  const ct = await subtle.encrypt({ name: "AES-GCM", iv: head.subarray(1), additionalData: chunkAad(kind, aad), tagLength: 128 }, data, plaintext);
  return [head, Buffer.from(ct)];
}
async function openChunkAsync(k, blob, aad) {
  const kind = blob[0];
  if (blob.length < 1 + 12 + 16 || kind !== CHUNK_RAW && kind !== CHUNK_ZSTD && kind !== VERSION) {
    throw new IntegrityError(`${aad}: not a memvault object (bad header or truncated)`, aad);
  }
  if (kind === VERSION) {
    const plain = await openAsync(k, blob, aad);
    return { kind: plain[0] === 0 ? CHUNK_RAW : plain[0] === 1 ? CHUNK_ZSTD : -1, plain: plain.subarray(1) };
  }
  const { data } = await webKeys(k);
  try {
    const pt = await subtle.decrypt({ name: "AES-GCM", iv: blob.subarray(1, 13), additionalData: chunkAad(kind, aad), tagLength: 128 }, data, blob.subarray(13));
    return { kind, plain: Buffer.from(pt) };
  } catch {
    throw new IntegrityError(`${aad}: authentication failed (object corrupt, truncated or moved)`, aad);
  }
}
async function openAsync(k, blob, aad) {
  if (blob.length < 1 + 12 + 16 || blob[0] !== VERSION) {
    throw new IntegrityError(`${aad}: not a memvault object (bad header or truncated)`, aad);
  }
  const { data } = await webKeys(k);
  try {
    const pt = await subtle.decrypt({ name: "AES-GCM", iv: blob.subarray(1, 13), additionalData: Buffer.from(aad), tagLength: 128 }, data, blob.subarray(13));
    return Buffer.from(pt);
  } catch {
    throw new IntegrityError(`${aad}: authentication failed (object corrupt, truncated or moved)`, aad);
  }
}
function deriveKeys(master, vaultId) {
  const salt = Buffer.from(`memvault:${vaultId}`);
  const k = (info) => Buffer.from(hkdfSync("sha256", master, salt, info, 32));
  const gearSeed = k("gear");
  const gear = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    gear[i] = createHmac("sha256", gearSeed).update(Uint8Array.of(i)).digest().readUInt32LE(0);
  }
  return { dataKey: k("data"), idKey: k("chunk-id"), gear };
}
function seal(key, plaintext, aad) {
  const nonce = randomBytes(12);
  const c = createCipheriv("aes-256-gcm", key, nonce);
  c.setAAD(Buffer.from(aad));
  const body = c.update(plaintext);
  const fin = c.final();
  return Buffer.concat([Uint8Array.of(VERSION), nonce, body, fin, c.getAuthTag()]);
}
function open(key, blob, aad) {
  if (blob.length < 1 + 12 + 16 || blob[0] !== VERSION) {
    throw new IntegrityError(`${aad}: not a memvault object (bad header or truncated)`, aad);
  }
  const nonce = blob.subarray(1, 13);
  const tag = blob.subarray(blob.length - 16);
  const d = createDecipheriv("aes-256-gcm", key, nonce);
  d.setAAD(Buffer.from(aad));
  d.setAuthTag(tag);
  try {
    return Buffer.concat([d.update(blob.subarray(13, blob.length - 16)), d.final()]);
  } catch {
    throw new IntegrityError(`${aad}: authentication failed (object corrupt, truncated or moved)`, aad);
  }
}
function chunkId(idKey, data) {
  return createHmac("sha256", idKey).update(data).digest("hex");
}
var subtle, VERSION;
var init_crypto = __esm({
  "functions/core/crypto.ts"() {
    "use strict";
    init_errors();
    init_chunk_codec();
    subtle = webcrypto.subtle;
    VERSION = 1;
  }
});

// functions/core/manifest.ts
function compactTime(d) {
  return d.toISOString().replace(/[-:]/g, "").replace(".", "");
}
function parseCompactTime(s) {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(\d{3})Z$/.exec(s);
  if (!m) return null;
  return /* @__PURE__ */ new Date(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}.${m[7]}Z`);
}
function manifestKey(component, time, type, id) {
  return `manifests/${component}/${compactTime(time)}.${type}.${id}`;
}
function parseManifestKey(key) {
  const m = /^manifests\/([a-z0-9][a-z0-9_-]*)\/(\d{8}T\d{9}Z)\.(full|incremental|critical)\.([a-z0-9-]+)$/.exec(key);
  if (!m) return null;
  const time = parseCompactTime(m[2]);
  if (!time) return null;
  return { key, component: m[1], time, type: m[3], id: m[4] };
}
var BACKUP_TYPES;
var init_manifest = __esm({
  "functions/core/manifest.ts"() {
    "use strict";
    BACKUP_TYPES = ["full", "incremental", "critical"];
  }
});

// functions/core/vault.ts
import os from "node:os";
import { readFileSync as readFileSync2 } from "node:fs";
import { randomBytes as randomBytes2 } from "node:crypto";
import zlib2 from "node:zlib";
import { promisify } from "node:util";
function parseChunkKey(key) {
  const m = /^chunks\/[0-9a-f]{2}\/([0-9a-f]{64})$/.exec(key);
  return m ? m[1] : null;
}
async function listCatalog(storage, component) {
  const refs = [];
  for await (const o of storage.list(component ? `manifests/${component}/` : "manifests/")) {
    const r = parseManifestKey(o.key);
    if (r) refs.push(r);
  }
  refs.sort((a, b) => b.time.getTime() - a.time.getTime() || b.key.localeCompare(a.key));
  return refs;
}
function deadLocalProcess(d) {
  if (d.host !== os.hostname() || d.pid === process.pid) return false;
  try {
    process.kill(d.pid, 0);
  } catch (err) {
    return err.code === "ESRCH";
  }
  try {
    const stat = readFileSync2(`/proc/${d.pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) === "Z";
  } catch {
    return false;
  }
}
var zstdCompress, zstdDecompress, VAULT_CONFIG_KEY, CHECK_PLAINTEXT, Vault, VaultLock;
var init_vault = __esm({
  "functions/core/vault.ts"() {
    "use strict";
    init_crypto();
    init_chunker();
    init_chunk_codec();
    init_manifest();
    init_errors();
    zstdCompress = promisify(zlib2.zstdCompress);
    zstdDecompress = promisify(zlib2.zstdDecompress);
    VAULT_CONFIG_KEY = "vault.json";
    CHECK_PLAINTEXT = "memvault key check";
    Vault = class _Vault {
      constructor(storage, doc, keys2) {
        this.storage = storage;
        this.doc = doc;
        this.keys = keys2;
      }
      storage;
      doc;
      keys;
      get id() {
        return this.doc.vaultId;
      }
      get chunker() {
        return this.doc.chunker;
      }
      /**
       * Creates a vault: a new master secret, wrapped by every given provider.
       * With `fromSecret` (replica vaults), the given secret and id are reused, so
       * objects copied between the two vaults open in both.
       */
      static async init(storage, providers, from) {
        if (await storage.has(VAULT_CONFIG_KEY)) {
          throw new PermanentError(`${storage.url} already holds a vault; refusing to overwrite it`);
        }
        const vaultId = from?.doc.vaultId ?? randomBytes2(8).toString("hex");
        const secret = from?.secret ?? randomBytes2(32);
        const context = { vault: vaultId };
        const wrapped = await Promise.all(providers.map((p) => p.wrap(secret, context)));
        const keys2 = deriveKeys(secret, vaultId);
        const doc = {
          format: "memvault/1",
          vaultId,
          createdAt: from?.doc.createdAt ?? (/* @__PURE__ */ new Date()).toISOString(),
          chunker: from?.doc.chunker ?? DEFAULT_CHUNKER,
          keys: wrapped,
          check: seal(keys2.dataKey, Buffer.from(CHECK_PLAINTEXT), `check:${vaultId}`).toString("base64")
        };
        await storage.put(VAULT_CONFIG_KEY, Buffer.from(JSON.stringify(doc, null, 2)));
        return new _Vault(storage, doc, keys2);
      }
      static async readDoc(storage) {
        let raw;
        try {
          raw = await storage.get(VAULT_CONFIG_KEY);
        } catch (err) {
          if (err instanceof NotFoundError) throw new NotFoundError(`${storage.url} holds no vault (run \`memvault init\`)`);
          throw err;
        }
        let doc;
        try {
          doc = JSON.parse(raw.toString("utf8"));
        } catch {
          throw new IntegrityError(`${storage.url}/${VAULT_CONFIG_KEY} is not valid JSON`, VAULT_CONFIG_KEY);
        }
        if (doc.format !== "memvault/1") throw new IntegrityError(`${storage.url}: unsupported vault format ${String(doc.format)}`, VAULT_CONFIG_KEY);
        return doc;
      }
      /** Opens a vault with a key provider. Throws WrongKeyError if it is not one of the vault's keys. */
      static async open(storage, provider) {
        const { vault } = await _Vault.openWithSecret(storage, provider);
        return vault;
      }
      static async openWithSecret(storage, provider) {
        const doc = await _Vault.readDoc(storage);
        const candidates = doc.keys.filter((k) => k.type === provider.type && k.keyId === provider.keyId);
        if (candidates.length === 0) {
          throw new WrongKeyError(
            `${storage.url}: ${provider.type} key ${provider.keyId} is not a key of this vault; it has ${doc.keys.map((k) => `${k.type} key ${k.keyId}`).join(", ")}`
          );
        }
        const secret = await provider.unwrap(candidates[0], { vault: doc.vaultId });
        const keys2 = deriveKeys(secret, doc.vaultId);
        try {
          open(keys2.dataKey, Buffer.from(doc.check, "base64"), `check:${doc.vaultId}`);
        } catch {
          throw new WrongKeyError(`${storage.url}: the unwrapped secret does not open this vault (wrong key or damaged vault.json)`);
        }
        return { vault: new _Vault(storage, doc, keys2), secret };
      }
      /** Adds a wrapping of the master secret for another provider (e.g. the DR region's KMS key). */
      static async addKey(storage, current, extra) {
        const { vault, secret } = await _Vault.openWithSecret(storage, current);
        if (vault.doc.keys.some((k) => k.type === extra.type && k.keyId === extra.keyId)) return;
        const doc = { ...vault.doc, keys: [...vault.doc.keys, await extra.wrap(secret, { vault: vault.id })] };
        await storage.put(VAULT_CONFIG_KEY, Buffer.from(JSON.stringify(doc, null, 2)));
      }
      // ---- chunks ----
      chunkId(data) {
        return chunkId(this.keys.idKey, data);
      }
      /** The chunk id computed on the thread pool, so hashing overlaps with chunking. */
      chunkIdAsync(data) {
        return chunkIdAsync(this.keys, data);
      }
      /** Compresses (unless incompressible) and seals a chunk. */
      async encodeChunk(data, id) {
        id ??= await this.chunkIdAsync(data);
        let payload = data;
        let compressed = false;
        const level = compressionLevel(data);
        if (level > 0) {
          const z16 = await zstdCompress(data, zstdOptions(data.length, level));
          if (worthCompressing(z16.length, data.length)) {
            payload = z16;
            compressed = true;
          }
        }
        const parts = await sealChunkAsync(this.keys, payload, compressed ? CHUNK_ZSTD : CHUNK_RAW, chunkKey(id));
        return {
          id,
          parts,
          compressed,
          size: parts[0].length + parts[1].length,
          get blob() {
            return Buffer.concat(parts);
          }
        };
      }
      async putChunk(enc) {
        await this.storage.put(chunkKey(enc.id), enc.parts);
      }
      /**
       * Opens a sealed chunk (AES-GCM authentication, bound to the chunk's key) and
       * checks its id. `checkId: false` skips recomputing the keyed id: restores do,
       * because they check each entry's SHA-256 end to end; verify keeps it.
       */
      async decodeChunk(id, blob, o = {}) {
        const key = chunkKey(id);
        const { kind, plain } = await openChunkAsync(this.keys, blob, key);
        let data;
        if (kind === CHUNK_RAW) data = plain;
        else if (kind === CHUNK_ZSTD) {
          try {
            data = await zstdDecompress(plain, { chunkSize: o.size ? Math.min(ZSTD_CHUNK, Math.max(64 * 1024, o.size)) : ZSTD_CHUNK });
          } catch {
            throw new IntegrityError(`chunk ${id}: cannot decompress`, key);
          }
        } else throw new IntegrityError(`chunk ${id}: unknown encoding`, key);
        if (o.checkId !== false && await this.chunkIdAsync(data) !== id) throw new IntegrityError(`chunk ${id}: content does not match its id`, key);
        if (o.size !== void 0 && data.length !== o.size) throw new IntegrityError(`chunk ${id}: ${data.length} bytes, the manifest says ${o.size}`, key);
        return data;
      }
      /** Reads, authenticates and checks a chunk. Missing: an IntegrityError naming the chunk. */
      async getChunk(id, o = {}) {
        let blob;
        try {
          blob = await this.storage.get(chunkKey(id));
        } catch (err) {
          if (err instanceof NotFoundError) throw new IntegrityError(`chunk ${id} is missing from ${this.storage.url}`, chunkKey(id));
          throw err;
        }
        return this.decodeChunk(id, blob, o);
      }
      /** Ids (and stored sizes) of every chunk in the vault. */
      async listChunks() {
        const out = /* @__PURE__ */ new Map();
        for await (const o of this.storage.list("chunks/")) {
          const id = parseChunkKey(o.key);
          if (id) out.set(id, o.size);
        }
        return out;
      }
      // ---- manifests and the catalog ----
      async writeManifest(key, m) {
        const z16 = await zstdCompress(Buffer.from(JSON.stringify(m)));
        const blob = seal(this.keys.dataKey, z16, key);
        await this.storage.put(key, blob);
        return blob.length;
      }
      async readManifest(ref) {
        const key = typeof ref === "string" ? ref : ref.key;
        let blob;
        try {
          blob = await this.storage.get(key);
        } catch (err) {
          if (err instanceof NotFoundError) throw new NotFoundError(`manifest ${key} not found in ${this.storage.url}`);
          throw err;
        }
        const z16 = open(this.keys.dataKey, blob, key);
        let m;
        try {
          m = JSON.parse((await zstdDecompress(z16)).toString("utf8"));
        } catch {
          throw new IntegrityError(`manifest ${key}: cannot decode`, key);
        }
        return m;
      }
      // ---- locks ----
      async lock(kind, staleMs = 30 * 6e4) {
        return VaultLock.acquire(this.storage, kind, staleMs);
      }
    };
    VaultLock = class _VaultLock {
      constructor(storage, key, doc) {
        this.storage = storage;
        this.key = key;
        this.doc = doc;
      }
      storage;
      key;
      doc;
      timer;
      static async acquire(storage, kind, staleMs) {
        const id = randomBytes2(6).toString("hex");
        const doc = { kind, id, host: os.hostname(), pid: process.pid, time: (/* @__PURE__ */ new Date()).toISOString() };
        const key = `locks/${kind}-${id}`;
        await storage.put(key, Buffer.from(JSON.stringify(doc)));
        const others = await _VaultLock.active(storage, staleMs);
        const conflict = others.find((o) => o.id !== id && (kind === "prune" || o.kind === "prune"));
        if (conflict) {
          await storage.delete(key);
          throw new LockedError(
            `${storage.url} is locked by a ${conflict.kind} on ${conflict.host} (pid ${conflict.pid}) since ${conflict.time}; try again when it has finished`
          );
        }
        const lock = new _VaultLock(storage, key, doc);
        lock.timer = setInterval(() => {
          lock.doc.time = (/* @__PURE__ */ new Date()).toISOString();
          storage.put(key, Buffer.from(JSON.stringify(lock.doc))).catch(() => void 0);
        }, Math.max(1e3, staleMs / 6));
        lock.timer.unref();
        return lock;
      }
      static async active(storage, staleMs) {
        const out = [];
        for await (const o of storage.list("locks/")) {
          try {
            const d = JSON.parse((await storage.get(o.key)).toString("utf8"));
            if (Date.now() - Date.parse(d.time) < staleMs && !deadLocalProcess(d)) out.push(d);
          } catch {
          }
        }
        return out;
      }
      async release() {
        if (this.timer) clearInterval(this.timer);
        await this.storage.delete(this.key);
      }
    };
  }
});

// functions/core/chunk-pool.ts
import { Worker } from "node:worker_threads";
import { existsSync as existsSync2 } from "node:fs";
import os2 from "node:os";
import { fileURLToPath } from "node:url";
function workersFromEnv(v) {
  if (!v) return 0;
  if (v === "auto") return Math.min(4, Math.max(1, os2.availableParallelism()));
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 64) throw new ConfigError(`MEMVAULT_WORKERS: expected a number of worker threads (0-64) or "auto", got "${v}"`);
  return n;
}
var WORKER_URL, ChunkPool;
var init_chunk_pool = __esm({
  "functions/core/chunk-pool.ts"() {
    "use strict";
    init_errors();
    WORKER_URL = new URL("./chunk-worker.ts", import.meta.url);
    ChunkPool = class _ChunkPool {
      slots = [];
      jobs = /* @__PURE__ */ new Map();
      nextJob = 1;
      constructor() {
      }
      /**
       * Starts `size` workers; null (stream on the main thread) where workers are off or cannot run.
       * Default: $MEMVAULT_WORKERS, else 0 — off. Workers make a backup of many files about 1.7x
       * faster on two cores but raise peak memory by about 100 MiB (each worker has its own heap
       * and buffers), so they are opt-in: `MEMVAULT_WORKERS=2` (or `auto`: one per core, at most 4).
       */
      static start(vault, known, o = {}) {
        const size = o.size ?? workersFromEnv(process.env.MEMVAULT_WORKERS);
        if (size < 1 || WORKER_URL.protocol !== "file:" || !existsSync2(fileURLToPath(WORKER_URL))) return null;
        const pool = new _ChunkPool();
        const knownIds = [...known];
        for (let i = 0; i < size; i++) {
          const credit = new SharedArrayBuffer(4);
          const worker = new Worker(WORKER_URL, {
            workerData: {
              idKey: vault.keys.idKey,
              dataKey: vault.keys.dataKey,
              gear: vault.keys.gear,
              params: vault.chunker,
              known: knownIds,
              credit,
              maxInflight: o.maxInflightBytes ?? 16 * 1024 * 1024
            },
            // Node's own type stripping runs the worker (no loader hooks in workers).
            execArgv: [],
            // The worker's own objects are few and small; its data is in buffers outside the heap.
            resourceLimits: { maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 64 }
          });
          worker.unref();
          const slot = { worker, inflight: new Int32Array(credit), busy: 0 };
          worker.on("message", (m) => pool.onMessage(slot, m));
          worker.on("error", (err) => pool.failAll(err));
          pool.slots.push(slot);
        }
        return pool;
      }
      get size() {
        return this.slots.length;
      }
      onMessage(slot, m) {
        const job = this.jobs.get(m.jobId);
        if (!job) return;
        if (m.type === "chunk") {
          const sealed = m.sealed ? Buffer.from(m.sealed) : null;
          job.onChunk({ id: m.id, size: m.size, sealed }, () => {
            if (sealed) {
              Atomics.sub(slot.inflight, 0, sealed.length);
              Atomics.notify(slot.inflight, 0);
            }
          });
        } else {
          slot.busy--;
          this.jobs.delete(m.jobId);
          if (m.type === "done") job.resolve({ size: m.size, sha256: m.sha256, chunks: m.chunks });
          else job.reject(Object.assign(new Error(m.message), { code: m.code }));
        }
      }
      failAll(err) {
        for (const j of this.jobs.values()) j.reject(err);
        this.jobs.clear();
      }
      /** Processes one file on the least busy worker; onChunk gets every chunk in order. */
      file(path18, onChunk) {
        const slot = this.slots.reduce((a, b) => b.busy < a.busy ? b : a);
        slot.busy++;
        const jobId = this.nextJob++;
        return new Promise((resolve, reject) => {
          this.jobs.set(jobId, { onChunk, resolve, reject });
          slot.worker.postMessage({ type: "file", jobId, path: path18 });
        });
      }
      async close() {
        await Promise.all(this.slots.map((s) => s.worker.terminate()));
        this.slots = [];
      }
    };
  }
});

// functions/core/writer.ts
import { createHash as createHash2 } from "node:crypto";
import { promises as fs } from "node:fs";
function readSize(size) {
  return Math.max(16 * 1024, Math.min(4 * 1024 * 1024, size + 1));
}
async function* readEntry(vault, entry, prefetchBytes = 16 * 1024 * 1024) {
  const chunks = entry.chunks ?? [];
  const hash = createHash2("sha256");
  const pending = [];
  let pendingBytes = 0;
  let next = 0;
  const fill = () => {
    while (next < chunks.length && (pending.length === 0 || pendingBytes + chunks[next].size <= prefetchBytes)) {
      const c = chunks[next++];
      const p = vault.getChunk(c.id, { checkId: !entry.sha256, size: c.size });
      p.catch(() => void 0);
      pending.push({ p, size: c.size });
      pendingBytes += c.size;
    }
  };
  let size = 0;
  fill();
  while (pending.length > 0) {
    const head = pending.shift();
    const data = await head.p;
    pendingBytes -= head.size;
    fill();
    hash.update(data);
    size += data.length;
    yield data;
  }
  if (size !== entry.size) {
    throw new IntegrityError(`${entry.path}: restored ${size} bytes, manifest says ${entry.size}`);
  }
  if (entry.sha256 && hash.digest("hex") !== entry.sha256) {
    throw new IntegrityError(`${entry.path}: checksum mismatch after restore`);
  }
}
var BackupWriter;
var init_writer = __esm({
  "functions/core/writer.ts"() {
    "use strict";
    init_chunker();
    init_errors();
    init_vault();
    init_chunk_pool();
    BackupWriter = class {
      constructor(vault, known, concurrency = 16, maxInflightBytes = 16 * 1024 * 1024) {
        this.vault = vault;
        this.known = known;
        this.concurrency = concurrency;
        this.maxInflightBytes = maxInflightBytes;
      }
      vault;
      known;
      concurrency;
      maxInflightBytes;
      stats = {
        bytesRead: 0,
        bytesTotal: 0,
        bytesUnchanged: 0,
        newBytes: 0,
        bytesStored: 0,
        chunksTotal: 0,
        chunksNew: 0,
        entries: 0
      };
      inflight = /* @__PURE__ */ new Set();
      inflightBytes = 0;
      failure;
      /** Called after each chunk with the running totals (for progress output). */
      onProgress;
      /** Stores a stream's bytes and returns its chunk list and checksum. */
      async writeStream(src) {
        const hash = createHash2("sha256");
        const chunks = [];
        let size = 0;
        for await (const chunk of chunkStream(src, this.vault.keys.gear, this.vault.chunker)) {
          if (this.failure) throw this.failure;
          hash.update(chunk);
          size += chunk.length;
          const ref = { id: "", size: chunk.length };
          chunks.push(ref);
          this.stats.chunksTotal++;
          this.stats.bytesRead += chunk.length;
          await this.schedule(chunk, ref);
          this.onProgress?.(this.stats);
        }
        await this.drain();
        this.stats.bytesTotal += size;
        this.stats.entries++;
        return { size, sha256: hash.digest("hex"), chunks };
      }
      pool;
      /** How many files writeFile can usefully take at once (the pool's workers, or 1 without a pool). */
      get fileParallelism() {
        this.pool ??= ChunkPool.start(this.vault, this.known);
        return this.pool ? Math.max(2, this.pool.size) : 1;
      }
      /**
       * Stores a file's bytes. With a chunk pool (several cores), a worker thread
       * chunks, hashes and seals the file while this thread stores what is new;
       * otherwise the file is streamed through writeStream here.
       */
      async writeFile(file, size) {
        this.pool ??= ChunkPool.start(this.vault, this.known);
        if (!this.pool) {
          const fh = await fs.open(file, "r");
          try {
            return await this.writeStream(fh.createReadStream({ highWaterMark: readSize(size), autoClose: false }));
          } finally {
            await fh.close();
          }
        }
        const puts = [];
        let failure;
        const r = await this.pool.file(file, (c, done) => {
          this.stats.chunksTotal++;
          this.stats.bytesRead += c.size;
          if (this.known.has(c.id)) {
            done();
          } else if (!c.sealed) {
            failure ??= new MemvaultError(`${file}: chunk ${c.id} was skipped by a worker but is not in the vault`);
            done();
          } else {
            const sealed = c.sealed;
            this.known.add(c.id);
            this.stats.chunksNew++;
            this.stats.newBytes += c.size;
            puts.push(this.vault.storage.put(chunkKey(c.id), sealed).then(
              () => {
                this.stats.bytesStored += sealed.length;
              },
              (err) => {
                failure ??= err;
                this.known.delete(c.id);
              }
            ).finally(done));
          }
          this.onProgress?.(this.stats);
        });
        await Promise.all(puts);
        if (failure) throw failure;
        this.stats.bytesTotal += r.size;
        this.stats.entries++;
        return r;
      }
      /** Stops the chunk pool's workers, if any were started. */
      async close() {
        await this.pool?.close();
        this.pool = void 0;
      }
      /** Stores a small in-memory buffer as a stream. */
      async writeBuffer(data) {
        return this.writeStream((async function* () {
          yield data;
        })());
      }
      /** Records an entry reused from the parent backup without reading it. */
      reuse(entry) {
        this.stats.entries++;
        this.stats.bytesTotal += entry.size;
        this.stats.bytesUnchanged += entry.size;
        this.stats.chunksTotal += entry.chunks?.length ?? 0;
      }
      /** Records an entry without content (directory, symlink). */
      recordMeta() {
        this.stats.entries++;
      }
      /**
       * Hashes (keyed), and if the vault lacks the chunk, compresses, encrypts and
       * uploads it, on the thread pool while the caller goes on chunking. At most
       * `maxInflightBytes` (and `concurrency` chunks) are in flight; one chunk
       * larger than that bound goes alone.
       */
      async schedule(chunk, ref) {
        while (this.inflight.size > 0 && (this.inflight.size >= this.concurrency || this.inflightBytes + chunk.length > this.maxInflightBytes)) {
          await Promise.race(this.inflight);
        }
        if (this.failure) throw this.failure;
        this.inflightBytes += chunk.length;
        const p = (async () => {
          const id = await this.vault.chunkIdAsync(chunk);
          ref.id = id;
          if (this.known.has(id)) return;
          this.known.add(id);
          this.stats.chunksNew++;
          this.stats.newBytes += chunk.length;
          try {
            const enc = await this.vault.encodeChunk(chunk, id);
            await this.vault.putChunk(enc);
            this.stats.bytesStored += enc.size;
          } catch (err) {
            this.known.delete(id);
            throw err;
          }
        })().catch((err) => {
          this.failure ??= err;
        }).finally(() => {
          this.inflightBytes -= chunk.length;
          this.inflight.delete(p);
        });
        this.inflight.add(p);
      }
      /** Waits for every upload; throws the first failure. */
      async drain() {
        await Promise.all(this.inflight);
        if (this.failure) throw this.failure;
      }
    };
  }
});

// functions/components/restore-file.ts
import { promises as fs2 } from "node:fs";
import path2 from "node:path";
function safeJoin(root, rel) {
  const abs = path2.resolve(root, rel);
  if (abs !== root && !abs.startsWith(root.endsWith(path2.sep) ? root : root + path2.sep)) {
    throw new IntegrityError(`manifest entry "${rel}" escapes the restore target`);
  }
  return abs;
}
async function writeFully(fh, data, pos) {
  let off = 0;
  while (off < data.length) {
    const { bytesWritten } = await fh.write(data, off, data.length - off, pos + off);
    off += bytesWritten;
  }
}
async function restoreEntryFile(vault, component, e, dest, o = {}) {
  await fs2.mkdir(path2.dirname(dest), { recursive: true });
  const tmp = `${dest}.memvault-partial`;
  const fh = await fs2.open(tmp, "w", 384);
  try {
    let pos = 0;
    for await (const data of readEntry(vault, e, o.prefetch ?? DEFAULT_PREFETCH)) {
      await writeFully(fh, data, pos);
      pos += data.length;
    }
  } catch (err) {
    await fh.close();
    await fs2.rm(tmp, { force: true });
    if (err instanceof IntegrityError) throw new IntegrityError(`${component}: ${e.path}: ${err.message}`, err.objectKey);
    throw err;
  }
  await fh.close();
  await fs2.rename(tmp, dest);
  if (o.mode !== void 0) await fs2.chmod(dest, o.mode);
  return e.size;
}
async function restoreEntriesToDir(vault, component, entries, dir) {
  await fs2.mkdir(dir, { recursive: true });
  let bytes2 = 0;
  for (const e of entries) bytes2 += await restoreEntryFile(vault, component, e, safeJoin(path2.resolve(dir), e.path));
  return bytes2;
}
var DEFAULT_PREFETCH;
var init_restore_file = __esm({
  "functions/components/restore-file.ts"() {
    "use strict";
    init_writer();
    init_errors();
    DEFAULT_PREFETCH = 8 * 1024 * 1024;
  }
});

// functions/components/files.ts
import { promises as fs3, createReadStream } from "node:fs";
import path3 from "node:path";
import { createHash as createHash3 } from "node:crypto";
import { z as z3 } from "zod";
function excluded(rel, patterns) {
  return patterns.some((p) => path3.matchesGlob(rel, p));
}
async function* walk(root, rel, patterns, warnings) {
  let names;
  try {
    names = (await fs3.readdir(path3.join(root, rel))).sort();
  } catch (err) {
    warnings.push(`${rel || "."}: cannot list directory (${err.code ?? err.message})`);
    return;
  }
  for (const name of names) {
    const r = rel ? `${rel}/${name}` : name;
    if (excluded(r, patterns)) continue;
    yield { rel: r, abs: path3.join(root, r) };
  }
}
async function restoreFile(ctx, e, abs) {
  await restoreEntryFile(ctx.vault, ctx.component, e, abs, { prefetch: FILE_PREFETCH, mode: e.mode });
  if (e.mtimeNs) await fs3.utimes(abs, nsToDate(e.mtimeNs), nsToDate(e.mtimeNs));
}
function nsToDate(ns) {
  return Number(BigInt(ns) / 1000n) / 1e6;
}
async function hashFile(p) {
  const h = createHash3("sha256");
  const size = (await fs3.stat(p)).size;
  for await (const b of createReadStream(p, { highWaterMark: readSize(size) })) h.update(b);
  return h.digest("hex");
}
async function validateTree(root, entries) {
  const checks = [];
  const problems = [];
  let files = 0;
  let bytes2 = 0;
  const found = new Array(entries.length);
  const hashing = new Limiter();
  for (const [i, e] of entries.entries()) {
    const abs = path3.join(root, e.path);
    const st = await fs3.lstat(abs, { bigint: true }).catch(() => null);
    if (!st) {
      found[i] = `${e.path}: missing`;
      continue;
    }
    if (e.type === "dir" && !st.isDirectory()) {
      found[i] = `${e.path}: not a directory`;
      continue;
    }
    if (e.type === "symlink") {
      if (!st.isSymbolicLink()) {
        found[i] = `${e.path}: not a symlink`;
        continue;
      }
      const t = await fs3.readlink(abs);
      if (t !== e.target) found[i] = `${e.path}: link points to ${t}, expected ${e.target}`;
      continue;
    }
    const here = [];
    if (e.mode !== void 0 && Number(st.mode & 0o7777n) !== e.mode) {
      here.push(`${e.path}: mode ${Number(st.mode & 0o7777n).toString(8)}, expected ${e.mode.toString(8)}`);
    }
    if (e.mtimeNs && st.mtimeNs / 1000n !== BigInt(e.mtimeNs) / 1000n && st.mtimeNs / 1000n - BigInt(e.mtimeNs) / 1000n !== 1n && BigInt(e.mtimeNs) / 1000n - st.mtimeNs / 1000n !== 1n) {
      here.push(`${e.path}: mtime differs`);
    }
    const done = () => {
      if (here.length > 0) found[i] = here.join("\n");
    };
    if (e.type !== "file") {
      done();
      continue;
    }
    if (!st.isFile()) {
      here.push(`${e.path}: not a regular file`);
      done();
      continue;
    }
    if (Number(st.size) !== e.size) {
      here.push(`${e.path}: size ${st.size}, expected ${e.size}`);
      done();
      continue;
    }
    if (!e.sha256) {
      files++;
      bytes2 += e.size;
      done();
      continue;
    }
    const sha = e.sha256;
    await hashing.run(Math.min(e.size, READ_HIGH_WATER * 2), async () => {
      if (await hashFile(abs) !== sha) here.push(`${e.path}: checksum differs`);
      else {
        files++;
        bytes2 += e.size;
      }
      done();
    });
  }
  await hashing.drain();
  for (const f of found) if (f) problems.push(...f.split("\n"));
  const expectedFiles = entries.filter((e) => e.type === "file").length;
  checks.push({ name: "files restored with matching SHA-256", ok: files === expectedFiles, expected: expectedFiles, actual: files });
  checks.push({ name: "bytes", ok: bytes2 === entries.reduce((a, e) => a + (e.type === "file" ? e.size : 0), 0), actual: bytes2 });
  checks.push({ name: "entries match manifest (type, mode, mtime, link target)", ok: problems.length === 0, actual: problems.slice(0, 20) });
  return report(checks);
}
var filesSchema, READ_HIGH_WATER, RESTORE_FILES, RESTORE_BYTES, FILE_PREFETCH, Limiter, filesDriver;
var init_files = __esm({
  "functions/components/files.ts"() {
    "use strict";
    init_types();
    init_restore_file();
    init_writer();
    init_errors();
    filesSchema = z3.object({
      /** Root directory of the tree. */
      path: z3.string(),
      /** Glob patterns (relative to path) to leave out, e.g. "cache/**". */
      exclude: z3.array(z3.string()).default([])
    });
    READ_HIGH_WATER = 4 * 1024 * 1024;
    RESTORE_FILES = 8;
    RESTORE_BYTES = 16 * 1024 * 1024;
    FILE_PREFETCH = 8 * 1024 * 1024;
    Limiter = class {
      constructor(files = RESTORE_FILES, bytes2 = RESTORE_BYTES) {
        this.files = files;
        this.bytes = bytes2;
      }
      files;
      bytes;
      running = /* @__PURE__ */ new Set();
      used = 0;
      failure;
      async run(cost, task) {
        while (this.running.size > 0 && (this.running.size >= this.files || this.used + cost > this.bytes)) {
          await Promise.race(this.running);
        }
        if (this.failure) throw this.failure.err;
        this.used += cost;
        const p = task().catch((err) => {
          this.failure ??= { err };
        }).finally(() => {
          this.used -= cost;
          this.running.delete(p);
        });
        this.running.add(p);
      }
      async drain() {
        await Promise.all(this.running);
        if (this.failure) throw this.failure.err;
      }
    };
    filesDriver = {
      kind: "files",
      mode: "stream",
      schema: filesSchema,
      async backup(ctx) {
        const root = ctx.resolve(ctx.settings.path);
        const rootStat = await fs3.stat(root).catch(() => null);
        if (!rootStat?.isDirectory()) throw new PermanentError(`components.${ctx.component}.path: ${root} is not a directory`);
        const warnings = [];
        const entries = [];
        const previous = /* @__PURE__ */ new Map();
        if (ctx.parent && ctx.type !== "full") for (const e of ctx.parent.entries) previous.set(e.path, e);
        let unchanged = 0;
        const parallel = ctx.writer.fileParallelism;
        const files = new Limiter(parallel > 1 ? parallel + 1 : 1, 32 * 1024 * 1024);
        const stack = [""];
        while (stack.length > 0) {
          const dir = stack.pop();
          const subdirs = [];
          for await (const { rel, abs } of walk(root, dir, ctx.settings.exclude, warnings)) {
            let st;
            try {
              st = await fs3.lstat(abs, { bigint: true });
            } catch (err) {
              warnings.push(`${rel}: cannot stat (${err.code})`);
              continue;
            }
            const base = { path: rel, mode: Number(st.mode & 0o7777n), mtimeNs: st.mtimeNs.toString() };
            if (st.isDirectory()) {
              entries.push({ ...base, type: "dir", size: 0 });
              ctx.writer.recordMeta();
              subdirs.push(rel);
            } else if (st.isSymbolicLink()) {
              entries.push({ ...base, type: "symlink", size: 0, target: await fs3.readlink(abs) });
              ctx.writer.recordMeta();
            } else if (st.isFile()) {
              const ino = st.ino.toString();
              const ctimeNs = st.ctimeNs.toString();
              const prev = previous.get(rel);
              if (prev && prev.type === "file" && prev.size === Number(st.size) && prev.mtimeNs === base.mtimeNs && prev.ctimeNs === ctimeNs && prev.ino === ino && prev.chunks) {
                entries.push({ ...prev, mode: base.mode });
                ctx.writer.reuse(prev);
                unchanged++;
                continue;
              }
              const slot = entries.length;
              entries.push(void 0);
              const size = Number(st.size);
              await files.run(Math.min(size, 8 * 1024 * 1024), async () => {
                try {
                  const r = await ctx.writer.writeFile(abs, size);
                  entries[slot] = { ...base, type: "file", size: r.size, sha256: r.sha256, chunks: r.chunks, ino, ctimeNs };
                } catch (err) {
                  const code = err.code;
                  if (!code) throw err;
                  warnings.push(code === "ENOENT" ? `${rel}: vanished during the backup` : code === "EACCES" || code === "EPERM" ? `${rel}: unreadable (${code})` : `${rel}: read failed (${code})`);
                }
              });
            } else {
              warnings.push(`${rel}: special file (socket, fifo or device) not backed up`);
            }
          }
          for (const d of subdirs.reverse()) stack.push(d);
        }
        await files.drain();
        const rootMode = Number(rootStat.mode & 4095);
        const kept = entries.filter((e) => e !== void 0);
        entries.length = 0;
        entries.push(...kept);
        return { entries, meta: { root, rootMode, files: entries.filter((e) => e.type === "file").length, unchanged }, warnings };
      },
      async restore(ctx) {
        const dest = ctx.target.dir;
        await fs3.mkdir(dest, { recursive: true });
        let bytes2 = 0;
        const dirs = [];
        const made = /* @__PURE__ */ new Set();
        const mkdirOnce = async (d) => {
          if (made.has(d)) return;
          await fs3.mkdir(d, { recursive: true });
          made.add(d);
        };
        const files = new Limiter();
        try {
          for (const e of ctx.manifest.entries) {
            const abs = safeJoin(dest, e.path);
            if (e.type === "dir") {
              await fs3.mkdir(abs, { recursive: true, mode: 448 });
              made.add(abs);
              dirs.push(e);
            } else if (e.type === "symlink") {
              await mkdirOnce(path3.dirname(abs));
              await fs3.rm(abs, { force: true });
              await fs3.symlink(e.target, abs);
              if (e.mtimeNs) await fs3.lutimes(abs, nsToDate(e.mtimeNs), nsToDate(e.mtimeNs)).catch(() => void 0);
            } else {
              await mkdirOnce(path3.dirname(abs));
              await files.run(Math.min(e.size, FILE_PREFETCH), () => restoreFile(ctx, e, abs));
              bytes2 += e.size;
            }
          }
        } finally {
          await files.drain().catch(() => void 0);
        }
        await files.drain();
        for (const d of dirs.reverse()) {
          const abs = safeJoin(dest, d.path);
          if (d.mode !== void 0) await fs3.chmod(abs, d.mode);
          if (d.mtimeNs) await fs3.utimes(abs, nsToDate(d.mtimeNs), nsToDate(d.mtimeNs));
        }
        return { location: dest, bytes: bytes2, entries: ctx.manifest.entries.length };
      },
      async validate(ctx) {
        return validateTree(ctx.location, ctx.manifest.entries);
      }
    };
  }
});

// functions/components/sqlite.ts
import { promises as fs4 } from "node:fs";
import os3 from "node:os";
import path4 from "node:path";
import { createHash as createHash4, randomBytes as randomBytes3 } from "node:crypto";
import { DatabaseSync, backup as sqliteBackup } from "node:sqlite";
import { z as z4 } from "zod";
function tableFigures(db) {
  const out = {};
  const tables = db.prepare(
    "SELECT name, sql FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
  ).all();
  for (const t of tables) {
    const q = `"${t.name.replaceAll('"', '""')}"`;
    const withoutRowid = /WITHOUT\s+ROWID/i.test(t.sql ?? "");
    const h = createHash4("sha256");
    let rows = 0;
    const stmt = db.prepare(`SELECT * FROM ${q}${withoutRowid ? "" : " ORDER BY rowid"}`);
    for (const row of stmt.iterate()) {
      h.update(JSON.stringify(row, (_k, v) => typeof v === "bigint" ? v.toString() : v instanceof Uint8Array ? Buffer.from(v).toString("base64") : v));
      h.update("\n");
      rows++;
    }
    out[t.name] = { rows, sha256: h.digest("hex") };
  }
  return out;
}
var sqliteSchema, sqliteDriver;
var init_sqlite = __esm({
  "functions/components/sqlite.ts"() {
    "use strict";
    init_types();
    init_errors();
    init_restore_file();
    sqliteSchema = z4.object({
      /** Path of the live database file. */
      path: z4.string(),
      /** Directory for the temporary consistent copy. @default the OS temp dir */
      scratchDir: z4.string().optional()
    });
    sqliteDriver = {
      kind: "sqlite",
      mode: "stream",
      schema: sqliteSchema,
      async backup(ctx) {
        const src = ctx.resolve(ctx.settings.path);
        const st = await fs4.stat(src).catch(() => null);
        if (!st?.isFile()) throw new NotFoundError(`components.${ctx.component}.path: database ${src} does not exist`);
        const scratch = ctx.settings.scratchDir ? ctx.resolve(ctx.settings.scratchDir) : os3.tmpdir();
        await fs4.mkdir(scratch, { recursive: true });
        const copy = path4.join(scratch, `memvault-${ctx.component}-${randomBytes3(6).toString("hex")}.sqlite`);
        let db;
        try {
          db = new DatabaseSync(src, { readOnly: true, timeout: 3e4 });
          const pages = await sqliteBackup(db, copy, { rate: 2 ** 31 - 1 });
          db.close();
          db = void 0;
          const copyDb = new DatabaseSync(copy, { readOnly: true });
          let integrity;
          let figures2;
          try {
            integrity = copyDb.prepare("PRAGMA integrity_check").get().integrity_check;
            figures2 = tableFigures(copyDb);
          } finally {
            copyDb.close();
          }
          if (integrity !== "ok") throw new IntegrityError(`${ctx.component}: the copy of ${src} fails integrity_check: ${integrity}`);
          const r = await ctx.writer.writeFile(copy, (await fs4.stat(copy)).size);
          const name = path4.basename(src);
          return {
            entries: [{ path: name, type: "file", mode: Number(st.mode & 511), mtimeNs: String(BigInt(Math.round(st.mtimeMs)) * 1000000n), size: r.size, sha256: r.sha256, chunks: r.chunks }],
            meta: { source: src, pages, tables: figures2 },
            warnings: []
          };
        } catch (err) {
          if (err instanceof Error && /file is not a database|malformed/i.test(err.message)) {
            throw new PermanentError(`components.${ctx.component}: ${src} is not a readable SQLite database: ${err.message}`);
          }
          throw err;
        } finally {
          db?.close();
          await fs4.rm(copy, { force: true });
        }
      },
      async restore(ctx) {
        const e = ctx.manifest.entries.find((x) => x.type === "file");
        if (!e) throw new IntegrityError(`${ctx.component}: manifest ${ctx.manifest.id} has no database entry`);
        await fs4.mkdir(ctx.target.dir, { recursive: true });
        const dest = path4.join(ctx.target.dir, path4.basename(e.path));
        for (const suffix of ["-wal", "-shm", "-journal"]) await fs4.rm(dest + suffix, { force: true });
        await restoreEntryFile(ctx.vault, ctx.component, e, dest, { mode: e.mode });
        return { location: dest, bytes: e.size, entries: 1 };
      },
      async validate(ctx) {
        const checks = [];
        let db;
        try {
          db = new DatabaseSync(ctx.location, { readOnly: true });
          const integrity = db.prepare("PRAGMA integrity_check").get().integrity_check;
          checks.push({ name: "PRAGMA integrity_check", ok: integrity === "ok", expected: "ok", actual: integrity });
          const expected = ctx.manifest.driver.tables ?? {};
          const actual = tableFigures(db);
          for (const [name, fig] of Object.entries(expected)) {
            const a = actual[name];
            checks.push({ name: `table ${name}: rows`, ok: a?.rows === fig.rows, expected: fig.rows, actual: a?.rows });
            checks.push({ name: `table ${name}: content hash`, ok: a?.sha256 === fig.sha256 });
          }
          const extra = Object.keys(actual).filter((n) => !(n in expected));
          checks.push({ name: "no unexpected tables", ok: extra.length === 0, actual: extra });
        } catch (err) {
          checks.push({ name: "open restored database", ok: false, actual: err.message });
        } finally {
          db?.close();
        }
        return report(checks);
      }
    };
  }
});

// functions/components/postgres.ts
import { spawn, spawnSync } from "node:child_process";
import { existsSync as existsSync3, readdirSync } from "node:fs";
import { promises as fs5 } from "node:fs";
import path5 from "node:path";
import { z as z5 } from "zod";
function parsePgUrl(url, field) {
  let u;
  try {
    u = new URL(url);
  } catch {
    throw new ConfigError(`${field}: expected a URL like postgres://user@host:5432/db, got "${url.replace(/:[^:@/]*@/, ":***@")}"`);
  }
  if (u.protocol !== "postgres:" && u.protocol !== "postgresql:") {
    throw new ConfigError(`${field}: expected a postgres:// URL, got ${u.protocol}//...`);
  }
  const ssl = u.searchParams.get("sslmode");
  return {
    host: u.hostname ? decodeURIComponent(u.hostname) : void 0,
    port: u.port ? Number(u.port) : void 0,
    user: u.username ? decodeURIComponent(u.username) : void 0,
    password: u.password ? decodeURIComponent(u.password) : void 0,
    database: u.pathname.length > 1 ? decodeURIComponent(u.pathname.slice(1)) : void 0,
    sslmode: ssl === "require" || ssl === "verify-full" || ssl === "disable" ? ssl : ssl === "prefer" || ssl === "allow" || ssl === null ? void 0 : "require"
  };
}
async function resolvePgConnection(s, field) {
  const fromUrl = s.url ? parsePgUrl(s.url, `${field}.url`) : {};
  const c = {
    ...fromUrl,
    ...s.host ? { host: s.host } : {},
    ...s.port ? { port: s.port } : {},
    ...s.user ? { user: s.user } : {},
    ...s.database ? { database: s.database } : {}
  };
  if (s.passwordEnv) {
    const v = process.env[s.passwordEnv];
    if (v === void 0) throw new ConfigError(`${field}.passwordEnv: environment variable ${s.passwordEnv} is not set`);
    c.password = v;
  }
  if (s.secretArn) {
    const region3 = s.secretArn.split(":")[3];
    let out;
    try {
      const client = await secretsClientFactory(region3);
      out = await client.send(new (await secretsSdk()).GetSecretValueCommand({ SecretId: s.secretArn }));
    } catch (err) {
      const name = err.name;
      if (/Throttl|InternalService|TimeoutError|NetworkingError/.test(name)) {
        throw new RetryableError(`${field}.secretArn: Secrets Manager ${name}: ${err.message}`, { cause: err });
      }
      if (name === "ResourceNotFoundException") throw new NotFoundError(`${field}.secretArn: secret ${s.secretArn} does not exist`);
      throw new PermanentError(`${field}.secretArn: cannot read ${s.secretArn}: ${name}: ${err.message}`, { cause: err });
    }
    const text = out.SecretString ?? (out.SecretBinary ? Buffer.from(out.SecretBinary).toString("utf8") : void 0);
    if (text === void 0) throw new PermanentError(`${field}.secretArn: secret ${s.secretArn} has no value`);
    let doc;
    try {
      const parsed = JSON.parse(text);
      if (parsed && typeof parsed === "object") doc = parsed;
    } catch {
    }
    if (doc) {
      if (typeof doc.password !== "string") throw new PermanentError(`${field}.secretArn: secret ${s.secretArn} is JSON without a "password" field`);
      c.password = doc.password;
      if (!c.user && typeof doc.username === "string") c.user = doc.username;
      if (!c.host && typeof doc.host === "string") c.host = doc.host;
      if (!c.port && doc.port !== void 0) c.port = Number(doc.port);
      if (!c.database && typeof doc.dbname === "string") c.database = doc.dbname;
    } else {
      c.password = text;
    }
  }
  if (s.sslmode) c.sslmode = s.sslmode;
  if (!c.host) throw new ConfigError(`${field}: set url (postgres://user@host:5432/db) or host`);
  if (!c.database) throw new ConfigError(`${field}: no database named; put it in url or set database`);
  return { host: c.host, port: c.port ?? 5432, user: c.user ?? "postgres", password: c.password, database: c.database, sslmode: c.sslmode ?? "disable" };
}
function pgClientConfig(c, database = c.database) {
  return {
    host: c.host,
    port: c.port,
    user: c.user,
    password: c.password,
    database,
    ssl: c.sslmode === "disable" ? false : { rejectUnauthorized: c.sslmode === "verify-full" },
    application_name: "memvault"
  };
}
function pgToolEnv(c, database = c.database) {
  const env = { ...process.env, PGHOST: c.host, PGPORT: String(c.port), PGUSER: c.user, PGDATABASE: database, PGSSLMODE: c.sslmode, PGAPPNAME: "memvault", PGCONNECT_TIMEOUT: "30" };
  if (c.password !== void 0) env.PGPASSWORD = c.password;
  else delete env.PGPASSWORD;
  return env;
}
function describeConnection(c, database = c.database) {
  return `postgres://${encodeURIComponent(c.user)}@${c.host}:${c.port}/${encodeURIComponent(database)}`;
}
function mapPgError(err, what) {
  const e = err;
  const code = e.code ?? "";
  if (code === "ECONNREFUSED" || code === "ETIMEDOUT" || code === "ECONNRESET" || code === "EAI_AGAIN" || code.startsWith("08") || code === "57P03" || code === "53300" || code === "40001" || code === "40P01") {
    return new RetryableError(`${what}: ${e.message}`, { cause: err });
  }
  if (code === "28P01" || code === "28000") return new PermanentError(`${what}: authentication failed: ${e.message}`, { cause: err });
  if (code === "3D000") return new NotFoundError(`${what}: ${e.message}`);
  return err instanceof Error ? err : new Error(String(err));
}
async function connectPg(c, what, database = c.database) {
  const client = new (await pgLib()).Client(pgClientConfig(c, database));
  client.on("error", () => void 0);
  try {
    await client.connect();
    await client.query(SESSION_SETUP);
  } catch (err) {
    await client.end().catch(() => void 0);
    throw mapPgError(err, `${what}: connecting to ${describeConnection(c, database)}`);
  }
  return client;
}
function qi(name) {
  return `"${name.replaceAll('"', '""')}"`;
}
function qname(schema, name) {
  return `${qi(schema)}.${qi(name)}`;
}
function ql(s) {
  return `'${s.replaceAll("'", "''")}'`;
}
function globToRegExp(glob) {
  const re = glob.replace(/[.+^${}()|[\]\\]/g, "\\$&").replaceAll("*", ".*").replaceAll("?", ".");
  return new RegExp(`^${re}$`);
}
function tableSelected(schema, table2, sel) {
  const match = (p) => p.includes(".") ? globToRegExp(p).test(`${schema}.${table2}`) : globToRegExp(p).test(table2);
  if (sel.include.length > 0 && !sel.include.some(match)) return false;
  return !sel.exclude.some(match);
}
async function listTables(db, sel = { include: [], exclude: [] }) {
  const r = await db.query(
    `SELECT n.nspname AS schema, c.relname AS name, c.oid::int8::float8 AS oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p') AND ${USER_NS} AND ${NOT_EXT("pg_class", "c.oid")} ORDER BY 1, 2`
  );
  return r.rows.filter((t) => tableSelected(t.schema, t.name, sel));
}
async function databaseFigures(db, tables) {
  const out = { tables: {}, sequences: {}, extensions: [] };
  for (const t of tables) {
    const r = await db.query(
      `SELECT count(*)::text AS rows,
              coalesce(sum(('x' || substr(md5(memvault_row_::text), 1, 16))::bit(64)::int8::numeric), 0)::text AS checksum,
              (SELECT count(*) FROM pg_index i WHERE i.indrelid = $1::regclass)::text AS indexes,
              (SELECT count(*) FROM pg_constraint c WHERE c.conrelid = $1::regclass)::text AS constraints
       FROM ONLY ${qname(t.schema, t.name)} AS memvault_row_`,
      [qname(t.schema, t.name)]
    );
    const row = r.rows[0];
    out.tables[`${t.schema}.${t.name}`] = { rows: Number(row.rows), checksum: row.checksum, indexes: Number(row.indexes), constraints: Number(row.constraints) };
  }
  const selected = new Set(tables.map((t) => `${t.schema}.${t.name}`));
  const seqs = await db.query(
    `SELECT n.nspname AS schema, c.relname AS name, s.last_value::text AS last_value,
            tn.nspname AS ots, t.relname AS otn, a.attname AS col
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     JOIN pg_sequences s ON s.schemaname = n.nspname AND s.sequencename = c.relname
     LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
     LEFT JOIN pg_class t ON t.oid = d.refobjid LEFT JOIN pg_namespace tn ON tn.oid = t.relnamespace
     LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
     WHERE c.relkind = 'S' AND ${USER_NS} AND ${NOT_EXT("pg_class", "c.oid")} ORDER BY 1, 2`
  );
  for (const s of seqs.rows) {
    if (s.ots && !selected.has(`${s.ots}.${s.otn}`)) continue;
    out.sequences[`${s.schema}.${s.name}`] = {
      lastValue: s.last_value,
      isCalled: s.last_value !== null,
      ...s.ots ? { ownedBy: { schema: s.ots, table: s.otn, column: s.col } } : {}
    };
  }
  out.extensions = (await db.query("SELECT extname FROM pg_extension ORDER BY 1")).rows.map((r) => r.extname);
  return out;
}
async function userObjectCount(db) {
  const r = await db.query(
    `SELECT count(*)::text AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND ${USER_NS} AND ${NOT_EXT("pg_class", "c.oid")}`
  );
  return Number(r.rows[0].n);
}
function findPgTool(tool, explicit) {
  if (explicit) {
    const p = tool === "pg_dump" ? explicit : path5.join(path5.dirname(explicit), "pg_restore");
    return existsSync3(p) ? p : void 0;
  }
  const root = "/usr/lib/postgresql";
  if (existsSync3(root)) {
    const versions = readdirSync(root).filter((v) => existsSync3(path5.join(root, v, "bin", tool))).sort((a, b) => Number(b) - Number(a));
    if (versions.length > 0) return path5.join(root, versions[0], "bin", tool);
  }
  for (const dir of (process.env.PATH ?? "").split(path5.delimiter)) {
    if (dir && existsSync3(path5.join(dir, tool))) return path5.join(dir, tool);
  }
  return void 0;
}
function toolMajor(bin) {
  const r = spawnSync(bin, ["--version"], { encoding: "utf8" });
  const m = /(\d+)(?:\.\d+)?/.exec(r.stdout ?? "");
  return r.status === 0 && m ? Number(m[1]) : void 0;
}
function runTool(bin, args, env, stdin) {
  const child = spawn(bin, args, { env, stdio: [stdin ? "pipe" : "ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (b) => {
    stderr = (stderr + String(b)).slice(-8e3);
  });
  const done = new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code, signal) => {
      if (code === 0) resolve();
      else reject(new PermanentError(`${path5.basename(bin)} failed (${signal ?? `exit ${code}`}): ${stderr.trim().split("\n").slice(-5).join(" | ")}`));
    });
  });
  done.catch(() => void 0);
  let fed = Promise.resolve();
  if (stdin) {
    fed = (async () => {
      const sink = child.stdin;
      sink.on("error", () => void 0);
      for await (const b of stdin) {
        if (child.exitCode !== null) break;
        if (!sink.write(b)) await new Promise((r) => {
          sink.once("drain", r);
          child.once("close", r);
        });
      }
      sink.end();
    })();
  }
  return { child, stdout: child.stdout, done, fed, stderr: () => stderr };
}
async function unsupportedObjects(db, tables) {
  const oids = tables.map((t) => t.oid);
  const q = async (label, sql, params = []) => {
    const r = await db.query(sql, params);
    return r.rows.length > 0 ? [`${label} not rebuilt by the driver path (use method: pg_dump): ${r.rows.slice(0, 10).map((x) => x.name).join(", ")}${r.rows.length > 10 ? ", ..." : ""}`] : [];
  };
  return [
    ...await q("domains / composite / range types", `SELECT n.nspname || '.' || t.typname AS name FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
      WHERE ${USER_NS} AND (t.typtype IN ('d', 'r', 'm') OR (t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')) AND ${NOT_EXT("pg_type", "t.oid")}`),
    ...await q("aggregates / window functions", `SELECT n.nspname || '.' || p.proname AS name FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE ${USER_NS} AND p.prokind IN ('a', 'w') AND ${NOT_EXT("pg_proc", "p.oid")}`),
    ...await q("materialized views / foreign tables", `SELECT n.nspname || '.' || c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ${USER_NS} AND c.relkind IN ('m', 'f') AND ${NOT_EXT("pg_class", "c.oid")}`),
    ...await q("partitioned or inherited tables", `SELECT c.oid::regclass::text AS name FROM pg_class c WHERE c.oid = ANY($1::oid[]) AND (c.relkind = 'p' OR c.relispartition OR EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid))`, [oids]),
    ...await q("row-level security policies", `SELECT p.polname || ' on ' || p.polrelid::regclass::text AS name FROM pg_policy p WHERE p.polrelid = ANY($1::oid[])`, [oids]),
    ...await q("rules", `SELECT r.rulename || ' on ' || r.ev_class::regclass::text AS name FROM pg_rewrite r WHERE r.ev_class = ANY($1::oid[]) AND r.rulename <> '_RETURN'`, [oids])
  ];
}
async function tableColumns(db, oid) {
  const r = await db.query(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS notnull,
            pg_get_expr(ad.adbin, ad.adrelid) AS def, a.attidentity AS identity, a.attgenerated AS generated,
            CASE WHEN a.attcollation <> t.typcollation AND a.attcollation <> 0 THEN (SELECT quote_ident(cn.nspname) || '.' || quote_ident(co.collname) FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = a.attcollation) END AS collation
     FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
     WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
    [oid]
  );
  return r.rows;
}
async function driverSchema(db, tables, warnings) {
  const pre = [];
  const post = [];
  const oids = tables.map((t) => t.oid);
  const schemas = await db.query(
    `SELECT n.nspname AS name FROM pg_namespace n WHERE ${USER_NS} AND n.nspname <> 'public' AND ${NOT_EXT("pg_namespace", "n.oid")} ORDER BY n.oid`
  );
  for (const s of schemas.rows) pre.push(`CREATE SCHEMA IF NOT EXISTS ${qi(s.name)}`);
  const exts = await db.query(
    `SELECT e.extname AS name, n.nspname AS schema FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname <> 'plpgsql' ORDER BY e.oid`
  );
  for (const e of exts.rows) pre.push(`CREATE EXTENSION IF NOT EXISTS ${qi(e.name)} WITH SCHEMA ${qi(e.schema)}`);
  const enums = await db.query(
    `SELECT n.nspname AS schema, t.typname AS name, array_agg(e.enumlabel::text ORDER BY e.enumsortorder) AS labels
     FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace JOIN pg_enum e ON e.enumtypid = t.oid
     WHERE ${USER_NS} AND ${NOT_EXT("pg_type", "t.oid")} GROUP BY t.oid, n.nspname, t.typname ORDER BY t.oid`
  );
  for (const e of enums.rows) pre.push(`CREATE TYPE ${qname(e.schema, e.name)} AS ENUM (${e.labels.map(ql).join(", ")})`);
  const funcs = await db.query(
    `SELECT pg_get_functiondef(p.oid) AS def FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE ${USER_NS} AND p.prokind IN ('f', 'p') AND ${NOT_EXT("pg_proc", "p.oid")} ORDER BY p.oid`
  );
  for (const f of funcs.rows) pre.push(f.def);
  const seqs = await db.query(
    `SELECT n.nspname AS schema, c.relname AS name, format_type(s.seqtypid, NULL) AS type, s.seqincrement::text AS inc, s.seqmin::text AS min,
            s.seqmax::text AS max, s.seqstart::text AS start, s.seqcache::text AS cache, s.seqcycle AS cycle,
            tn.nspname AS ots, t.relname AS otn, a.attname AS col
     FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
     LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'a'
     LEFT JOIN pg_class t ON t.oid = d.refobjid LEFT JOIN pg_namespace tn ON tn.oid = t.relnamespace
     LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
     WHERE ${USER_NS} AND ${NOT_EXT("pg_class", "c.oid")}
       AND NOT EXISTS (SELECT 1 FROM pg_depend di WHERE di.classid = 'pg_class'::regclass AND di.objid = c.oid AND di.deptype = 'i')
     ORDER BY c.oid`
  );
  const ownedBy = [];
  const selected = new Set(tables.map((t) => `${t.schema}.${t.name}`));
  for (const s of seqs.rows) {
    if (s.ots && !selected.has(`${s.ots}.${s.otn}`)) continue;
    pre.push(`CREATE SEQUENCE ${qname(s.schema, s.name)} AS ${s.type} INCREMENT BY ${s.inc} MINVALUE ${s.min} MAXVALUE ${s.max} START WITH ${s.start} CACHE ${s.cache} ${s.cycle ? "CYCLE" : "NO CYCLE"}`);
    if (s.ots) ownedBy.push(`ALTER SEQUENCE ${qname(s.schema, s.name)} OWNED BY ${qname(s.ots, s.otn)}.${qi(s.col)}`);
  }
  const columns = /* @__PURE__ */ new Map();
  for (const t of tables) {
    const rel = await db.query("SELECT relpersistence AS persistence FROM pg_class WHERE oid = $1", [t.oid]);
    const cols = await tableColumns(db, t.oid);
    columns.set(t.oid, cols);
    const defs = cols.map((c) => {
      let d = `${qi(c.name)} ${c.type}`;
      if (c.collation) d += ` COLLATE ${c.collation}`;
      if (c.generated === "s") d += ` GENERATED ALWAYS AS (${c.def}) STORED`;
      else if (c.identity === "a") d += " GENERATED ALWAYS AS IDENTITY";
      else if (c.identity === "d") d += " GENERATED BY DEFAULT AS IDENTITY";
      else if (c.def !== null) d += ` DEFAULT ${c.def}`;
      if (c.notnull) d += " NOT NULL";
      return d;
    });
    pre.push(`CREATE ${rel.rows[0].persistence === "u" ? "UNLOGGED " : ""}TABLE ${qname(t.schema, t.name)} (${defs.join(", ")})`);
  }
  pre.push(...ownedBy);
  const cons = await db.query(
    `SELECT c.conrelid::regclass::text AS rel, c.conname AS name, pg_get_constraintdef(c.oid) AS def, c.contype, nullif(c.confrelid, 0)::int8::text AS ref
     FROM pg_constraint c WHERE c.conrelid = ANY($1::oid[]) ORDER BY CASE c.contype WHEN 'p' THEN 0 WHEN 'u' THEN 1 WHEN 'x' THEN 2 WHEN 'c' THEN 3 ELSE 4 END, c.oid`,
    [oids]
  );
  const constraintDefs = cons.rows.filter((c) => c.contype !== "f").map((c) => `ALTER TABLE ${c.rel} ADD CONSTRAINT ${qi(c.name)} ${c.def}`);
  const fks = cons.rows.filter((c) => c.contype === "f" && c.ref !== null && oids.includes(Number(c.ref))).map((c) => `ALTER TABLE ${c.rel} ADD CONSTRAINT ${qi(c.name)} ${c.def}`);
  for (const c of cons.rows.filter((x) => x.contype === "f" && !(x.ref !== null && oids.includes(Number(x.ref))))) {
    warnings.push(`foreign key ${c.name} on ${c.rel} left out: it references a table outside the backup`);
  }
  const idx = await db.query(
    `SELECT pg_get_indexdef(i.indexrelid) AS def FROM pg_index i WHERE i.indrelid = ANY($1::oid[])
       AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid AND c.contype IN ('p', 'u', 'x'))
     ORDER BY i.indexrelid`,
    [oids]
  );
  const views = await db.query(
    `SELECT n.nspname AS schema, c.relname AS name, pg_get_viewdef(c.oid) AS def FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind = 'v' AND ${USER_NS} AND ${NOT_EXT("pg_class", "c.oid")} ORDER BY c.oid`
  );
  const trig = await db.query(
    "SELECT pg_get_triggerdef(t.oid) AS def FROM pg_trigger t WHERE t.tgrelid = ANY($1::oid[]) AND NOT t.tgisinternal ORDER BY t.oid",
    [oids]
  );
  post.push(
    ...constraintDefs,
    ...idx.rows.map((r) => r.def),
    ...fks,
    ...views.rows.map((v) => `CREATE VIEW ${qname(v.schema, v.name)} AS ${v.def.replace(/;\s*$/, "")}`),
    ...trig.rows.map((r) => r.def)
  );
  return { schema: { pre, post }, columns };
}
async function sequenceSetvals(db, figures2) {
  const out = [];
  for (const [name] of Object.entries(figures2.sequences)) {
    const [schema, ...rest] = name.split(".");
    const q = qname(schema, rest.join("."));
    const r = await db.query(`SELECT last_value::text, is_called FROM ${q}`);
    out.push(`SELECT pg_catalog.setval(${ql(q)}, ${r.rows[0].last_value}, ${r.rows[0].is_called})`);
  }
  return out;
}
function copyEscape(v) {
  if (v === null) return "\\N";
  return v.replace(/[\\\n\r\t]/g, (c) => c === "\\" ? "\\\\" : c === "\n" ? "\\n" : c === "\r" ? "\\r" : "\\t");
}
function copyUnescape(field) {
  if (field === "\\N") return null;
  if (!field.includes("\\")) return field;
  return field.replace(/\\(.)/g, (_m, c) => UNESCAPE[c] ?? c);
}
async function* lines(src) {
  let rest = Buffer.alloc(0);
  for await (const b of src) {
    let buf = rest.length ? Buffer.concat([rest, b]) : b;
    let i;
    while ((i = buf.indexOf(10)) >= 0) {
      yield buf.subarray(0, i).toString("utf8");
      buf = buf.subarray(i + 1);
    }
    rest = Buffer.from(buf);
  }
  if (rest.length > 0) yield rest.toString("utf8");
}
async function* copyOut(db, t, columns, fetchRows, counter) {
  const cursor = `memvault_c_${t.oid}`;
  await db.query(`DECLARE ${cursor} NO SCROLL CURSOR FOR SELECT ${columns.map(qi).join(", ")} FROM ONLY ${qname(t.schema, t.name)}`);
  try {
    for (; ; ) {
      const r = await db.query({ text: `FETCH ${fetchRows} FROM ${cursor}`, rowMode: "array", types: rawText });
      if (r.rows.length === 0) break;
      let s = "";
      for (const row of r.rows) s += row.map(copyEscape).join("	") + "\n";
      counter.rows += r.rows.length;
      yield Buffer.from(s, "utf8");
    }
  } finally {
    await db.query(`CLOSE ${cursor}`);
  }
}
function restoreOptions(target) {
  const o = target.options ?? {};
  if (o.url !== void 0 && typeof o.url !== "string") throw new UsageError("restore target option url: expected a postgres:// URL");
  return { url: o.url, force: o.force === true };
}
async function openTarget(c, what) {
  try {
    return await connectPg(c, what);
  } catch (err) {
    if (!(err instanceof NotFoundError)) throw err;
    const admin = await connectPg(c, what, "postgres").catch(() => connectPg(c, what, "template1"));
    try {
      await admin.query(`CREATE DATABASE ${qi(c.database)}`);
    } finally {
      await admin.end();
    }
    return connectPg(c, what);
  }
}
async function readJsonEntry(vault, e) {
  const parts = [];
  for await (const b of readEntry(vault, e)) parts.push(b);
  return JSON.parse(Buffer.concat(parts).toString("utf8"));
}
function rethrowIntegrity(component, err) {
  if (err instanceof IntegrityError) throw new IntegrityError(`${component}: ${err.message}`, err.objectKey);
  throw err;
}
function pickMethod(s, serverMajor, log) {
  if (s.method === "driver") return { method: "driver" };
  const bin = findPgTool("pg_dump", s.pgDumpPath);
  const major = bin ? toolMajor(bin) : void 0;
  if (bin && major !== void 0 && major >= serverMajor) return { method: "pg_dump", pgDump: bin };
  const why = !bin ? "no pg_dump installed" : `pg_dump ${major ?? "?"} is older than the server (${serverMajor})`;
  if (s.method === "pg_dump") throw new PermanentError(`method pg_dump: ${why}; install the PostgreSQL ${serverMajor} client or set pgDumpPath`);
  log.info("postgres: using the driver path", { reason: why });
  return { method: "driver" };
}
async function restoreDriverPath(vault, m, db) {
  const schemaEntry = m.entries.find((e) => e.path === "schema.json");
  if (!schemaEntry) throw new IntegrityError(`manifest ${m.id} has no schema.json entry`);
  const schema = await readJsonEntry(vault, schemaEntry);
  let bytes2 = schemaEntry.size;
  await db.query("BEGIN");
  try {
    await db.query("SET LOCAL check_function_bodies = off");
    for (const s of schema.pre) await db.query(s);
    for (const e of m.entries) {
      if (e.path === "schema.json") continue;
      const meta = e.meta;
      const cols = meta.columns;
      const perBatch = Math.max(1, Math.min(1e3, Math.floor(3e4 / Math.max(1, cols.length))));
      const head = `INSERT INTO ${qname(meta.schema, meta.table)} (${cols.map(qi).join(", ")})${meta.overriding ? " OVERRIDING SYSTEM VALUE" : ""} VALUES `;
      let batch = [];
      let rows = 0;
      let restored = 0;
      const flush = async () => {
        if (rows === 0) return;
        const tuples = [];
        for (let i = 0; i < rows; i++) tuples.push(`(${cols.map((_c, j) => `$${i * cols.length + j + 1}`).join(", ")})`);
        await db.query(head + tuples.join(", "), batch);
        restored += rows;
        batch = [];
        rows = 0;
      };
      if (cols.length === 0) continue;
      for await (const line of lines(readEntry(vault, e))) {
        const fields = line.split("	");
        if (fields.length !== cols.length) throw new IntegrityError(`${e.path}: row with ${fields.length} fields, table ${meta.table} has ${cols.length} columns`);
        for (const f of fields) batch.push(copyUnescape(f));
        if (++rows >= perBatch) await flush();
      }
      await flush();
      if (restored !== meta.rows) throw new IntegrityError(`${e.path}: restored ${restored} rows of ${meta.schema}.${meta.table}, backup has ${meta.rows}`);
      bytes2 += e.size;
    }
    for (const s of schema.post) await db.query(s);
    for (const s of schema.sequences) await db.query(s);
    await db.query("COMMIT");
  } catch (err) {
    await db.query("ROLLBACK").catch(() => void 0);
    throw err;
  }
  return bytes2;
}
async function writeSqlScript(vault, m, dest) {
  const schemaEntry = m.entries.find((e) => e.path === "schema.json");
  if (!schemaEntry) throw new IntegrityError(`manifest ${m.id} has no schema.json entry`);
  const schema = await readJsonEntry(vault, schemaEntry);
  const fh = await fs5.open(`${dest}.memvault-partial`, "w", 384);
  let bytes2 = 0;
  const put = async (s) => {
    const b = typeof s === "string" ? Buffer.from(s) : s;
    bytes2 += b.length;
    await fh.write(b);
  };
  try {
    await put(`-- memvault backup ${m.id} of ${m.component} (${m.startedAt}); restore with: psql --single-transaction -v ON_ERROR_STOP=1 -f this-file
`);
    await put("SET check_function_bodies = false;\nSET client_encoding = 'UTF8';\n\n");
    for (const s of schema.pre) await put(`${s};

`);
    for (const e of m.entries) {
      if (e.path === "schema.json") continue;
      const meta = e.meta;
      await put(`COPY ${qname(meta.schema, meta.table)} (${meta.columns.map(qi).join(", ")}) FROM stdin;
`);
      for await (const b of readEntry(vault, e)) await put(b);
      await put("\\.\n\n");
    }
    for (const s of [...schema.post, ...schema.sequences]) await put(`${s};

`);
  } finally {
    await fh.close();
  }
  await fs5.rename(`${dest}.memvault-partial`, dest);
  return bytes2;
}
var pgConnectionShape, pgModule, pgLib, secretsModule, secretsSdk, secretsClientFactory, SESSION_SETUP, rawText, postgresSchema, USER_NS, NOT_EXT, UNESCAPE, postgresDriver;
var init_postgres = __esm({
  "functions/components/postgres.ts"() {
    "use strict";
    init_types();
    init_writer();
    init_errors();
    init_restore_file();
    pgConnectionShape = {
      /** postgres://user[:password]@host:port/database[?sslmode=require] */
      url: z5.string().optional(),
      host: z5.string().optional(),
      port: z5.number().int().positive().optional(),
      user: z5.string().optional(),
      database: z5.string().optional(),
      /** Name of an environment variable holding the password. */
      passwordEnv: z5.string().optional(),
      /** Secrets Manager secret (RDS layout: JSON with username, password, host, port, dbname; or the bare password). */
      secretArn: z5.string().regex(/^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$/, "expected a Secrets Manager secret ARN (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME)").optional(),
      /** TLS: disable | require (encrypted, server certificate not verified) | verify-full. @default from the URL's sslmode, else disable */
      sslmode: z5.enum(["disable", "require", "verify-full"]).optional()
    };
    pgLib = () => pgModule ??= import("pg").then((m) => m.default);
    secretsSdk = () => secretsModule ??= import("@aws-sdk/client-secrets-manager");
    secretsClientFactory = async (region3) => new (await secretsSdk()).SecretsManagerClient({ region: region3 });
    SESSION_SETUP = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'; SET IntervalStyle = 'postgres'; SET extra_float_digits = 1; SET bytea_output = 'hex'; SET client_encoding = 'UTF8'";
    rawText = { getTypeParser: () => (v) => v };
    postgresSchema = z5.object({
      ...pgConnectionShape,
      /** auto: pg_dump when a new enough one is installed, else the pure driver path. @default auto */
      method: z5.enum(["auto", "pg_dump", "driver"]).default("auto"),
      /** Path of pg_dump (and pg_restore next to it). @default newest under /usr/lib/postgresql, else PATH */
      pgDumpPath: z5.string().optional(),
      /** Tables to back up, as schema.table globs (* and ?); a pattern without a dot matches the table name in any schema. @default all */
      tables: z5.object({
        include: z5.array(z5.string()).default([]),
        exclude: z5.array(z5.string()).default([])
      }).default({ include: [], exclude: [] }),
      /** Rows fetched per round trip on the driver path. @default 2000 */
      fetchRows: z5.number().int().positive().default(2e3)
    });
    USER_NS = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'";
    NOT_EXT = (cls, oid) => `NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = '${cls}'::regclass AND d.objid = ${oid} AND d.deptype = 'e')`;
    UNESCAPE = { n: "\n", r: "\r", t: "	", b: "\b", f: "\f", v: "\v", "\\": "\\" };
    postgresDriver = {
      kind: "postgres",
      mode: "stream",
      schema: postgresSchema,
      async backup(ctx) {
        const field = `components.${ctx.component}`;
        const conn = await resolvePgConnection(ctx.settings, field);
        const db = await connectPg(conn, ctx.component);
        const warnings = [];
        try {
          await db.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
          const info = (await db.query("SELECT current_setting('server_version_num') AS v, pg_export_snapshot() AS snap")).rows[0];
          const serverMajor = Math.floor(Number(info.v) / 1e4);
          const tables = await listTables(db, ctx.settings.tables);
          if (tables.length === 0) warnings.push(`${conn.database}: no table matches the configured tables (include/exclude)`);
          const { method, pgDump } = pickMethod(ctx.settings, serverMajor, ctx.log);
          const figures2 = await databaseFigures(db, tables);
          const entries = [];
          if (method === "pg_dump") {
            const args = ["--format=custom", "--compress=0", `--snapshot=${info.snap}`, "--no-password"];
            const filtered = ctx.settings.tables.include.length > 0 || ctx.settings.tables.exclude.length > 0;
            if (filtered) {
              if (tables.length === 0) throw new PermanentError(`${field}.tables: no table matches; nothing to back up`);
              const chosen = new Set(tables.map((t) => t.oid));
              for (const t of await listTables(db)) if (!chosen.has(t.oid)) args.push(`--exclude-table=${qname(t.schema, t.name)}`);
            }
            const run = runTool(pgDump, args, pgToolEnv(conn));
            let r;
            try {
              r = await ctx.writer.writeStream(run.stdout);
            } catch (err) {
              run.child.kill("SIGTERM");
              throw err;
            }
            await run.done;
            entries.push({ path: `${conn.database}.pgdump`, type: "file", mode: 384, size: r.size, sha256: r.sha256, chunks: r.chunks, meta: { format: "pg_dump-custom" } });
          } else {
            warnings.push(...await unsupportedObjects(db, tables));
            const { schema, columns } = await driverSchema(db, tables, warnings);
            let n = 0;
            for (const t of tables) {
              const cols = columns.get(t.oid);
              const dataCols = cols.filter((c) => c.generated !== "s").map((c) => c.name);
              const counter = { rows: 0 };
              const r2 = await ctx.writer.writeStream(copyOut(db, t, dataCols, ctx.settings.fetchRows, counter));
              const meta = { schema: t.schema, table: t.name, columns: dataCols, overriding: cols.some((c) => c.identity === "a"), rows: counter.rows };
              entries.push({ path: `tables/${String(++n).padStart(5, "0")}.copy`, type: "file", mode: 384, size: r2.size, sha256: r2.sha256, chunks: r2.chunks, meta });
            }
            const full = { ...schema, sequences: await sequenceSetvals(db, figures2) };
            const r = await ctx.writer.writeBuffer(Buffer.from(JSON.stringify(full), "utf8"));
            entries.unshift({ path: "schema.json", type: "file", mode: 384, size: r.size, sha256: r.sha256, chunks: r.chunks });
          }
          await db.query("COMMIT");
          const rows = Object.values(figures2.tables).reduce((a, t) => a + t.rows, 0);
          ctx.log.info("postgres backup exported", { component: ctx.component, method, tables: tables.length, rows });
          return {
            entries,
            meta: { method, database: conn.database, source: describeConnection(conn), serverVersion: info.v, ...figures2 },
            warnings
          };
        } catch (err) {
          throw mapPgError(err, `${ctx.component}: backup of ${describeConnection(conn)}`);
        } finally {
          await db.end().catch(() => void 0);
        }
      },
      async restore(ctx) {
        const m = ctx.manifest;
        const method = m.driver.method;
        const opts = restoreOptions(ctx.target);
        try {
          if (!opts.url) {
            await fs5.mkdir(ctx.target.dir, { recursive: true });
            if (method === "pg_dump") {
              const bytes3 = await restoreEntriesToDir(ctx.vault, ctx.component, m.entries, ctx.target.dir);
              return { location: path5.join(ctx.target.dir, m.entries[0].path), bytes: bytes3, entries: m.entries.length };
            }
            const dest = path5.join(ctx.target.dir, `${m.driver.database}.sql`);
            const bytes2 = await writeSqlScript(ctx.vault, m, dest);
            return { location: dest, bytes: bytes2, entries: m.entries.length };
          }
          const conn = await resolvePgConnection({ url: opts.url }, "restore target url");
          const db = await openTarget(conn, `${ctx.component}: restore`);
          try {
            const existing = await userObjectCount(db);
            if (existing > 0 && !opts.force) {
              throw new UsageError(`restore target ${describeConnection(conn)} already holds ${existing} tables/views/sequences; restore into an empty database or pass force`);
            }
            let bytes2 = 0;
            if (method === "pg_dump") {
              await db.end();
              const pgRestore = findPgTool("pg_restore", ctx.settings.pgDumpPath);
              if (!pgRestore) throw new PermanentError(`${ctx.component}: backup ${m.id} is a pg_dump archive and needs pg_restore, which is not installed; restore without a url to get the archive file`);
              const e = m.entries[0];
              const args = ["--no-owner", "--no-acl", "--exit-on-error", "--single-transaction", `--dbname=${conn.database}`];
              if (opts.force) args.push("--clean", "--if-exists");
              const run = runTool(pgRestore, args, pgToolEnv(conn), readEntry(ctx.vault, e));
              await Promise.all([run.fed, run.done]);
              bytes2 = e.size;
            } else {
              bytes2 = await restoreDriverPath(ctx.vault, m, db);
            }
            return { location: describeConnection(conn), bytes: bytes2, entries: m.entries.length };
          } finally {
            await db.end().catch(() => void 0);
          }
        } catch (err) {
          rethrowIntegrity(ctx.component, err);
        }
      },
      async validate(ctx) {
        const m = ctx.manifest;
        const expected = m.driver;
        const opts = restoreOptions(ctx.target);
        const checks = [];
        if (!opts.url) {
          const st = await fs5.stat(ctx.location).catch(() => null);
          checks.push({ name: "restored file present", ok: !!st?.isFile(), actual: ctx.location });
          if (st?.isFile() && expected.method === "pg_dump") {
            const bin = findPgTool("pg_restore", ctx.settings.pgDumpPath);
            if (bin) {
              const r = spawnSync(bin, ["--list", ctx.location], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
              const dataEntries = (r.stdout ?? "").split("\n").filter((l) => / TABLE DATA /.test(l)).length;
              checks.push({ name: "pg_restore --list reads the archive", ok: r.status === 0, actual: r.status === 0 ? "ok" : r.stderr.trim() });
              const tablesWithRows = Object.keys(expected.tables).length;
              checks.push({ name: "archive has data for every table", ok: dataEntries >= tablesWithRows, expected: tablesWithRows, actual: dataEntries });
            }
          }
          return report(checks);
        }
        const conn = await resolvePgConnection({ url: opts.url }, "restore target url");
        let db;
        try {
          db = await connectPg(conn, `${ctx.component}: validate`);
          await db.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
          const present = await listTables(db);
          const wanted = Object.keys(expected.tables);
          const refs = present.filter((t) => wanted.includes(`${t.schema}.${t.name}`));
          const missing = wanted.filter((w) => !refs.some((t) => `${t.schema}.${t.name}` === w));
          checks.push({ name: "every table present", ok: missing.length === 0, expected: wanted.length, actual: missing.length ? { missing } : wanted.length });
          const actual = await databaseFigures(db, refs);
          for (const [name, fig] of Object.entries(expected.tables)) {
            const a = actual.tables[name];
            if (!a) continue;
            checks.push({ name: `table ${name}: rows`, ok: a.rows === fig.rows, expected: fig.rows, actual: a.rows });
            checks.push({ name: `table ${name}: content checksum`, ok: a.checksum === fig.checksum, expected: fig.checksum, actual: a.checksum });
            checks.push({ name: `table ${name}: indexes`, ok: a.indexes === fig.indexes, expected: fig.indexes, actual: a.indexes });
            checks.push({ name: `table ${name}: constraints`, ok: a.constraints === fig.constraints, expected: fig.constraints, actual: a.constraints });
          }
          for (const [name, seq] of Object.entries(expected.sequences)) {
            const a = actual.sequences[name];
            const ok = !!a && (seq.lastValue === null || a.lastValue !== null && BigInt(a.lastValue) >= BigInt(seq.lastValue));
            checks.push({ name: `sequence ${name}: last value`, ok, expected: seq.lastValue === null ? "unused" : `>= ${seq.lastValue}`, actual: a?.lastValue ?? "missing" });
            if (a && seq.ownedBy) {
              const o = seq.ownedBy;
              const r = await db.query(`SELECT max(${qi(o.column)})::text AS max FROM ${qname(o.schema, o.table)}`);
              const max = r.rows[0].max;
              const safe = max === null || a.lastValue !== null && BigInt(a.lastValue) >= BigInt(max);
              checks.push({ name: `sequence ${name}: ahead of ${o.table}.${o.column}`, ok: safe, expected: `>= ${max}`, actual: a.lastValue });
            }
          }
          const missingExt = expected.extensions.filter((e) => !actual.extensions.includes(e));
          checks.push({ name: "extensions installed", ok: missingExt.length === 0, expected: expected.extensions, actual: missingExt.length ? { missing: missingExt } : actual.extensions });
          await db.query("COMMIT");
        } catch (err) {
          checks.push({ name: "query the restored database", ok: false, actual: err.message });
        } finally {
          await db?.end().catch(() => void 0);
        }
        return report(checks);
      }
    };
  }
});

// functions/components/vector.ts
import { createHash as createHash5 } from "node:crypto";
import { promises as fs6 } from "node:fs";
import path6 from "node:path";
import { z as z6 } from "zod";
function splitTable(t) {
  const i = t.indexOf(".");
  return i < 0 ? ["public", t] : [t.slice(0, i), t.slice(i + 1)];
}
function parseVectorText(text, id) {
  const open2 = text[0];
  const close = text[text.length - 1];
  if (!(open2 === "[" && close === "]" || open2 === "{" && close === "}")) {
    throw new PermanentError(`row id=${id}: cannot read vector "${text.slice(0, 40)}"`);
  }
  const body = text.slice(1, -1).trim();
  if (body === "") return [];
  if (body.includes("{")) throw new PermanentError(`row id=${id}: vector is a multi-dimensional array`);
  return body.split(",").map((s) => {
    const t = s.trim();
    if (t === "NULL") throw new PermanentError(`row id=${id}: vector has a NULL element`);
    const n = Number(t);
    if (Number.isNaN(n) && !/^nan$/i.test(t)) throw new PermanentError(`row id=${id}: vector element "${t}" is not a number`);
    return n;
  });
}
function floatText(v, bytes2) {
  if (!Number.isFinite(v)) return Number.isNaN(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity";
  if (Object.is(v, -0)) return "-0";
  if (bytes2 === 8) return String(v);
  for (let p = 1; p <= 9; p++) {
    const s = v.toPrecision(p);
    if (Math.fround(Number(s)) === v) return String(Number(s));
  }
  return String(v);
}
function u32(n) {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32LE(n);
  return b;
}
function encodeRecord(id, vec, meta, bytes2) {
  const idb = Buffer.from(id, "utf8");
  const mb = Buffer.from(JSON.stringify(meta), "utf8");
  const n = vec ? vec.length : 0;
  const out = Buffer.allocUnsafe(4 + idb.length + 4 + n * bytes2 + 4 + mb.length);
  let o = out.writeUInt32LE(idb.length, 0);
  o += idb.copy(out, o);
  o = out.writeUInt32LE(vec ? vec.length : NULL_VECTOR, o);
  if (vec) for (const v of vec) o = bytes2 === 4 ? out.writeFloatLE(v, o) : out.writeDoubleLE(v, o);
  o = out.writeUInt32LE(mb.length, o);
  mb.copy(out, o);
  return out;
}
async function describeColumns(db, table2, s, field) {
  const [schema, name] = splitTable(table2);
  const rel = await db.query("SELECT to_regclass($1)::oid::int8::text AS oid", [qname(schema, name)]);
  if (!rel.rows[0].oid) throw new ConfigError(`${field}.table: table ${schema}.${name} does not exist`);
  const cols = await db.query(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
     WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped`,
    [rel.rows[0].oid]
  );
  const byName = new Map(cols.rows.map((c) => [c.name, c]));
  const need = [[`${field}.idColumn`, s.idColumn], [`${field}.vectorColumn`, s.vectorColumn], ...s.metadataColumns.map((c, i) => [`${field}.metadataColumns.${i}`, c])];
  const types = {};
  for (const [f, c] of need) {
    const col = byName.get(c);
    if (!col) throw new ConfigError(`${f}: ${schema}.${name} has no column "${c}"; columns: ${[...byName.keys()].join(", ")}`);
    types[c] = col.type;
  }
  const v = byName.get(s.vectorColumn);
  const vectorType = v.typname === "vector" ? "pgvector" : v.typname === "_float4" ? "float4[]" : v.typname === "_float8" ? "float8[]" : void 0;
  if (!vectorType) throw new ConfigError(`${field}.vectorColumn: column ${s.vectorColumn} has type ${v.type}; expected vector(n), real[] or double precision[]`);
  const m = /^vector\((\d+)\)$/.exec(v.type);
  if (m && Number(m[1]) !== s.dimensions) {
    throw new ConfigError(`${field}.dimensions: ${s.dimensions}, but column ${s.vectorColumn} is ${v.type}`);
  }
  return { types, vectorType };
}
async function* readRecords(db, table2, cols, dims, bytes2, fetchRows, what) {
  const [schema, name] = splitTable(table2);
  const select = [cols.id, cols.vec, ...cols.meta].map((c) => `${qi(c)}::text`).join(", ");
  const cursor = `memvault_vec_${Date.now()}`;
  await db.query(`DECLARE ${cursor} NO SCROLL CURSOR FOR SELECT ${select} FROM ${qname(schema, name)} ORDER BY ${qi(cols.id)}`);
  try {
    for (; ; ) {
      const r = await db.query({ text: `FETCH ${fetchRows} FROM ${cursor}`, rowMode: "array", types: rawText });
      if (r.rows.length === 0) break;
      for (const row of r.rows) {
        const id = row[0];
        if (id === null) throw new PermanentError(`${what}: a row has a NULL ${cols.id}`);
        const vec = row[1] === null ? null : parseVectorText(row[1], id);
        if (vec && vec.length !== dims) throw new PermanentError(`${what}: row id=${id}: vector has ${vec.length} dimensions, expected ${dims}`);
        yield { record: encodeRecord(id, vec, row.slice(2), bytes2), isNull: vec === null };
      }
    }
  } finally {
    await db.query(`CLOSE ${cursor}`);
  }
}
function elementBytes(t) {
  return t === "float8[]" ? 8 : 4;
}
function restoreOptions2(o) {
  const opts = o ?? {};
  if (opts.url !== void 0 && typeof opts.url !== "string") throw new UsageError("restore target option url: expected a postgres:// URL");
  if (opts.table !== void 0 && typeof opts.table !== "string") throw new UsageError('restore target option table: expected "schema.table" or "table"');
  return { url: opts.url, table: opts.table, force: opts.force === true };
}
var vectorSchema, MAGIC, NULL_VECTOR, RecordChecksum, ByteReader, vectorDriver;
var init_vector = __esm({
  "functions/components/vector.ts"() {
    "use strict";
    init_types();
    init_writer();
    init_errors();
    init_postgres();
    init_restore_file();
    vectorSchema = z6.object({
      ...pgConnectionShape,
      /** Table holding the embeddings: "schema.table" or "table" (schema public). */
      table: z6.string().min(1),
      idColumn: z6.string().default("id"),
      vectorColumn: z6.string().default("embedding"),
      /** Columns kept with each vector (text form, any type). @default [] */
      metadataColumns: z6.array(z6.string()).default([]),
      /** Number of elements every vector must have. */
      dimensions: z6.number({ error: "expected the vectors' dimension as a positive integer" }).int().positive(),
      /** Rows fetched per round trip. @default 1000 */
      fetchRows: z6.number().int().positive().default(1e3)
    });
    MAGIC = Buffer.from("MVVEC1");
    NULL_VECTOR = 4294967295;
    RecordChecksum = class {
      sum = 0n;
      count = 0;
      add(record2) {
        this.sum = this.sum + BigInt(`0x${createHash5("sha256").update(record2).digest("hex").slice(0, 32)}`) & (1n << 128n) - 1n;
        this.count++;
      }
      hex() {
        return this.sum.toString(16).padStart(32, "0");
      }
    };
    ByteReader = class {
      bufs = [];
      len = 0;
      it;
      ended = false;
      constructor(src) {
        this.it = src[Symbol.asyncIterator]();
      }
      /** Exactly n bytes, or null at a clean end of stream; throws on a truncated stream. */
      async read(n) {
        while (this.len < n && !this.ended) {
          const r = await this.it.next();
          if (r.done) this.ended = true;
          else {
            this.bufs.push(r.value);
            this.len += r.value.length;
          }
        }
        if (this.len === 0 && this.ended) return null;
        if (this.len < n) throw new IntegrityError(`stream ends inside a record (${this.len} of ${n} bytes)`);
        const all = this.bufs.length === 1 ? this.bufs[0] : Buffer.concat(this.bufs);
        const out = all.subarray(0, n);
        const rest = all.subarray(n);
        this.bufs = rest.length ? [rest] : [];
        this.len = rest.length;
        return out;
      }
      async u32() {
        const b = await this.read(4);
        return b ? b.readUInt32LE(0) : null;
      }
    };
    vectorDriver = {
      kind: "vector",
      mode: "stream",
      schema: vectorSchema,
      async backup(ctx) {
        const s = ctx.settings;
        const field = `components.${ctx.component}`;
        const conn = await resolvePgConnection(s, field);
        const db = await connectPg(conn, ctx.component);
        try {
          await db.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
          const { types, vectorType } = await describeColumns(db, s.table, s, field);
          const bytes2 = elementBytes(vectorType);
          const sum = new RecordChecksum();
          let nulls = 0;
          const header = Buffer.concat([MAGIC, u32(s.dimensions), Buffer.from([bytes2])]);
          const records = readRecords(db, s.table, { id: s.idColumn, vec: s.vectorColumn, meta: s.metadataColumns }, s.dimensions, bytes2, s.fetchRows, `${ctx.component}: ${s.table}`);
          async function* stream() {
            yield header;
            let batch = [];
            let size = 0;
            for await (const r of records) {
              sum.add(r.record);
              if (r.isNull) nulls++;
              batch.push(r.record);
              size += r.record.length;
              if (size >= 1 << 20) {
                yield Buffer.concat(batch);
                batch = [];
                size = 0;
              }
            }
            if (batch.length) yield Buffer.concat(batch);
          }
          const w = await ctx.writer.writeStream(stream());
          await db.query("COMMIT");
          const [schema, name] = splitTable(s.table);
          const meta = {
            source: describeConnection(conn),
            table: `${schema}.${name}`,
            idColumn: s.idColumn,
            vectorColumn: s.vectorColumn,
            metadataColumns: s.metadataColumns,
            columnTypes: types,
            vectorType,
            dimensions: s.dimensions,
            rows: sum.count,
            nullVectors: nulls,
            checksum: sum.hex()
          };
          return {
            entries: [{ path: `${schema}.${name}.vectors`, type: "file", mode: 384, size: w.size, sha256: w.sha256, chunks: w.chunks }],
            meta,
            warnings: []
          };
        } finally {
          await db.end().catch(() => void 0);
        }
      },
      async restore(ctx) {
        const meta = ctx.manifest.driver;
        const e = ctx.manifest.entries[0];
        if (!e) throw new IntegrityError(`${ctx.component}: manifest ${ctx.manifest.id} has no vectors entry`);
        if (ctx.settings.dimensions !== void 0 && ctx.settings.dimensions !== meta.dimensions) {
          throw new PermanentError(`${ctx.component}: backup ${ctx.manifest.id} holds ${meta.dimensions}-dimensional vectors, the component is configured for ${ctx.settings.dimensions}`);
        }
        const opts = restoreOptions2(ctx.target.options);
        if (!opts.url) {
          await restoreEntriesToDir(ctx.vault, ctx.component, [e], ctx.target.dir);
          const dest = path6.join(ctx.target.dir, e.path);
          return { location: dest, bytes: e.size, entries: 1 };
        }
        const conn = await resolvePgConnection({ url: opts.url }, "restore target url");
        const table2 = opts.table ?? meta.table;
        const [schema, name] = splitTable(table2);
        const db = await openTarget(conn, `${ctx.component}: restore`);
        try {
          const exists = (await db.query("SELECT to_regclass($1)::text AS oid", [qname(schema, name)])).rows[0].oid;
          if (exists && !opts.force) throw new UsageError(`restore target table ${schema}.${name} already exists in ${describeConnection(conn)}; choose another table or pass force to add to it`);
          await db.query("BEGIN");
          if (meta.vectorType === "pgvector") {
            try {
              await db.query("SAVEPOINT ext");
              await db.query("CREATE EXTENSION IF NOT EXISTS vector");
            } catch (err) {
              await db.query("ROLLBACK TO SAVEPOINT ext");
              const has = (await db.query("SELECT 1 FROM pg_type WHERE typname = 'vector'")).rows.length > 0;
              if (!has) throw new PermanentError(`${ctx.component}: the backup has pgvector columns and ${describeConnection(conn)} cannot create the vector extension: ${err.message}`);
            }
          }
          const cols = [meta.idColumn, meta.vectorColumn, ...meta.metadataColumns];
          if (!exists) {
            await db.query(`CREATE SCHEMA IF NOT EXISTS ${qi(schema)}`);
            const defs = cols.map((c) => `${qi(c)} ${meta.columnTypes[c]}${c === meta.idColumn ? " PRIMARY KEY" : ""}`);
            await db.query(`CREATE TABLE ${qname(schema, name)} (${defs.join(", ")})`);
          }
          const bytes2 = elementBytes(meta.vectorType);
          const r = new ByteReader(readEntry(ctx.vault, e));
          const head = await r.read(MAGIC.length + 5);
          if (!head || !head.subarray(0, MAGIC.length).equals(MAGIC)) throw new IntegrityError(`${e.path}: not a memvault vector stream`);
          const dims = head.readUInt32LE(MAGIC.length);
          if (dims !== meta.dimensions || head[MAGIC.length + 4] !== bytes2) {
            throw new IntegrityError(`${e.path}: stream holds ${dims}-dimensional vectors of ${head[MAGIC.length + 4]}-byte floats, manifest says ${meta.dimensions} of ${bytes2}`);
          }
          const perBatch = Math.max(1, Math.min(500, Math.floor(3e4 / cols.length)));
          const insert = `INSERT INTO ${qname(schema, name)} (${cols.map(qi).join(", ")}) VALUES `;
          const [open2, close] = meta.vectorType === "pgvector" ? ["[", "]"] : ["{", "}"];
          let params = [];
          let rows = 0;
          let restored = 0;
          const flush = async () => {
            if (rows === 0) return;
            const tuples = Array.from({ length: rows }, (_r, i) => `(${cols.map((_c, j) => `$${i * cols.length + j + 1}`).join(", ")})`);
            await db.query(insert + tuples.join(", "), params);
            restored += rows;
            params = [];
            rows = 0;
          };
          for (; ; ) {
            const idLen = await r.u32();
            if (idLen === null) break;
            const id = (await r.read(idLen)).toString("utf8");
            const n = await r.u32();
            let vecText = null;
            if (n !== NULL_VECTOR) {
              if (n !== dims) throw new IntegrityError(`${ctx.component}: row id=${id}: vector has ${n} dimensions, expected ${dims}`);
              const raw = await r.read(n * bytes2);
              const parts = new Array(n);
              for (let i = 0; i < n; i++) parts[i] = floatText(bytes2 === 4 ? raw.readFloatLE(i * 4) : raw.readDoubleLE(i * 8), bytes2);
              vecText = open2 + parts.join(",") + close;
            }
            const mLen = await r.u32();
            const md = JSON.parse((await r.read(mLen)).toString("utf8"));
            if (md.length !== meta.metadataColumns.length) throw new IntegrityError(`${ctx.component}: row id=${id}: ${md.length} metadata values, expected ${meta.metadataColumns.length}`);
            params.push(id, vecText, ...md);
            if (++rows >= perBatch) await flush();
          }
          await flush();
          if (restored !== meta.rows) throw new IntegrityError(`${ctx.component}: restored ${restored} vectors, backup has ${meta.rows}`);
          await db.query("COMMIT");
          return { location: `${describeConnection(conn)}#${schema}.${name}`, bytes: e.size, entries: 1 };
        } catch (err) {
          await db.query("ROLLBACK").catch(() => void 0);
          if (err instanceof IntegrityError) throw new IntegrityError(`${ctx.component}: ${err.message}`, err.objectKey);
          throw err;
        } finally {
          await db.end().catch(() => void 0);
        }
      },
      async validate(ctx) {
        const meta = ctx.manifest.driver;
        const opts = restoreOptions2(ctx.target.options);
        const checks = [];
        if (!opts.url) {
          const st = await fs6.stat(ctx.location).catch(() => null);
          checks.push({ name: "vector stream file restored", ok: st?.size === ctx.manifest.entries[0]?.size, expected: ctx.manifest.entries[0]?.size, actual: st?.size });
          return report(checks);
        }
        const conn = await resolvePgConnection({ url: opts.url }, "restore target url");
        const table2 = opts.table ?? meta.table;
        let db;
        try {
          db = await connectPg(conn, `${ctx.component}: validate`);
          await db.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
          const settings = { ...ctx.settings, table: table2, idColumn: meta.idColumn, vectorColumn: meta.vectorColumn, metadataColumns: meta.metadataColumns, dimensions: meta.dimensions };
          const { types, vectorType } = await describeColumns(db, table2, settings, "restore target");
          checks.push({ name: "vector column type", ok: vectorType === meta.vectorType && types[meta.vectorColumn] === meta.columnTypes[meta.vectorColumn], expected: meta.columnTypes[meta.vectorColumn], actual: types[meta.vectorColumn] });
          const sum = new RecordChecksum();
          let nulls = 0;
          let dimError;
          try {
            for await (const r of readRecords(db, table2, { id: meta.idColumn, vec: meta.vectorColumn, meta: meta.metadataColumns }, meta.dimensions, elementBytes(meta.vectorType), 1e3, table2)) {
              sum.add(r.record);
              if (r.isNull) nulls++;
            }
          } catch (err) {
            if (!(err instanceof PermanentError)) throw err;
            dimError = err.message;
          }
          checks.push({ name: `every vector has ${meta.dimensions} dimensions`, ok: dimError === void 0, actual: dimError ?? meta.dimensions });
          if (dimError === void 0) {
            checks.push({ name: "vectors: count", ok: sum.count === meta.rows, expected: meta.rows, actual: sum.count });
            checks.push({ name: "vectors: NULL vectors", ok: nulls === meta.nullVectors, expected: meta.nullVectors, actual: nulls });
            checks.push({ name: "vectors: checksum of ids, vectors and metadata", ok: sum.hex() === meta.checksum, expected: meta.checksum, actual: sum.hex() });
          }
          await db.query("COMMIT");
        } catch (err) {
          checks.push({ name: "read the restored table", ok: false, actual: err.message });
        } finally {
          await db?.end().catch(() => void 0);
        }
        return report(checks);
      }
    };
  }
});

// functions/components/redis.ts
import { promises as fs7 } from "node:fs";
import path7 from "node:path";
import { z as z7 } from "zod";
function redisField(url) {
  return url.replace(/\/\/[^@/]*@/, "//");
}
function makeClient(lib, url, password2, database) {
  const { createClient, RESP_TYPES } = lib;
  return createClient({ url, RESP: 2, database, ...password2 !== void 0 ? { password: password2 } : {}, socket: { connectTimeout: 1e4, reconnectStrategy: false } }).withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer, [RESP_TYPES.SIMPLE_STRING]: Buffer });
}
async function connect(url, password2, database, what) {
  const c = makeClient(await redisLib(), url, password2, database);
  c.on("error", () => void 0);
  try {
    await c.connect();
  } catch (err) {
    const msg = err.message;
    if (/WRONGPASS|NOAUTH|invalid password/i.test(msg)) throw new PermanentError(`${what}: authentication failed at ${redisField(url)}: ${msg}`);
    throw new RetryableError(`${what}: cannot connect to ${redisField(url)} db ${database}: ${msg}`, { cause: err });
  }
  return c;
}
function str(v) {
  return Buffer.isBuffer(v) ? v.toString("utf8") : String(v);
}
function lp(parts, b) {
  const n = Buffer.allocUnsafe(4);
  n.writeUInt32LE(b.length);
  parts.push(n, b);
}
function valueCommand(type, key) {
  switch (type) {
    case "string":
      return ["GET", key];
    case "list":
      return ["LRANGE", key, "0", "-1"];
    case "set":
      return ["SMEMBERS", key];
    case "zset":
      return ["ZRANGE", key, "0", "-1", "WITHSCORES"];
    case "hash":
      return ["HGETALL", key];
    case "stream":
      return ["XRANGE", key, "-", "+"];
    default:
      return void 0;
  }
}
function flatten(v, out) {
  if (Array.isArray(v)) {
    lp(out, Buffer.from(`[${v.length}`));
    for (const x of v) flatten(x, out);
  } else if (Buffer.isBuffer(v)) lp(out, v);
  else lp(out, Buffer.from(v === null ? "\0null" : String(v)));
}
function canonical(key, type, value, dump) {
  const parts = [];
  lp(parts, key);
  lp(parts, Buffer.from(type));
  if (type === "set") {
    for (const m of [...value].sort(Buffer.compare)) lp(parts, m);
  } else if (type === "hash") {
    const v = value;
    const pairs = [];
    for (let i = 0; i < v.length; i += 2) pairs.push([v[i], v[i + 1]]);
    pairs.sort((a, b) => Buffer.compare(a[0], b[0]));
    for (const [f, x] of pairs) {
      lp(parts, f);
      lp(parts, x);
    }
  } else if (valueCommand(type, key)) {
    flatten(value, parts);
  } else if (dump) {
    lp(parts, dump);
  }
  return Buffer.concat(parts);
}
async function readKey(c, key, withDump) {
  const r = await c.sendCommand(["EVAL", READ_KEY, "1", key, withDump ? "1" : "0"]);
  const type = str(r[0]);
  if (type === "none") return null;
  const dump = r[2] ?? null;
  if (withDump && dump === null) return null;
  return { key, type, pttl: Number(r[1]), dump: withDump ? dump : Buffer.alloc(0), canonical: canonical(key, type, r[3] ?? null, dump) };
}
async function* scanKeys(c, count, withDump, concurrency = 64) {
  let cursor = "0";
  do {
    const [next, keys2] = await c.sendCommand(["SCAN", cursor, "COUNT", String(count)]);
    cursor = str(next);
    for (let i = 0; i < keys2.length; i += concurrency) {
      const reads = await Promise.all(keys2.slice(i, i + concurrency).map((k) => readKey(c, k, withDump)));
      for (const r of reads) if (r) yield r;
    }
  } while (cursor !== "0");
}
function i64(n) {
  const b = Buffer.allocUnsafe(8);
  b.writeBigInt64LE(BigInt(n));
  return b;
}
function encodeRecord2(k, now) {
  const t = Buffer.from(k.type);
  const head = Buffer.allocUnsafe(4);
  head.writeUInt32LE(k.key.length);
  const dl = Buffer.allocUnsafe(4);
  dl.writeUInt32LE(k.dump.length);
  return Buffer.concat([head, k.key, Buffer.from([t.length]), t, i64(k.pttl), i64(k.pttl >= 0 ? now + k.pttl : -1), dl, k.dump]);
}
function parseKeyspace(info) {
  const dbs = [];
  for (const line of info.split(/\r?\n/)) {
    const m = /^db(\d+):keys=(\d+)/.exec(line);
    if (m && Number(m[2]) > 0) dbs.push(Number(m[1]));
  }
  return dbs.sort((a, b) => a - b);
}
function password(s, field) {
  if (!s.passwordEnv) return void 0;
  const v = process.env[s.passwordEnv];
  if (v === void 0) throw new ConfigError(`${field}.passwordEnv: environment variable ${s.passwordEnv} is not set`);
  return v;
}
function restoreOptions3(o) {
  const opts = o ?? {};
  if (opts.url !== void 0 && (typeof opts.url !== "string" || !/^rediss?:\/\//.test(opts.url))) throw new UsageError("restore target option url: expected redis://host:port");
  if (opts.ttl !== void 0 && opts.ttl !== "remaining" && opts.ttl !== "absolute") throw new UsageError(`restore target option ttl: expected "remaining" or "absolute", got ${JSON.stringify(opts.ttl)}`);
  return { url: opts.url, force: opts.force === true, ttl: opts.ttl ?? "remaining", passwordEnv: opts.passwordEnv };
}
async function figuresOf(c, count) {
  const sum = new RecordChecksum();
  const f = { keys: 0, volatile: 0, types: {}, checksum: "" };
  for await (const k of scanKeys(c, count, false)) {
    sum.add(k.canonical);
    f.keys++;
    if (k.pttl >= 0) f.volatile++;
    f.types[k.type] = (f.types[k.type] ?? 0) + 1;
  }
  f.checksum = sum.hex();
  return f;
}
function sortKeys(o) {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)));
}
var redisSchema, MAGIC2, redisModule, redisLib, READ_KEY, redisDriver;
var init_redis = __esm({
  "functions/components/redis.ts"() {
    "use strict";
    init_types();
    init_writer();
    init_errors();
    init_vector();
    init_restore_file();
    redisSchema = z7.object({
      /** redis://[user[:password]@]host:6379 (rediss:// for TLS). */
      url: z7.string().regex(/^rediss?:\/\//, "expected redis://host:port or rediss://host:port"),
      /** Environment variable holding the password (AUTH), when it is not in the URL. */
      passwordEnv: z7.string().optional(),
      /** Logical databases to back up. @default every non-empty one (INFO keyspace) */
      databases: z7.array(z7.number().int().min(0)).optional(),
      /** SCAN COUNT hint: keys per round trip. @default 1000 */
      scanCount: z7.number().int().positive().default(1e3)
    });
    MAGIC2 = Buffer.from("MVREDIS1");
    redisLib = () => redisModule ??= import("redis");
    READ_KEY = `
local k = KEYS[1]
local t = redis.call('TYPE', k).ok
if t == 'none' then return {t} end
local v
if t == 'string' then v = redis.call('GET', k)
elseif t == 'list' then v = redis.call('LRANGE', k, 0, -1)
elseif t == 'set' then v = redis.call('SMEMBERS', k)
elseif t == 'zset' then v = redis.call('ZRANGE', k, 0, -1, 'WITHSCORES')
elseif t == 'hash' then v = redis.call('HGETALL', k)
elseif t == 'stream' then v = redis.call('XRANGE', k, '-', '+')
else v = false end
local d = false
if ARGV[1] == '1' or v == false then d = redis.call('DUMP', k) end
return {t, redis.call('PTTL', k), d, v}`;
    redisDriver = {
      kind: "redis",
      mode: "stream",
      schema: redisSchema,
      async backup(ctx) {
        const s = ctx.settings;
        const field = `components.${ctx.component}`;
        const pw = password(s, field);
        const first = await connect(s.url, pw, 0, ctx.component);
        let dbs;
        let version;
        try {
          const info = str(await first.sendCommand(["INFO", "keyspace"]));
          version = /redis_version:(\S+)/.exec(str(await first.sendCommand(["INFO", "server"])))?.[1] ?? "unknown";
          dbs = s.databases ?? parseKeyspace(info);
        } finally {
          await first.close().catch(() => void 0);
        }
        const entries = [];
        const databases = {};
        for (const db of dbs) {
          const c = await connect(s.url, pw, db, ctx.component);
          try {
            const sum = new RecordChecksum();
            const fig = { keys: 0, volatile: 0, types: {}, checksum: "" };
            const backupTime = Date.now();
            async function* stream() {
              const h = Buffer.allocUnsafe(4);
              h.writeUInt32LE(db);
              yield Buffer.concat([MAGIC2, h]);
              let batch = [];
              let size = 0;
              for await (const k of scanKeys(c, s.scanCount, true)) {
                sum.add(k.canonical);
                fig.keys++;
                if (k.pttl >= 0) fig.volatile++;
                fig.types[k.type] = (fig.types[k.type] ?? 0) + 1;
                const rec = encodeRecord2(k, Date.now());
                batch.push(rec);
                size += rec.length;
                if (size >= 1 << 20) {
                  yield Buffer.concat(batch);
                  batch = [];
                  size = 0;
                }
              }
              if (batch.length) yield Buffer.concat(batch);
            }
            const w = await ctx.writer.writeStream(stream());
            fig.checksum = sum.hex();
            databases[String(db)] = { ...fig, backupTime };
            entries.push({ path: `db${db}.redis`, type: "file", mode: 384, size: w.size, sha256: w.sha256, chunks: w.chunks, meta: { db, keys: fig.keys } });
          } finally {
            await c.close().catch(() => void 0);
          }
        }
        return { entries, meta: { source: redisField(s.url), serverVersion: version, databases }, warnings: [] };
      },
      async restore(ctx) {
        const opts = restoreOptions3(ctx.target.options);
        const m = ctx.manifest;
        if (!opts.url) {
          const bytes3 = await restoreEntriesToDir(ctx.vault, ctx.component, m.entries, ctx.target.dir);
          return { location: ctx.target.dir, bytes: bytes3, entries: m.entries.length };
        }
        const pw = password({ passwordEnv: opts.passwordEnv }, "restore target");
        let bytes2 = 0;
        for (const e of m.entries) {
          const db = e.meta.db;
          const c = await connect(opts.url, pw, db, `${ctx.component}: restore`);
          try {
            const n = Number(await c.sendCommand(["DBSIZE"]));
            if (n > 0 && !opts.force) throw new UsageError(`restore target ${redisField(opts.url)} db ${db} already holds ${n} keys; restore into an empty server or pass force (existing keys are replaced)`);
          } finally {
            await c.close().catch(() => void 0);
          }
        }
        for (const e of m.entries) {
          const db = e.meta.db;
          const c = await connect(opts.url, pw, db, `${ctx.component}: restore`);
          try {
            const r = new ByteReader(readEntry(ctx.vault, e));
            const head = await r.read(MAGIC2.length + 4);
            if (!head || !head.subarray(0, MAGIC2.length).equals(MAGIC2) || head.readUInt32LE(MAGIC2.length) !== db) {
              throw new IntegrityError(`${e.path}: not the memvault stream of redis db ${db}`);
            }
            let pending = [];
            let restored = 0;
            let expired = 0;
            const now = Date.now();
            for (; ; ) {
              const kl = await r.u32();
              if (kl === null) break;
              const key = await r.read(kl);
              const tl = (await r.read(1))[0];
              await r.read(tl);
              const times = await r.read(16);
              const pttl = Number(times.readBigInt64LE(0));
              const expireAt = Number(times.readBigInt64LE(8));
              const dump = await r.read(await r.u32());
              const args = ["RESTORE", key];
              if (pttl < 0) args.push("0");
              else if (opts.ttl === "absolute") {
                if (expireAt <= now) {
                  expired++;
                  continue;
                }
                args.push(String(expireAt));
              } else args.push(String(Math.max(1, pttl)));
              args.push(dump);
              if (opts.force) args.push("REPLACE");
              if (pttl >= 0 && opts.ttl === "absolute") args.push("ABSTTL");
              pending.push(c.sendCommand(args));
              restored++;
              if (pending.length >= 256) {
                await Promise.all(pending);
                pending = [];
              }
            }
            await Promise.all(pending);
            const expected = e.meta.keys;
            if (restored + expired !== expected) throw new IntegrityError(`${e.path}: read ${restored + expired} keys, backup has ${expected}`);
            if (expired > 0) ctx.log.info("redis restore: keys already past their original expiry were skipped", { component: ctx.component, db, expired });
            bytes2 += e.size;
          } catch (err) {
            if (err instanceof IntegrityError) throw new IntegrityError(`${ctx.component}: ${err.message}`, err.objectKey);
            throw err;
          } finally {
            await c.close().catch(() => void 0);
          }
        }
        return { location: redisField(opts.url), bytes: bytes2, entries: m.entries.length };
      },
      async validate(ctx) {
        const opts = restoreOptions3(ctx.target.options);
        const expected = ctx.manifest.driver.databases ?? {};
        const checks = [];
        if (!opts.url) {
          for (const e of ctx.manifest.entries) {
            const st = await fs7.stat(path7.join(ctx.location, e.path)).catch(() => null);
            checks.push({ name: `${e.path} restored`, ok: st?.size === e.size, expected: e.size, actual: st?.size });
          }
          return report(checks);
        }
        const pw = password({ passwordEnv: opts.passwordEnv }, "restore target");
        for (const [db, fig] of Object.entries(expected)) {
          let c;
          try {
            c = await connect(opts.url, pw, Number(db), `${ctx.component}: validate`);
            const a = await figuresOf(c, ctx.settings.scanCount ?? 1e3);
            checks.push({ name: `db ${db}: keys`, ok: a.keys === fig.keys, expected: fig.keys, actual: a.keys });
            checks.push({ name: `db ${db}: keys per type`, ok: JSON.stringify(sortKeys(a.types)) === JSON.stringify(sortKeys(fig.types)), expected: fig.types, actual: a.types });
            checks.push({ name: `db ${db}: keys with a TTL`, ok: a.volatile === fig.volatile, expected: fig.volatile, actual: a.volatile });
            checks.push({ name: `db ${db}: checksum of keys, types and values`, ok: a.checksum === fig.checksum, expected: fig.checksum, actual: a.checksum });
          } catch (err) {
            checks.push({ name: `db ${db}: read the restored keys`, ok: false, actual: err.message });
          } finally {
            await c?.close().catch(() => void 0);
          }
        }
        return report(checks);
      }
    };
  }
});

// functions/adapters/storage/s3-location.ts
function parseS3Url(url) {
  const m = /^s3:\/\/([^/]+)(?:\/(.*))?$/.exec(url);
  if (!m || !m[1]) throw new ConfigError(`storage url "${url}": expected s3://bucket/prefix (prefix optional)`);
  return { bucket: m[1], prefix: normalizePrefix(m[2] ?? "") };
}
function normalizePrefix(prefix) {
  return prefix.split("/").filter((s) => s !== "").join("/");
}
var LazyS3Storage;
var init_s3_location = __esm({
  "functions/adapters/storage/s3-location.ts"() {
    "use strict";
    init_errors();
    LazyS3Storage = class {
      constructor(loc) {
        this.loc = loc;
        const { bucket, prefix } = parseS3Url(loc.url);
        this.url = prefix ? `s3://${bucket}/${prefix}` : `s3://${bucket}`;
      }
      loc;
      url;
      inner;
      load() {
        return this.inner ??= Promise.resolve().then(() => (init_s3(), s3_exports)).then((m) => m.S3Storage.fromLocation(this.loc));
      }
      async get(key) {
        return (await this.load()).get(key);
      }
      async put(key, data) {
        return (await this.load()).put(key, data);
      }
      async has(key) {
        return (await this.load()).has(key);
      }
      async delete(key) {
        return (await this.load()).delete(key);
      }
      async *list(prefix) {
        yield* (await this.load()).list(prefix);
      }
    };
  }
});

// functions/adapters/storage/s3.ts
var s3_exports = {};
__export(s3_exports, {
  S3Storage: () => S3Storage,
  createS3Client: () => createS3Client,
  parseS3Url: () => parseS3Url
});
import {
  S3Client,
  GetObjectCommand,
  PutObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  DeleteObjectCommand
} from "@aws-sdk/client-s3";
function createS3Client(o = {}) {
  const config = {};
  if (o.region) config.region = o.region;
  if (o.credentials) config.credentials = o.credentials;
  if (o.endpoint) {
    config.endpoint = o.endpoint;
    config.region ??= "us-east-1";
    config.forcePathStyle = o.forcePathStyle ?? true;
    config.requestChecksumCalculation = "WHEN_REQUIRED";
    config.responseChecksumValidation = "WHEN_REQUIRED";
  } else if (o.forcePathStyle !== void 0) {
    config.forcePathStyle = o.forcePathStyle;
  }
  return new S3Client(config);
}
function status(err) {
  return err.$metadata?.httpStatusCode;
}
function isNetworkError(err, depth = 0) {
  if (!err || typeof err !== "object" || depth > 4) return false;
  const e = err;
  if (e.code && NETWORK_CODES.has(e.code)) return true;
  if (e.name === "TimeoutError") return true;
  if (typeof e.message === "string" && /socket hang up/i.test(e.message)) return true;
  return isNetworkError(e.cause, depth + 1);
}
function isNotFound(err) {
  return err.name !== void 0 && NOT_FOUND_NAMES.has(err.name) || status(err) === 404 && err.name !== "NoSuchBucket";
}
function isTransient(err) {
  const code = status(err);
  if (err.name && TRANSIENT_NAMES.has(err.name)) return true;
  if (code === 429 || code !== void 0 && code >= 500) return true;
  return isNetworkError(err);
}
async function bodyToBuffer(body) {
  if (body === void 0 || body === null) return Buffer.alloc(0);
  if (body instanceof Uint8Array) return Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  if (typeof body === "string") return Buffer.from(body);
  if (typeof body[Symbol.asyncIterator] === "function") {
    const chunks = [];
    for await (const chunk of body) {
      chunks.push(typeof chunk === "string" ? Buffer.from(chunk) : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    }
    return Buffer.concat(chunks);
  }
  const mixin = body;
  if (typeof mixin.transformToByteArray === "function") return Buffer.from(await mixin.transformToByteArray());
  throw new PermanentError("s3:GetObject: unsupported response body type");
}
var TRANSIENT_NAMES, NETWORK_CODES, NOT_FOUND_NAMES, DENIED_NAMES, S3Storage;
var init_s3 = __esm({
  "functions/adapters/storage/s3.ts"() {
    "use strict";
    init_s3_location();
    init_errors();
    TRANSIENT_NAMES = /* @__PURE__ */ new Set([
      "SlowDown",
      "Throttling",
      "ThrottlingException",
      "ThrottledException",
      "RequestThrottled",
      "RequestThrottledException",
      "TooManyRequestsException",
      "RequestLimitExceeded",
      "BandwidthLimitExceeded",
      "ProvisionedThroughputExceededException",
      "ServiceUnavailable",
      "InternalError",
      "RequestTimeout",
      "RequestTimeoutException",
      "TimeoutError"
    ]);
    NETWORK_CODES = /* @__PURE__ */ new Set([
      "ECONNRESET",
      "ETIMEDOUT",
      "ECONNREFUSED",
      "ECONNABORTED",
      "EPIPE",
      "EAI_AGAIN",
      "EHOSTUNREACH",
      "ENETUNREACH",
      "ENETDOWN",
      "UND_ERR_SOCKET"
    ]);
    NOT_FOUND_NAMES = /* @__PURE__ */ new Set(["NoSuchKey", "NotFound"]);
    DENIED_NAMES = /* @__PURE__ */ new Set([
      "AccessDenied",
      "Forbidden",
      "AllAccessDisabled",
      "InvalidAccessKeyId",
      "SignatureDoesNotMatch",
      "ExpiredToken",
      "InvalidToken"
    ]);
    S3Storage = class _S3Storage {
      url;
      bucket;
      /** Normalized vault prefix without leading or trailing '/'; '' for the bucket root. */
      prefix;
      client;
      /** `${prefix}/` or '' — prepended to every key. */
      base;
      constructor(opts) {
        if (!opts.bucket) throw new ConfigError("storage bucket: expected a bucket name, got an empty string");
        this.bucket = opts.bucket;
        this.prefix = normalizePrefix(opts.prefix);
        this.base = this.prefix ? `${this.prefix}/` : "";
        this.url = this.prefix ? `s3://${this.bucket}/${this.prefix}` : `s3://${this.bucket}`;
        this.client = opts.client ?? createS3Client({ region: opts.region, endpoint: opts.endpoint, forcePathStyle: opts.forcePathStyle });
      }
      static fromLocation(loc) {
        const { bucket, prefix } = parseS3Url(loc.url);
        return new _S3Storage({ bucket, prefix, region: loc.region, endpoint: loc.endpoint, forcePathStyle: loc.forcePathStyle });
      }
      objectKey(key) {
        if (!key || key.startsWith("/") || key.split("/").some((s) => s === ".." || s === "." || s === "")) {
          throw new PermanentError(`${this.url}: invalid object key "${key}"`);
        }
        return this.base + key;
      }
      /** Maps an SDK or network error onto the vault's error families. */
      wrap(err, action, key) {
        if (err instanceof MemvaultError) throw err;
        const e = err ?? {};
        const what = key === void 0 ? `${action} ${this.url}` : `${action} ${key} in ${this.url}`;
        const detail = `${e.name ?? "Error"}${status(e) ? ` (HTTP ${status(e)})` : ""}: ${e.message ?? String(err)}`;
        if (key !== void 0 && isNotFound(e)) throw new NotFoundError(`${this.url}: object ${key} not found`);
        if (e.name === "NoSuchBucket") {
          throw new PermanentError(`${what}: bucket ${this.bucket} does not exist`, { cause: err });
        }
        if (e.name && DENIED_NAMES.has(e.name) || status(e) === 403) {
          throw new PermanentError(
            `${what}: access denied to bucket ${this.bucket} for ${action}; check the credentials and the bucket policy (${detail})`,
            { cause: err }
          );
        }
        if (isTransient(e)) throw new TransientStorageError(`${what}: ${detail}`, { cause: err });
        throw new PermanentError(`${what}: ${detail}`, { cause: err });
      }
      async get(key) {
        const Key = this.objectKey(key);
        try {
          const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key }));
          const data = await bodyToBuffer(res.Body);
          if (res.ContentLength !== void 0 && data.length !== res.ContentLength) {
            throw new TransientStorageError(
              `s3:GetObject ${key} in ${this.url}: body ended after ${data.length} of ${res.ContentLength} bytes`
            );
          }
          return data;
        } catch (err) {
          this.wrap(err, "s3:GetObject", key);
        }
      }
      async put(key, parts) {
        const Key = this.objectKey(key);
        const data = parts instanceof Uint8Array ? parts : Buffer.concat(parts);
        try {
          await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key, Body: data, ContentLength: data.byteLength }));
        } catch (err) {
          this.wrap(err, "s3:PutObject", key);
        }
      }
      async has(key) {
        const Key = this.objectKey(key);
        try {
          await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key }));
          return true;
        } catch (err) {
          if (isNotFound(err ?? {})) return false;
          this.wrap(err, "s3:HeadObject", key);
        }
      }
      async *list(prefix) {
        const Prefix = this.base + prefix;
        let ContinuationToken;
        do {
          let page;
          try {
            page = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix, ContinuationToken }));
          } catch (err) {
            this.wrap(err, "s3:ListBucket");
          }
          for (const o of page.Contents ?? []) {
            if (!o.Key || !o.Key.startsWith(this.base)) continue;
            const key = o.Key.slice(this.base.length);
            if (!key || key.endsWith("/")) continue;
            yield { key, size: o.Size ?? 0, modified: o.LastModified };
          }
          if (page.IsTruncated && !page.NextContinuationToken) {
            throw new PermanentError(`s3:ListBucket ${this.url}: truncated listing without a continuation token`);
          }
          ContinuationToken = page.IsTruncated ? page.NextContinuationToken : void 0;
        } while (ContinuationToken);
      }
      async delete(key) {
        const Key = this.objectKey(key);
        try {
          await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key }));
        } catch (err) {
          if (isNotFound(err ?? {})) return;
          this.wrap(err, "s3:DeleteObject", key);
        }
      }
    };
  }
});

// functions/components/s3-prefix.ts
import { promises as fs8, createReadStream as createReadStream2 } from "node:fs";
import { createHash as createHash6 } from "node:crypto";
import { Readable } from "node:stream";
import { z as z8 } from "zod";
function s3Error(err, action, where) {
  if (err instanceof MemvaultError) return err;
  const e = err ?? {};
  const code = e.$metadata?.httpStatusCode;
  const detail = `${e.name ?? "Error"}${code ? ` (HTTP ${code})` : ""}: ${e.message ?? String(err)}`;
  if (e.name === "NoSuchBucket") return new NotFoundError(`${action} ${where}: the bucket does not exist`);
  if (e.name === "NoSuchKey" || code === 404) return new NotFoundError(`${action} ${where}: not found`);
  if (e.name === "AccessDenied" || code === 403) return new PermanentError(`${action} ${where}: access denied; check the credentials and the bucket policy (${detail})`, { cause: err });
  if (e.name === "SlowDown" || code === 429 || code === 503) return new ThrottledError(`${action} ${where}: ${detail}`, { cause: err });
  if (code !== void 0 && code >= 500) return new TransientStorageError(`${action} ${where}: ${detail}`, { cause: err });
  return new PermanentError(`${action} ${where}: ${detail}`, { cause: err });
}
function normPrefix(p) {
  const t = p.replace(/^\/+/, "");
  return t === "" || t.endsWith("/") ? t : `${t}/`;
}
function sourceClient(settings, deps) {
  return deps.clientFor({ region: settings.region, endpoint: settings.endpoint, forcePathStyle: settings.forcePathStyle });
}
async function* listRange(client, bucket, prefix, startAfter, endKey) {
  let ContinuationToken;
  let first = true;
  do {
    let page;
    try {
      page = await client.send(new (await s3Sdk()).ListObjectsV2Command({
        Bucket: bucket,
        Prefix: prefix || void 0,
        ContinuationToken,
        StartAfter: first && startAfter ? startAfter : void 0
      }));
    } catch (err) {
      throw s3Error(err, "s3:ListBucket", `s3://${bucket}/${prefix}`);
    }
    first = false;
    for (const o of page.Contents ?? []) {
      if (!o.Key) continue;
      if (endKey !== void 0 && o.Key > endKey) return;
      if (o.Key.endsWith("/") && (o.Size ?? 0) === 0) continue;
      yield { key: o.Key, size: o.Size ?? 0, etag: o.ETag ?? "" };
    }
    if (page.IsTruncated && !page.NextContinuationToken) {
      throw new PermanentError(`s3:ListBucket s3://${bucket}/${prefix}: truncated listing without a continuation token`);
    }
    ContinuationToken = page.IsTruncated ? page.NextContinuationToken : void 0;
  } while (ContinuationToken);
}
async function planPartitions(settings, client, o) {
  if (!(o.maxObjectsPerPartition >= 1)) throw new UsageError(`maxObjectsPerPartition: expected a positive integer, got ${o.maxObjectsPerPartition}`);
  const parts = [];
  let cur = { index: 0, objects: 0, bytes: 0 };
  let lastKey;
  for await (const obj of listRange(client, settings.bucket, normPrefix(settings.prefix))) {
    if (cur.objects === o.maxObjectsPerPartition) {
      cur.endKey = lastKey;
      parts.push(cur);
      cur = { index: parts.length, startAfter: lastKey, objects: 0, bytes: 0 };
    }
    cur.objects++;
    cur.bytes += obj.size;
    lastKey = obj.key;
  }
  parts.push(cur);
  return parts;
}
function previousEntries(parent, type) {
  const m = /* @__PURE__ */ new Map();
  if (parent && type !== "full") for (const e of parent.entries) m.set(e.path, e);
  return m;
}
async function backupPartition(settings, client, partition, ctx, previous = previousEntries(ctx.parent, ctx.type)) {
  const prefix = normPrefix(settings.prefix);
  const out = { entries: [], warnings: [], objects: 0, unchanged: 0, bytes: 0 };
  for await (const obj of listRange(client, settings.bucket, prefix, partition.startAfter, partition.endKey)) {
    const rel = obj.key.slice(prefix.length);
    const prev = previous.get(rel);
    if (prev && prev.type === "file" && prev.chunks && prev.size === obj.size && prev.meta?.etag === obj.etag) {
      out.entries.push(prev);
      ctx.writer.reuse(prev);
      out.objects++;
      out.unchanged++;
      out.bytes += prev.size;
      continue;
    }
    let res;
    try {
      res = await client.send(new (await s3Sdk()).GetObjectCommand({ Bucket: settings.bucket, Key: obj.key }));
    } catch (err) {
      const e = s3Error(err, "s3:GetObject", `s3://${settings.bucket}/${obj.key}`);
      if (e instanceof NotFoundError) {
        out.warnings.push(`${rel}: vanished during the backup`);
        continue;
      }
      throw e;
    }
    const body = res.Body;
    let r;
    try {
      r = await ctx.writer.writeStream(body ?? Readable.from([]));
    } catch (err) {
      body?.destroy?.();
      throw err;
    }
    if (res.ContentLength !== void 0 && r.size !== res.ContentLength) {
      throw new TransientStorageError(`s3:GetObject s3://${settings.bucket}/${obj.key}: body ended after ${r.size} of ${res.ContentLength} bytes`);
    }
    const mtime = res.LastModified ? String(BigInt(res.LastModified.getTime()) * 1000000n) : void 0;
    const meta = { etag: res.ETag ?? obj.etag };
    if (res.ContentType) meta.contentType = res.ContentType;
    if (res.Metadata && Object.keys(res.Metadata).length > 0) meta.metadata = res.Metadata;
    out.entries.push({ path: rel, type: "file", size: r.size, sha256: r.sha256, chunks: r.chunks, mtimeNs: mtime, meta });
    out.objects++;
    out.bytes += r.size;
  }
  return out;
}
function figures(entries) {
  return { objects: entries.length, bytes: entries.reduce((a, e) => a + e.size, 0) };
}
function parseRestoreOptions(component, options) {
  const r = restoreOptionsSchema.safeParse(options ?? {});
  if (!r.success) {
    throw new UsageError(`restore options for ${component} (s3-prefix): ${r.error.issues.map((i) => `${i.path.join(".") || "(options)"}: ${i.message}`).join("; ")}`);
  }
  return r.data;
}
function joinKey(prefix, rel) {
  return normPrefix(prefix) + rel;
}
async function putObject(client, bucket, key, e, vault, o) {
  const ContentType = typeof e.meta?.contentType === "string" ? e.meta.contentType : void 0;
  const Metadata = e.meta?.metadata ?? void 0;
  if (e.size <= o.multipartThreshold) {
    const parts = [];
    for await (const b of readEntry(vault, e)) parts.push(b);
    await client.send(new (await s3Sdk()).PutObjectCommand({ Bucket: bucket, Key: key, Body: Buffer.concat(parts), ContentLength: e.size, ContentType, Metadata }));
    return;
  }
  const { UploadId } = await client.send(new (await s3Sdk()).CreateMultipartUploadCommand({ Bucket: bucket, Key: key, ContentType, Metadata }));
  const done = [];
  try {
    let buf = [];
    let len = 0;
    const flush = async () => {
      const PartNumber = done.length + 1;
      const Body = Buffer.concat(buf);
      const r = await client.send(new (await s3Sdk()).UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber, Body, ContentLength: Body.length }));
      done.push({ ETag: r.ETag, PartNumber });
      buf = [];
      len = 0;
    };
    for await (const b of readEntry(vault, e)) {
      buf.push(b);
      len += b.length;
      if (len >= o.partSize) await flush();
    }
    if (len > 0 || done.length === 0) await flush();
    await client.send(new (await s3Sdk()).CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId, MultipartUpload: { Parts: done } }));
  } catch (err) {
    await client.send(new (await s3Sdk()).AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId })).catch(() => void 0);
    throw err;
  }
}
async function hashObject(client, bucket, key) {
  const res = await client.send(new (await s3Sdk()).GetObjectCommand({ Bucket: bucket, Key: key }));
  const h = createHash6("sha256");
  let size = 0;
  for await (const b of res.Body ?? []) {
    h.update(b);
    size += b.length;
  }
  return { size, sha256: h.digest("hex") };
}
async function hashLocal(p) {
  const h = createHash6("sha256");
  let size = 0;
  for await (const b of createReadStream2(p, { highWaterMark: 1024 * 1024 })) {
    h.update(b);
    size += b.length;
  }
  return { size, sha256: h.digest("hex") };
}
function createS3PrefixDriver(deps = defaultDeps) {
  return {
    kind: "s3-prefix",
    mode: "stream",
    schema: s3PrefixSchema,
    async planPartitions(settings) {
      return planPartitions(settings, await sourceClient(settings, deps), { maxObjectsPerPartition: settings.maxObjectsPerPartition });
    },
    /** One partition of a fanned-out backup (the backup-run state machine's Map over planPartitions()). */
    async backupPartition(settings, partition, ctx) {
      return backupPartition(settings, await sourceClient(settings, deps), partition, ctx);
    },
    async backup(ctx) {
      const s = ctx.settings;
      const client = await sourceClient(s, deps);
      const parts = await planPartitions(s, client, { maxObjectsPerPartition: s.maxObjectsPerPartition });
      const previous = previousEntries(ctx.parent, ctx.type);
      const entries = [];
      const warnings = [];
      let unchanged = 0;
      for (const p of parts) {
        const r = await backupPartition(s, client, p, { component: ctx.component, type: ctx.type, parent: ctx.parent, writer: ctx.writer, log: ctx.log }, previous);
        entries.push(...r.entries);
        warnings.push(...r.warnings);
        unchanged += r.unchanged;
        ctx.log.info("s3-prefix partition done", { component: ctx.component, partition: p.index, objects: r.objects, unchanged: r.unchanged });
      }
      return {
        entries,
        meta: { source: `s3://${s.bucket}/${normPrefix(s.prefix)}`, partitions: parts.length, unchanged, ...figures(entries) },
        warnings
      };
    },
    async restore(ctx) {
      const o = parseRestoreOptions(ctx.component, ctx.target.options);
      const files = ctx.manifest.entries.filter((e) => e.type === "file");
      let bytes2 = 0;
      if (o.bucket) {
        const client = await deps.clientFor({ region: o.region, endpoint: o.endpoint, forcePathStyle: o.forcePathStyle });
        for (const e of files) {
          const key = joinKey(o.prefix, e.path);
          try {
            await putObject(client, o.bucket, key, e, ctx.vault, o);
          } catch (err) {
            if (err instanceof IntegrityError) throw new IntegrityError(`${ctx.component}: ${e.path}: ${err.message}`, err.objectKey);
            throw s3Error(err, "s3:PutObject", `s3://${o.bucket}/${key}`);
          }
          bytes2 += e.size;
        }
        return { location: `s3://${o.bucket}/${normPrefix(o.prefix)}`, bytes: bytes2, entries: files.length };
      }
      const dest = ctx.target.dir;
      await fs8.mkdir(dest, { recursive: true });
      for (const e of files) bytes2 += await restoreEntryFile(ctx.vault, ctx.component, e, safeJoin(dest, e.path));
      return { location: dest, bytes: bytes2, entries: files.length };
    },
    async validate(ctx) {
      const o = parseRestoreOptions(ctx.component, ctx.target.options);
      const files = ctx.manifest.entries.filter((e) => e.type === "file");
      const problems = [];
      let ok = 0;
      let bytes2 = 0;
      const client = o.bucket ? await deps.clientFor({ region: o.region, endpoint: o.endpoint, forcePathStyle: o.forcePathStyle }) : void 0;
      for (const e of files) {
        let got2;
        try {
          got2 = client ? await hashObject(client, o.bucket, joinKey(o.prefix, e.path)) : await hashLocal(safeJoin(ctx.location, e.path));
        } catch (err) {
          problems.push(`${e.path}: ${err.name === "NoSuchKey" || err.code === "ENOENT" ? "missing" : err.message}`);
          continue;
        }
        if (got2.size !== e.size) {
          problems.push(`${e.path}: size ${got2.size}, expected ${e.size}`);
          continue;
        }
        if (got2.sha256 !== e.sha256) {
          problems.push(`${e.path}: SHA-256 differs`);
          continue;
        }
        ok++;
        bytes2 += got2.size;
      }
      const expected = figures(files);
      const checks = [
        { name: "objects restored with matching size and SHA-256", ok: ok === expected.objects && problems.length === 0, expected: expected.objects, actual: ok },
        { name: "bytes", ok: bytes2 === expected.bytes, expected: expected.bytes, actual: bytes2 },
        { name: "object count recorded at backup", ok: ctx.manifest.driver.objects === void 0 || ctx.manifest.driver.objects === files.length, expected: ctx.manifest.driver.objects, actual: files.length }
      ];
      if (client) {
        let present = 0;
        for await (const _ of listRange(client, o.bucket, normPrefix(o.prefix))) present++;
        checks.push({ name: "objects under the target prefix", ok: present === expected.objects, expected: expected.objects, actual: present });
      }
      if (problems.length > 0) checks.push({ name: "problems", ok: false, actual: problems.slice(0, 20) });
      return report(checks);
    }
  };
}
var s3PrefixSchema, s3Module, s3Sdk, defaultDeps, restoreOptionsSchema, s3PrefixDriver;
var init_s3_prefix = __esm({
  "functions/components/s3-prefix.ts"() {
    "use strict";
    init_types();
    init_writer();
    init_errors();
    init_restore_file();
    s3PrefixSchema = z8.object({
      /** Source bucket. */
      bucket: z8.string().min(1),
      /** Key prefix of the objects, e.g. "models/" ('' for the whole bucket). */
      prefix: z8.string().default(""),
      region: z8.string().optional(),
      /** An S3-compatible endpoint, e.g. http://127.0.0.1:9000. */
      endpoint: z8.string().url().optional(),
      /** @default true with an endpoint */
      forcePathStyle: z8.boolean().optional(),
      /** Objects per partition of a backup run (fan-out unit of the state machine). @default 10000 */
      maxObjectsPerPartition: z8.number().int().positive().default(1e4)
    });
    s3Sdk = () => s3Module ??= import("@aws-sdk/client-s3");
    defaultDeps = {
      clientFor: async (o) => (await Promise.resolve().then(() => (init_s3(), s3_exports))).createS3Client(o)
    };
    restoreOptionsSchema = z8.object({
      bucket: z8.string().min(1).optional(),
      prefix: z8.string().default(""),
      endpoint: z8.string().url().optional(),
      region: z8.string().optional(),
      forcePathStyle: z8.boolean().optional(),
      multipartThreshold: z8.number().int().positive().default(64 * 1024 * 1024),
      partSize: z8.number().int().min(5 * 1024 * 1024).default(16 * 1024 * 1024)
    }).strict();
    s3PrefixDriver = createS3PrefixDriver();
  }
});

// functions/components/mongodb.ts
import { createReadStream as createReadStream3 } from "node:fs";
import { createHash as createHash7 } from "node:crypto";
import { z as z9 } from "zod";
function mongoLib() {
  return mongoModule ??= import("mongodb").then((m) => {
    EJSON = m.BSON.EJSON;
    return m;
  });
}
function connectionString(component, o, field) {
  if (o.uri) return o.uri;
  if (o.uriEnv) {
    const v = process.env[o.uriEnv];
    if (!v) throw new ConfigError(`${field}.uriEnv: environment variable ${o.uriEnv} is not set (it should hold the MongoDB connection string)`);
    return v;
  }
  throw new ConfigError(`${field}: set uri or uriEnv (the MongoDB connection string) for ${component}`);
}
function snapshotUnsupported(err) {
  const e = err;
  if (e?.code !== void 0 && [20, 72, 115, 303].includes(e.code)) return true;
  return /snapshot|readConcern|replica set member or mongos/i.test(e?.message ?? "");
}
function describeMongoError(err, what) {
  const e = err;
  if (err instanceof PermanentError || err instanceof RetryableError) return err;
  if (e?.code === 239 || e?.codeName === "SnapshotTooOld") {
    return new PermanentError(`${what}: the snapshot fell out of the server's history window (SnapshotTooOld); raise minSnapshotHistoryWindowInSeconds or set snapshot: off`, { cause: err });
  }
  if (e?.code === 13 || e?.code === 18 || e?.codeName === "Unauthorized" || e?.codeName === "AuthenticationFailed") {
    return new PermanentError(`${what}: not authorized (${e.message}); the user needs the backup or read role`, { cause: err });
  }
  if (e?.name === "MongoNetworkError" || e?.name === "MongoServerSelectionError" || e?.name === "MongoNetworkTimeoutError") {
    return new RetryableError(`${what}: ${e.message}`, { cause: err });
  }
  return new PermanentError(`${what}: ${e?.message ?? String(err)}`, { cause: err });
}
function toCanonical(v) {
  return JSON.parse(EJSON.stringify(v, { relaxed: false }));
}
function fromCanonical(v) {
  return EJSON.deserialize(v, { relaxed: false });
}
async function* ndjson(cursor, digest) {
  let parts = [];
  let len = 0;
  for await (const doc of cursor) {
    const line = EJSON.stringify(doc, { relaxed: false });
    digest.add(line);
    parts.push(line, "\n");
    len += line.length + 1;
    if (len >= BUFFER_BYTES) {
      yield Buffer.from(parts.join(""));
      parts = [];
      len = 0;
    }
  }
  if (len > 0) yield Buffer.from(parts.join(""));
}
async function* lines2(src) {
  let rest = "";
  const decoder = new TextDecoder("utf-8", { fatal: true });
  for await (const b of src) {
    const text = rest + decoder.decode(b, { stream: true });
    const parts = text.split("\n");
    rest = parts.pop();
    for (const l of parts) if (l) yield l;
  }
  rest += decoder.decode();
  if (rest) yield rest;
}
async function readWhole(vault, e) {
  const parts = [];
  for await (const b of readEntry(vault, e)) parts.push(b);
  return Buffer.concat(parts);
}
function isSystem(name) {
  return name.startsWith("system.");
}
function indexSpecs(indexes) {
  return indexes.map((ix) => {
    const { v: _v, ns: _ns, ...rest } = fromCanonical(ix);
    return rest;
  });
}
function parseRestoreOptions2(component, options) {
  const r = restoreOptionsSchema2.safeParse(options ?? {});
  if (!r.success) {
    throw new UsageError(`restore options for ${component} (mongodb): ${r.error.issues.map((i) => `${i.path.join(".") || "(options)"}: ${i.message}`).join("; ")}`);
  }
  return r.data;
}
async function readMetadata(ctx) {
  const e = ctx.manifest.entries.find((x) => x.path === META_PATH);
  if (!e) throw new IntegrityError(`${ctx.component}: manifest ${ctx.manifest.id} has no ${META_PATH} entry`);
  return JSON.parse((await readWhole(ctx.vault, e)).toString("utf8"));
}
function createMongodbDriver(deps = defaultDeps2) {
  return {
    kind: "mongodb",
    mode: "stream",
    schema: mongodbSchema,
    async backup(ctx) {
      await mongoLib();
      const s = ctx.settings;
      const field = `components.${ctx.component}`;
      const client = await deps.connect(connectionString(ctx.component, s, field)).catch((err) => {
        throw describeMongoError(err, `${ctx.component}: connect`);
      });
      let session;
      try {
        const meta = { format: "memvault-mongodb/1", consistency: "per-collection", databases: {} };
        const entries = [];
        const warnings = [];
        const figures2 = {};
        if (s.snapshot !== "off") session = client.startSession({ snapshot: true });
        let probed = false;
        for (const dbName of s.databases) {
          const db = client.db(dbName);
          let infos;
          try {
            infos = (await db.listCollections({}, { nameOnly: false }).toArray()).sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
          } catch (err) {
            throw describeMongoError(err, `${ctx.component}: listCollections on ${dbName}`);
          }
          const wanted = s.collections ? new Set(s.collections) : void 0;
          const list = [];
          for (const info of infos) {
            if (isSystem(info.name) || wanted && !wanted.has(info.name)) continue;
            if (info.type === "view") {
              list.push({ name: info.name, type: "view", options: toCanonical(info.options ?? {}), indexes: [] });
              continue;
            }
            if (info.type && info.type !== "collection") {
              warnings.push(`${dbName}.${info.name}: ${info.type} collections are not backed up`);
              continue;
            }
            const coll = db.collection(info.name);
            if (session && !probed) {
              try {
                await coll.find({}, { session, limit: 1, batchSize: 1 }).toArray();
              } catch (err) {
                if (s.snapshot === "auto" && snapshotUnsupported(err)) {
                  ctx.log.warn("snapshot reads not supported; collections are read one by one (each consistent with itself)", { component: ctx.component });
                  await session.endSession();
                  session = void 0;
                } else if (snapshotUnsupported(err)) {
                  throw new PermanentError(`${field}.snapshot: required, but the server does not support snapshot reads (${err.message}); use MongoDB >= 5.0 on a replica set, or set snapshot: auto`);
                } else {
                  throw describeMongoError(err, `${ctx.component}: find on ${dbName}.${info.name}`);
                }
              }
              probed = true;
              if (session) {
                meta.consistency = "snapshot";
                const t = session.snapshotTime;
                if (t) meta.atClusterTime = EJSON.stringify(t, { relaxed: false });
              }
            }
            let indexes;
            try {
              indexes = (await coll.indexes()).filter((ix) => ix.name !== "_id_").map(toCanonical);
            } catch (err) {
              throw describeMongoError(err, `${ctx.component}: listIndexes on ${dbName}.${info.name}`);
            }
            const digest = new CollectionDigest();
            const cursor = coll.find({}, { ...EXACT_TYPES, batchSize: s.batchSize, ...session ? { session } : {} });
            let r;
            try {
              r = await ctx.writer.writeStream(ndjson(cursor, digest));
            } catch (err) {
              throw describeMongoError(err, `${ctx.component}: reading ${dbName}.${info.name}`);
            } finally {
              await cursor.close().catch(() => void 0);
            }
            const entryPath = `${dbName}/${info.name}.ndjson`;
            entries.push({ path: entryPath, type: "file", size: r.size, sha256: r.sha256, chunks: r.chunks, meta: { documents: digest.documents, checksum: digest.hex } });
            list.push({ name: info.name, type: "collection", options: toCanonical(info.options ?? {}), indexes, documents: digest.documents, checksum: digest.hex, entry: entryPath });
            figures2[`${dbName}.${info.name}`] = { documents: digest.documents, checksum: digest.hex, indexes: indexes.map((ix) => String(ix.name)).sort() };
          }
          meta.databases[dbName] = list;
        }
        const m = await ctx.writer.writeBuffer(Buffer.from(JSON.stringify(meta)));
        entries.push({ path: META_PATH, type: "file", size: m.size, sha256: m.sha256, chunks: m.chunks });
        return {
          entries,
          meta: { consistency: meta.consistency, atClusterTime: meta.atClusterTime, databases: s.databases, collections: figures2 },
          warnings
        };
      } finally {
        await session?.endSession().catch(() => void 0);
        await client.close().catch(() => void 0);
      }
    },
    async restore(ctx) {
      await mongoLib();
      const o = parseRestoreOptions2(ctx.component, ctx.target.options);
      const meta = await readMetadata(ctx);
      if (!o.uri && !o.uriEnv) {
        const dest = ctx.target.dir;
        const bytes3 = await restoreEntriesToDir(ctx.vault, ctx.component, ctx.manifest.entries, dest);
        return { location: dest, bytes: bytes3, entries: ctx.manifest.entries.length };
      }
      const client = await deps.connect(connectionString(ctx.component, o, "restore options")).catch((err) => {
        throw describeMongoError(err, `${ctx.component}: connect to the restore target`);
      });
      let bytes2 = 0;
      let documents = 0;
      try {
        for (const [dbName, list] of Object.entries(meta.databases)) {
          const target = o.databaseMap[dbName] ?? dbName;
          const db = client.db(target);
          const existing = new Set((await db.listCollections({}, { nameOnly: true }).toArray()).map((c) => c.name));
          for (const c of list.filter((x) => x.type === "collection")) {
            const where = `${target}.${c.name}`;
            if (existing.has(c.name)) {
              const coll2 = db.collection(c.name);
              if (o.dropExisting) {
                await coll2.drop();
                existing.delete(c.name);
              } else if (await coll2.countDocuments({}) > 0) {
                throw new PermanentError(`${ctx.component}: restore target collection ${where} already holds documents; restore into a fresh database (databaseMap) or pass dropExisting: true`);
              }
            }
            if (!existing.has(c.name)) await db.createCollection(c.name, fromCanonical(c.options));
            const coll = db.collection(c.name);
            const e = ctx.manifest.entries.find((x) => x.path === c.entry);
            if (!e) throw new IntegrityError(`${ctx.component}: manifest ${ctx.manifest.id} has no entry ${c.entry}`);
            let batch = [];
            let batchBytes = 0;
            const flush = async () => {
              if (batch.length === 0) return;
              try {
                await coll.insertMany(batch, { ordered: true });
              } catch (err) {
                throw describeMongoError(err, `${ctx.component}: insertMany into ${where}`);
              }
              documents += batch.length;
              batch = [];
              batchBytes = 0;
            };
            try {
              for await (const line of lines2(readEntry(ctx.vault, e))) {
                batch.push(EJSON.parse(line, { relaxed: false }));
                batchBytes += line.length;
                if (batch.length >= o.batchSize || batchBytes >= 8 * 1024 * 1024) await flush();
              }
              await flush();
            } catch (err) {
              if (err instanceof IntegrityError) throw new IntegrityError(`${ctx.component}: ${e.path}: ${err.message}`, err.objectKey);
              throw err;
            }
            bytes2 += e.size;
            if (c.indexes.length > 0) {
              try {
                await coll.createIndexes(indexSpecs(c.indexes));
              } catch (err) {
                throw describeMongoError(err, `${ctx.component}: createIndexes on ${where}`);
              }
            }
          }
          for (const v of list.filter((x) => x.type === "view")) {
            if (existing.has(v.name) && o.dropExisting) await db.collection(v.name).drop();
            await db.createCollection(v.name, fromCanonical(v.options));
          }
        }
      } finally {
        await client.close().catch(() => void 0);
      }
      const dbs = Object.keys(meta.databases).map((d) => o.databaseMap[d] ?? d);
      ctx.log.info("mongodb restore finished", { component: ctx.component, databases: dbs, documents });
      return { location: `mongodb databases ${dbs.join(", ")}`, bytes: bytes2, entries: ctx.manifest.entries.length };
    },
    async validate(ctx) {
      await mongoLib();
      const o = parseRestoreOptions2(ctx.component, ctx.target.options);
      const expected = ctx.manifest.driver.collections ?? {};
      const checks = [];
      const seen = /* @__PURE__ */ new Set();
      if (!o.uri && !o.uriEnv) {
        for (const e of ctx.manifest.entries) {
          if (e.path === META_PATH) continue;
          const key = e.path.replace(/\.ndjson$/, "").replace("/", ".");
          const exp = expected[key];
          seen.add(key);
          const digest = new CollectionDigest();
          try {
            for await (const l of lines2(createReadStream3(safeJoin(ctx.location, e.path)))) digest.add(l);
          } catch (err) {
            checks.push({ name: `${key}: read restored file`, ok: false, actual: err.message });
            continue;
          }
          checks.push({ name: `${key}: documents`, ok: digest.documents === exp?.documents, expected: exp?.documents, actual: digest.documents });
          checks.push({ name: `${key}: checksum`, ok: digest.hex === exp?.checksum });
        }
      } else {
        const client = await deps.connect(connectionString(ctx.component, o, "restore options"));
        try {
          for (const key of Object.keys(expected)) {
            const dot = key.indexOf(".");
            const dbName = key.slice(0, dot);
            const name = key.slice(dot + 1);
            const exp = expected[key];
            const coll = client.db(o.databaseMap[dbName] ?? dbName).collection(name);
            seen.add(key);
            const count = await coll.countDocuments({});
            checks.push({ name: `${key}: documents`, ok: count === exp.documents, expected: exp.documents, actual: count });
            const digest = new CollectionDigest();
            for await (const doc of coll.find({}, { ...EXACT_TYPES, batchSize: 1e3 })) digest.add(EJSON.stringify(doc, { relaxed: false }));
            checks.push({ name: `${key}: checksum`, ok: digest.hex === exp.checksum && digest.documents === exp.documents });
            const names = (await coll.indexes()).map((ix) => String(ix.name)).filter((n) => n !== "_id_").sort();
            checks.push({ name: `${key}: indexes`, ok: JSON.stringify(names) === JSON.stringify(exp.indexes), expected: exp.indexes, actual: names });
          }
        } finally {
          await client.close().catch(() => void 0);
        }
      }
      const missing = Object.keys(expected).filter((k) => !seen.has(k));
      checks.push({ name: "every collection of the backup restored", ok: missing.length === 0, actual: missing });
      return report(checks);
    }
  };
}
var mongoModule, EJSON, mongodbSchema, defaultDeps2, EXACT_TYPES, META_PATH, BUFFER_BYTES, MOD, CollectionDigest, restoreOptionsSchema2, mongodbDriver;
var init_mongodb = __esm({
  "functions/components/mongodb.ts"() {
    "use strict";
    init_types();
    init_writer();
    init_errors();
    init_restore_file();
    init_restore_file();
    mongodbSchema = z9.object({
      /** Connection string. Prefer uriEnv: a URI holds the password. */
      uri: z9.string().optional(),
      /** Name of an environment variable holding the connection string. */
      uriEnv: z9.string().optional(),
      /** Databases to back up. */
      databases: z9.array(z9.string().min(1)).min(1),
      /** Only these collections (all when absent). */
      collections: z9.array(z9.string()).optional(),
      /** Documents per cursor batch. @default 1000 */
      batchSize: z9.number().int().positive().default(1e3),
      /** auto: snapshot session when the server supports it; required: fail without; off: plain reads. @default auto */
      snapshot: z9.enum(["auto", "required", "off"]).default("auto")
    });
    defaultDeps2 = {
      connect: async (uri) => new (await mongoLib()).MongoClient(uri).connect()
    };
    EXACT_TYPES = { promoteValues: false, promoteBuffers: false, promoteLongs: false, bsonRegExp: true };
    META_PATH = "_metadata.json";
    BUFFER_BYTES = 64 * 1024;
    MOD = 1n << 256n;
    CollectionDigest = class {
      sum = 0n;
      documents = 0;
      add(line) {
        this.sum = (this.sum + BigInt(`0x${createHash7("sha256").update(line).digest("hex")}`)) % MOD;
        this.documents++;
      }
      get hex() {
        return this.sum.toString(16).padStart(64, "0");
      }
    };
    restoreOptionsSchema2 = z9.object({
      uri: z9.string().optional(),
      uriEnv: z9.string().optional(),
      databaseMap: z9.record(z9.string(), z9.string().min(1)).default({}),
      dropExisting: z9.boolean().default(false),
      batchSize: z9.number().int().positive().default(1e3)
    }).strict();
    mongodbDriver = createMongodbDriver();
  }
});

// functions/components/ssm-config.ts
import { promises as fs9 } from "node:fs";
import path8 from "node:path";
import { createHash as createHash8 } from "node:crypto";
import { z as z10 } from "zod";
function parameterChecksum(r) {
  return createHash8("sha256").update(JSON.stringify([r.type, r.value, r.dataType ?? "text"])).digest("hex");
}
function secretChecksum(r) {
  return createHash8("sha256").update(JSON.stringify(r.secretString !== void 0 ? ["string", r.secretString] : ["binary", r.secretBinary ?? ""])).digest("hex");
}
function awsError(err, what) {
  if (err instanceof MemvaultError) return err;
  const e = err ?? {};
  const detail = `${e.name ?? "Error"}: ${e.message ?? String(err)}`;
  if (e.name === "ParameterNotFound") return new NotFoundError(`${what}: parameter not found`);
  if (e.name === "ResourceNotFoundException") return new NotFoundError(`${what}: secret not found (${e.message ?? ""})`);
  if (e.name && DENIED.has(e.name) || e.$metadata?.httpStatusCode === 403) {
    return new PermanentError(`${what}: access denied; grant the role this action on this resource (${detail})`, { cause: err });
  }
  if (e.name === "DecryptionFailure" || e.name === "InvalidKeyId" || e.name === "KMSAccessDeniedException") {
    return new PermanentError(`${what}: cannot use the KMS key (${detail}); the role needs kms:Decrypt / kms:Encrypt on it`, { cause: err });
  }
  if (e.name === "InternalServerError" || e.name === "InternalFailure" || e.name === "InternalServiceError" || (e.$metadata?.httpStatusCode ?? 0) >= 500) {
    return new RetryableError(`${what}: ${detail}`, { cause: err });
  }
  return new PermanentError(`${what}: ${detail}`, { cause: err });
}
async function call(deps, what, fn) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      const name = err?.name;
      if (name && THROTTLE.has(name)) {
        if (attempt >= deps.maxAttempts) throw new ThrottledError(`${what}: still throttled by AWS after ${attempt} attempts (${name})`, { cause: err });
        await deps.sleep(Math.min(2e4, 200 * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2));
        continue;
      }
      throw awsError(err, what);
    }
  }
}
function ndjson2(records) {
  return Buffer.from(records.map((r) => `${JSON.stringify(r)}
`).join(""));
}
async function readRecords2(vault, e) {
  if (!e) return [];
  const parts = [];
  for await (const b of readEntry(vault, e)) parts.push(b);
  return Buffer.concat(parts).toString("utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
}
async function backupParameters(deps, ssm, p, warnings) {
  const meta = /* @__PURE__ */ new Map();
  let token;
  do {
    const page = await call(deps, `ssm:DescribeParameters ${p}`, async () => ssm.send(new (await ssmSdk()).DescribeParametersCommand({
      ParameterFilters: [{ Key: "Path", Option: "Recursive", Values: [p] }],
      MaxResults: 50,
      NextToken: token
    })));
    for (const m of page.Parameters ?? []) {
      if (m.Name) meta.set(m.Name, { keyId: m.KeyId, description: m.Description, tier: m.Tier, allowedPattern: m.AllowedPattern });
    }
    token = page.NextToken;
  } while (token);
  const out = [];
  token = void 0;
  do {
    const page = await call(deps, `ssm:GetParametersByPath ${p}`, async () => ssm.send(new (await ssmSdk()).GetParametersByPathCommand({
      Path: p,
      Recursive: true,
      WithDecryption: true,
      MaxResults: 10,
      NextToken: token
    })));
    for (const prm of page.Parameters ?? []) {
      if (!prm.Name || prm.Type === void 0 || prm.Value === void 0) continue;
      const m = meta.get(prm.Name) ?? {};
      out.push({
        kind: "parameter",
        name: prm.Name,
        sourcePath: p,
        type: prm.Type,
        value: prm.Value,
        dataType: prm.DataType,
        keyId: prm.Type === "SecureString" ? m.keyId : void 0,
        description: m.description,
        tier: m.tier,
        allowedPattern: m.allowedPattern,
        version: prm.Version
      });
    }
    token = page.NextToken;
  } while (token);
  if (out.length === 0) warnings.push(`parameter path ${p}: no parameters found`);
  return out;
}
async function secretValue(deps, sm, id) {
  return call(deps, `secretsmanager:GetSecretValue ${id}`, async () => sm.send(new (await secretsSdk2()).GetSecretValueCommand({ SecretId: id })));
}
async function backupSecrets(deps, sm, s, warnings) {
  const out = /* @__PURE__ */ new Map();
  const toRecord = (d, v) => ({
    kind: "secret",
    name: d.Name,
    arn: d.ARN,
    kmsKeyId: d.KmsKeyId,
    description: d.Description,
    tags: d.Tags?.length ? d.Tags : void 0,
    versionId: v.VersionId,
    ...v.SecretString !== void 0 ? { secretString: v.SecretString } : { secretBinary: Buffer.from(v.SecretBinary ?? new Uint8Array()).toString("base64") }
  });
  for (const id of s.secrets) {
    const d = await call(deps, `secretsmanager:DescribeSecret ${id}`, async () => sm.send(new (await secretsSdk2()).DescribeSecretCommand({ SecretId: id })));
    const v = await secretValue(deps, sm, id);
    const r = toRecord({ ...d, Name: d.Name ?? v.Name ?? id }, v);
    out.set(r.name, r);
  }
  for (const prefix of s.secretPrefixes) {
    let token;
    let found = 0;
    do {
      const page = await call(deps, `secretsmanager:ListSecrets ${prefix}*`, async () => sm.send(new (await secretsSdk2()).ListSecretsCommand({
        Filters: [{ Key: "name", Values: [prefix] }],
        MaxResults: 100,
        NextToken: token
      })));
      for (const d of page.SecretList ?? []) {
        if (!d.Name?.startsWith(prefix) || out.has(d.Name)) continue;
        found++;
        let v;
        try {
          v = await secretValue(deps, sm, d.ARN ?? d.Name);
        } catch (err) {
          if (err instanceof NotFoundError) {
            warnings.push(`secret ${d.Name}: deleted during the backup`);
            continue;
          }
          throw err;
        }
        out.set(d.Name, toRecord(d, v));
      }
      token = page.NextToken;
    } while (token);
    if (found === 0) warnings.push(`secret prefix ${prefix}: no secrets found`);
  }
  return [...out.values()].sort((a, b) => a.name < b.name ? -1 : 1);
}
function parseRestoreOptions3(component, options) {
  const r = restoreOptionsSchema3.safeParse(options ?? {});
  if (!r.success) {
    throw new UsageError(`restore options for ${component} (ssm-config): ${r.error.issues.map((i) => `${i.path.join(".") || "(options)"}: ${i.message}`).join("; ")}`);
  }
  return r.data;
}
function mapParameterName(name, map) {
  let best;
  for (const k of Object.keys(map)) {
    const from2 = k.replace(/\/+$/, "");
    if ((name === from2 || name.startsWith(`${from2}/`)) && (best === void 0 || from2.length > best.replace(/\/+$/, "").length)) best = k;
  }
  if (best === void 0) return name;
  const from = best.replace(/\/+$/, "");
  return map[best].replace(/\/+$/, "") + name.slice(from.length);
}
function mapSecretName(name, map) {
  const k = Object.keys(map).filter((p) => name.startsWith(p)).sort((a, b) => b.length - a.length)[0];
  return k === void 0 ? name : map[k] + name.slice(k.length);
}
function createSsmConfigDriver(overrides = {}) {
  const deps = { ...defaultDeps3, ...overrides };
  return {
    kind: "ssm-config",
    mode: "stream",
    schema: ssmConfigSchema,
    async backup(ctx) {
      const s = ctx.settings;
      if (s.parameterPaths.length + s.secrets.length + s.secretPrefixes.length === 0) {
        throw new ConfigError(`components.${ctx.component}: set parameterPaths, secrets or secretPrefixes (nothing to back up)`);
      }
      const warnings = [];
      const params = [];
      if (s.parameterPaths.length > 0) {
        const ssm = await deps.ssm(s.region);
        const seen = /* @__PURE__ */ new Set();
        for (const p of s.parameterPaths) {
          for (const r of await backupParameters(deps, ssm, p, warnings)) {
            if (!seen.has(r.name)) {
              seen.add(r.name);
              params.push(r);
            }
          }
        }
      }
      const secrets = s.secrets.length + s.secretPrefixes.length > 0 ? await backupSecrets(deps, await deps.secrets(s.region), s, warnings) : [];
      params.sort((a, b) => a.name < b.name ? -1 : 1);
      const entries = [];
      for (const [p, records] of [[PARAMS, params], [SECRETS, secrets]]) {
        const r = await ctx.writer.writeBuffer(ndjson2(records));
        entries.push({ path: p, type: "file", mode: 384, size: r.size, sha256: r.sha256, chunks: r.chunks, meta: { count: records.length } });
      }
      ctx.log.info("ssm-config exported", { component: ctx.component, parameters: params.length, secrets: secrets.length });
      return {
        entries,
        meta: {
          parameters: Object.fromEntries(params.map((r) => [r.name, { type: r.type, sha256: parameterChecksum(r) }])),
          secrets: Object.fromEntries(secrets.map((r) => [r.name, { sha256: secretChecksum(r) }])),
          counts: { parameters: params.length, secrets: secrets.length }
        },
        warnings
      };
    },
    async restore(ctx) {
      const o = parseRestoreOptions3(ctx.component, ctx.target.options);
      const pe = ctx.manifest.entries.find((e) => e.path === PARAMS);
      const se = ctx.manifest.entries.find((e) => e.path === SECRETS);
      if (!pe || !se) throw new IntegrityError(`${ctx.component}: manifest ${ctx.manifest.id} lacks ${PARAMS} or ${SECRETS}`);
      if (o.to === "dir") {
        await fs9.mkdir(ctx.target.dir, { recursive: true, mode: 448 });
        const bytes2 = await restoreEntriesToDir(ctx.vault, ctx.component, [pe, se], ctx.target.dir);
        return { location: ctx.target.dir, bytes: bytes2, entries: 2 };
      }
      const params = await readRecords2(ctx.vault, pe);
      const secrets = await readRecords2(ctx.vault, se);
      const region3 = o.region ?? ctx.settings.region;
      if (params.length > 0) {
        const ssm = await deps.ssm(region3);
        for (const r of params) {
          const Name = mapParameterName(r.name, o.parameterPathMap);
          const keyId = r.type === "SecureString" ? o.kmsKeyId ?? (r.keyId && r.keyId !== DEFAULT_SSM_KEY ? r.keyId : void 0) : void 0;
          await call(deps, `ssm:PutParameter ${Name}`, async () => ssm.send(new (await ssmSdk()).PutParameterCommand({
            Name,
            Value: r.value,
            Type: r.type,
            Overwrite: true,
            KeyId: keyId,
            DataType: r.dataType,
            Description: r.description,
            Tier: r.tier,
            AllowedPattern: r.allowedPattern
          })));
        }
      }
      if (secrets.length > 0) {
        const sm = await deps.secrets(region3);
        for (const r of secrets) {
          const Name = mapSecretName(r.name, o.secretNameMap);
          const value = r.secretString !== void 0 ? { SecretString: r.secretString } : { SecretBinary: Buffer.from(r.secretBinary ?? "", "base64") };
          try {
            await call(deps, `secretsmanager:PutSecretValue ${Name}`, async () => sm.send(new (await secretsSdk2()).PutSecretValueCommand({ SecretId: Name, ...value })));
          } catch (err) {
            if (!(err instanceof NotFoundError)) throw err;
            await call(deps, `secretsmanager:CreateSecret ${Name}`, async () => sm.send(new (await secretsSdk2()).CreateSecretCommand({
              Name,
              ...value,
              KmsKeyId: o.secretKmsKeyId ?? r.kmsKeyId,
              Description: r.description,
              Tags: r.tags
            })));
          }
        }
      }
      ctx.log.info("ssm-config restored", { component: ctx.component, parameters: params.length, secrets: secrets.length });
      return { location: `aws${region3 ? ` ${region3}` : ""}: ${params.length} parameters, ${secrets.length} secrets`, bytes: pe.size + se.size, entries: params.length + secrets.length };
    },
    async validate(ctx) {
      const o = parseRestoreOptions3(ctx.component, ctx.target.options);
      const expP = ctx.manifest.driver.parameters ?? {};
      const expS = ctx.manifest.driver.secrets ?? {};
      const gotP = /* @__PURE__ */ new Map();
      const gotS = /* @__PURE__ */ new Map();
      const problems = [];
      if (o.to === "dir") {
        const read = async (f) => (await fs9.readFile(path8.join(ctx.location, f), "utf8").catch(() => "")).split("\n").filter(Boolean).map((l) => JSON.parse(l));
        for (const r of await read(PARAMS)) gotP.set(r.name, parameterChecksum(r));
        for (const r of await read(SECRETS)) gotS.set(r.name, secretChecksum(r));
      } else {
        const region3 = o.region ?? ctx.settings.region;
        const names = Object.keys(expP);
        if (names.length > 0) {
          const ssm = await deps.ssm(region3);
          const byNew = new Map(names.map((n) => [mapParameterName(n, o.parameterPathMap), n]));
          const all = [...byNew.keys()];
          for (let i = 0; i < all.length; i += 10) {
            const Names = all.slice(i, i + 10);
            const res = await call(deps, `ssm:GetParameters ${Names[0]}...`, async () => ssm.send(new (await ssmSdk()).GetParametersCommand({ Names, WithDecryption: true })));
            for (const p of res.Parameters ?? []) {
              const orig = byNew.get(p.Name);
              if (orig) gotP.set(orig, parameterChecksum({ type: p.Type, value: p.Value, dataType: p.DataType }));
            }
            for (const n of res.InvalidParameters ?? []) problems.push(`parameter ${n}: not found`);
          }
        }
        if (Object.keys(expS).length > 0) {
          const sm = await deps.secrets(region3);
          for (const n of Object.keys(expS)) {
            const id = mapSecretName(n, o.secretNameMap);
            try {
              const v = await secretValue(deps, sm, id);
              gotS.set(n, secretChecksum(v.SecretString !== void 0 ? { secretString: v.SecretString } : { secretBinary: Buffer.from(v.SecretBinary ?? new Uint8Array()).toString("base64") }));
            } catch (err) {
              if (err instanceof NotFoundError) {
                problems.push(`secret ${id}: not found`);
                continue;
              }
              throw err;
            }
          }
        }
      }
      let okP = 0;
      for (const [n, e] of Object.entries(expP)) {
        const g = gotP.get(n);
        if (g === void 0) {
          if (o.to === "dir") problems.push(`parameter ${n}: missing`);
        } else if (g !== e.sha256) problems.push(`parameter ${mapParameterName(n, o.parameterPathMap)}: type or value differs`);
        else okP++;
      }
      let okS = 0;
      for (const [n, e] of Object.entries(expS)) {
        const g = gotS.get(n);
        if (g === void 0) {
          if (o.to === "dir") problems.push(`secret ${n}: missing`);
        } else if (g !== e.sha256) problems.push(`secret ${mapSecretName(n, o.secretNameMap)}: value differs`);
        else okS++;
      }
      const checks = [
        { name: "parameters read back with matching type and value", ok: okP === Object.keys(expP).length, expected: Object.keys(expP).length, actual: okP },
        { name: "secrets read back with matching value", ok: okS === Object.keys(expS).length, expected: Object.keys(expS).length, actual: okS },
        { name: "problems", ok: problems.length === 0, actual: problems.slice(0, 20) }
      ];
      return report(checks);
    }
  };
}
var ssmConfigSchema, ssmModule, ssmSdk, secretsModule2, secretsSdk2, defaultDeps3, PARAMS, SECRETS, THROTTLE, DENIED, restoreOptionsSchema3, DEFAULT_SSM_KEY, ssmConfigDriver;
var init_ssm_config = __esm({
  "functions/components/ssm-config.ts"() {
    "use strict";
    init_types();
    init_writer();
    init_errors();
    init_restore_file();
    ssmConfigSchema = z10.object({
      region: z10.string().optional(),
      /** Parameter Store paths, read recursively, e.g. ["/memvault/prod"]. */
      parameterPaths: z10.array(z10.string().startsWith("/", "expected a path starting with /")).default([]),
      /** Secrets by name or ARN. */
      secrets: z10.array(z10.string().min(1)).default([]),
      /** Every secret whose name starts with one of these, e.g. ["prod/memory/"]. */
      secretPrefixes: z10.array(z10.string().min(1)).default([])
    });
    ssmSdk = () => ssmModule ??= import("@aws-sdk/client-ssm");
    secretsSdk2 = () => secretsModule2 ??= import("@aws-sdk/client-secrets-manager");
    defaultDeps3 = {
      ssm: async (region3) => new (await ssmSdk()).SSMClient(region3 ? { region: region3 } : {}),
      secrets: async (region3) => new (await secretsSdk2()).SecretsManagerClient(region3 ? { region: region3 } : {}),
      sleep: (ms2) => new Promise((r) => setTimeout(r, ms2)),
      maxAttempts: 5
    };
    PARAMS = "parameters.ndjson";
    SECRETS = "secrets.ndjson";
    THROTTLE = /* @__PURE__ */ new Set([
      "ThrottlingException",
      "Throttling",
      "TooManyRequestsException",
      "ThrottledException",
      "RequestLimitExceeded",
      "TooManyUpdates",
      "RequestThrottledException",
      "SlowDown"
    ]);
    DENIED = /* @__PURE__ */ new Set(["AccessDeniedException", "AccessDenied", "UnrecognizedClientException", "ExpiredTokenException", "InvalidClientTokenId", "NotAuthorized"]);
    restoreOptionsSchema3 = z10.object({
      to: z10.enum(["dir", "aws"]).default("dir"),
      region: z10.string().optional(),
      parameterPathMap: z10.record(z10.string().startsWith("/"), z10.string().startsWith("/")).default({}),
      secretNameMap: z10.record(z10.string(), z10.string()).default({}),
      kmsKeyId: z10.string().optional(),
      secretKmsKeyId: z10.string().optional()
    }).strict();
    DEFAULT_SSM_KEY = "alias/aws/ssm";
    ssmConfigDriver = createSsmConfigDriver();
  }
});

// functions/core/retention.ts
function isoWeek(d) {
  const t = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
  const day = t.getUTCDay() || 7;
  t.setUTCDate(t.getUTCDate() + 4 - day);
  const y0 = new Date(Date.UTC(t.getUTCFullYear(), 0, 1));
  return `${t.getUTCFullYear()}-W${Math.ceil(((t.getTime() - y0.getTime()) / 864e5 + 1) / 7)}`;
}
function applyPolicy(refs, policy, now) {
  const sorted = [...refs].sort((a, b) => b.time.getTime() - a.time.getTime());
  const reasons = /* @__PURE__ */ new Map();
  const keepBecause = (r, why) => {
    const l = reasons.get(r.key) ?? [];
    l.push(why);
    reasons.set(r.key, l);
  };
  const noRules = Object.values(policy).every((v) => v === void 0);
  sorted.forEach((r, i) => {
    if (i === 0) keepBecause(r, "newest");
    if (noRules) keepBecause(r, "no retention rules");
    if (policy.keepLast !== void 0 && i < policy.keepLast) keepBecause(r, `last ${policy.keepLast}`);
    if (policy.days !== void 0 && now.getTime() - r.time.getTime() < policy.days * 864e5) keepBecause(r, `within ${policy.days} days`);
  });
  const bucketed = (n, name, bucket) => {
    if (n === void 0) return;
    const seen = /* @__PURE__ */ new Set();
    for (const r of sorted) {
      const b = bucket(r.time);
      if (seen.has(b)) continue;
      if (seen.size >= n) break;
      seen.add(b);
      keepBecause(r, `${name} ${b}`);
    }
  };
  bucketed(policy.keepDaily, "daily", (d) => d.toISOString().slice(0, 10));
  bucketed(policy.keepWeekly, "weekly", isoWeek);
  bucketed(policy.keepMonthly, "monthly", (d) => d.toISOString().slice(0, 7));
  return {
    keep: sorted.filter((r) => reasons.has(r.key)),
    forget: sorted.filter((r) => !reasons.has(r.key)),
    reasons
  };
}
async function applyRetention(vault, policies, o = {}) {
  const now = o.now ?? /* @__PURE__ */ new Date();
  const dryRun = o.dryRun ?? false;
  const lock = dryRun ? void 0 : await vault.lock("prune");
  try {
    const catalog = await listCatalog(vault.storage);
    const byComponent = /* @__PURE__ */ new Map();
    for (const r of catalog) {
      const l = byComponent.get(r.component) ?? [];
      l.push(r);
      byComponent.set(r.component, l);
    }
    const forgotten = [];
    let kept = 0;
    const survivors = [];
    for (const [component, refs] of byComponent) {
      const policy = policies[component];
      if (!policy || o.onlyComponents && !o.onlyComponents.includes(component)) {
        kept += refs.length;
        survivors.push(...refs);
        continue;
      }
      const d = applyPolicy(refs, policy, now);
      kept += d.keep.length;
      survivors.push(...d.keep);
      for (const r of d.forget) {
        forgotten.push({ component, id: r.id, time: r.time.toISOString() });
        if (!dryRun) await vault.storage.delete(r.key);
      }
    }
    const referenced = /* @__PURE__ */ new Set();
    for (const r of survivors) {
      let m;
      try {
        m = await vault.readManifest(r);
      } catch (err) {
        throw new IntegrityError(`prune stopped, nothing deleted: manifest ${r.key} cannot be read (${errorMessage(err)}); run \`memvault verify\``, r.key);
      }
      for (const e of m.entries) for (const c of e.chunks ?? []) referenced.add(c.id);
    }
    const present = await vault.listChunks();
    let chunksPruned = 0;
    let bytesPruned = 0;
    for (const [id, size] of present) {
      if (referenced.has(id)) continue;
      chunksPruned++;
      bytesPruned += size;
      if (!dryRun) await vault.storage.delete(chunkKey(id));
    }
    return { vault: vault.storage.url, dryRun, forgotten, kept, chunksPruned, bytesPruned, chunksKept: present.size - chunksPruned };
  } finally {
    await lock?.release();
  }
}
var init_retention = __esm({
  "functions/core/retention.ts"() {
    "use strict";
    init_vault();
    init_errors();
  }
});

// functions/core/ports.ts
var systemClock;
var init_ports = __esm({
  "functions/core/ports.ts"() {
    "use strict";
    systemClock = { now: () => /* @__PURE__ */ new Date() };
  }
});

// functions/components/snapshot-common.ts
import { z as z11 } from "zod";
function errorCode(err) {
  const e = err;
  const n = e?.Code ?? e?.name ?? "";
  return n.endsWith("Fault") ? n.slice(0, -5) : n;
}
function mapRdsError(err, c) {
  if (err instanceof RetryableError || err instanceof PermanentError) return err;
  const code = errorCode(err);
  const detail = errorMessage(err);
  const where = `${c.op} in ${c.region}${c.subject ? ` for ${c.subject}` : ""}`;
  if (THROTTLING.has(code)) return new ThrottledError(`${where} was throttled (${code}); retry later`, { cause: err });
  switch (code) {
    case "DBInstanceNotFound":
    case "DBClusterNotFound":
      return new NotFoundError(`${c.subject ?? "the source"} not found in ${c.region}${c.field ? `: check ${c.field} and components.${c.component}.region` : ""}`);
    case "DBSnapshotNotFound":
    case "DBClusterSnapshotNotFound":
      return new NotFoundError(`${c.subject ?? "snapshot"} not found in ${c.region} (${c.op}): it was deleted or never created`);
    case "DBSnapshotAlreadyExists":
    case "DBClusterSnapshotAlreadyExists":
      return new SnapshotExistsError(`${c.subject ?? "snapshot"} already exists in ${c.region}`, { cause: err });
    case "DBInstanceAlreadyExists":
    case "DBClusterAlreadyExists":
      return new PermanentError(`${where}: ${c.subject ?? "the target"} already exists; restore into a new name (target option ${c.field ?? "instanceId/clusterId"}), memvault never restores over an existing database`, { cause: err });
    case "SnapshotQuotaExceeded":
      if (/concurren|cross.?region|copies|in progress/i.test(detail)) {
        return new SnapshotCopyLimitError(`${where}: too many cross-region snapshot copies in progress in ${c.region} (${detail}); wait for one to finish and retry`, { cause: err });
      }
      return new SnapshotQuotaError(
        `${where}: the manual snapshot quota of ${c.region} is used up (${detail}); run retention (pruneSnapshots) for memvault's snapshots, delete other manual snapshots or request a higher quota`,
        { cause: err }
      );
    case "KMSKeyNotAccessible":
      return new KmsKeyError(
        `${where}: KMS key ${c.kmsKeyId ?? "(the snapshot's key)"} does not exist in ${c.region}, is disabled, or this role may not use it (${detail})${c.kmsField ? `; check ${c.kmsField}` : ""}`,
        { cause: err }
      );
    case "InvalidDBInstanceState":
    case "InvalidDBClusterState":
    case "InvalidDBSnapshotState":
    case "InvalidDBClusterSnapshotState":
    case "DBInstanceNotReady":
      return new SourceBusyError(`${where}: ${c.subject ?? "the resource"} is not in a state that allows this now (${code}: ${detail}); retry when it is available`, { cause: err });
    case "InvalidParameterValue":
    case "InvalidParameterCombination":
      if (/kms|key/i.test(detail) && c.kmsKeyId !== void 0) {
        return new KmsKeyError(`${where}: KMS key ${c.kmsKeyId} cannot be used in ${c.region} (${detail})${c.kmsField ? `; check ${c.kmsField}` : ""}`, { cause: err });
      }
      return new PermanentError(`${where}: ${code}: ${detail}`, { cause: err });
    case "AccessDenied":
    case "AccessDeniedException":
    case "UnauthorizedOperation":
      return new PermanentError(`${where}: access denied (${detail}); allow rds:${c.op} for this role`, { cause: err });
  }
  const fault = err?.$fault;
  const status2 = err?.$metadata?.httpStatusCode;
  if (status2 === 429) return new ThrottledError(`${where} was throttled; retry later`, { cause: err });
  if (fault === "server" || status2 !== void 0 && status2 >= 500 || code === "InternalFailure" || code === "ServiceUnavailable") {
    return new RetryableError(`${where} failed on the service side: ${detail}`, { cause: err });
  }
  return new PermanentError(`${where} failed: ${code ? `${code}: ` : ""}${detail}`, { cause: err });
}
async function call2(c, fn) {
  try {
    return await fn();
  } catch (err) {
    throw mapRdsError(err, c);
  }
}
function checkSettings(component, s) {
  const f = (k) => `components.${component}.${k}`;
  const problems = [];
  if (s.copyToDr !== false && !s.drRegion) problems.push(`${f("drRegion")}: required while copyToDr is true (set the DR region, or copyToDr: false)`);
  if (s.drRegion && s.drRegion === s.region) problems.push(`${f("drRegion")}: must differ from region (${s.region})`);
  const keyRegion = s.drKmsKeyId ? regionOfArn(s.drKmsKeyId) : void 0;
  if (keyRegion && s.drRegion && keyRegion !== s.drRegion) {
    problems.push(`${f("drKmsKeyId")}: key ${s.drKmsKeyId} is in ${keyRegion}, but the DR copy is made in ${s.drRegion}; use a key of ${s.drRegion}`);
  }
  if (problems.length) throw new ConfigError(problems);
}
function regionOfArn(arn) {
  return /^arn:aws[a-z-]*:[a-z]+:([a-z0-9-]+):\d{12}:/.exec(arn)?.[1];
}
function defaultDeps4(over = {}) {
  const clients = /* @__PURE__ */ new Map();
  return {
    client: async (r) => {
      const { RDSClient } = await rdsSdk();
      let c = clients.get(r);
      if (!c) clients.set(r, c = new RDSClient({ region: r }));
      return c;
    },
    sleep: (ms2) => new Promise((res) => setTimeout(res, ms2)),
    clock: systemClock,
    ...over
  };
}
function tagsOf(list) {
  const out = {};
  for (const t of list ?? []) if (t.Key) out[t.Key] = t.Value ?? "";
  return out;
}
function isOurs(s, component) {
  return s.tags[TAG_MANAGED] === "true" && s.tags[TAG_COMPONENT] === component;
}
function snapshotIdFor(component, now) {
  const c = component.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "");
  const ts = now.toISOString().slice(0, 19).replace(/[-:]/g, "").replace("T", "-");
  return `memvault-${c}-${ts}`;
}
function record(s) {
  return {
    id: s.id,
    arn: s.arn,
    region: s.region,
    status: s.status,
    encrypted: s.encrypted,
    kmsKeyId: s.kmsKeyId,
    allocatedGiB: s.allocatedGiB,
    storageType: s.storageType,
    engineVersion: s.engineVersion,
    createdAt: s.createdAt?.toISOString()
  };
}
function makeSnapshotSteps(api, deps) {
  const sourceIdOf = (ctx) => ctx.settings[api.idField];
  const ec = (ctx, region3, op, extra = {}) => ({
    component: ctx.component,
    region: region3,
    op,
    subject: `${api.label} "${sourceIdOf(ctx)}"`,
    field: `components.${ctx.component}.${api.idField}`,
    ...extra
  });
  const snapCtx = (ctx, region3, op, id, extra = {}) => ec(ctx, region3, op, { subject: `snapshot "${id}" of ${api.label} "${sourceIdOf(ctx)}"`, field: void 0, ...extra });
  function needsKey(ctx, encrypted, kmsKeyId) {
    const s = ctx.settings;
    if (!s.copyToDr || !encrypted || s.drKmsKeyId) return;
    throw new ConfigError(
      `components.${ctx.component}.drKmsKeyId: ${api.label} "${sourceIdOf(ctx)}" is encrypted with KMS key ${kmsKeyId ?? "(unknown)"} in ${s.region}; KMS keys belong to one region, and the default aws/rds key cannot be used outside its region or shared, so the copy to ${s.drRegion} needs a key there: set drKmsKeyId to a KMS key ARN or alias in ${s.drRegion} (or copyToDr: false)`
    );
  }
  async function start(ctx) {
    const s = ctx.settings;
    checkSettings(ctx.component, s);
    const sourceId = sourceIdOf(ctx);
    const src = await api.describeSource(ec(ctx, s.region, api.resource === "instance" ? "DescribeDBInstances" : "DescribeDBClusters"), sourceId);
    if (s.engine && src.engine !== s.engine) {
      throw new ConfigError(`components.${ctx.component}.engine: expected "${s.engine}", but ${api.label} "${sourceId}" in ${s.region} runs "${src.engine}"`);
    }
    needsKey(ctx, src.encrypted, src.kmsKeyId);
    const now = deps.clock.now();
    const base = {
      phase: "snapshot",
      resource: api.resource,
      sourceId,
      sourceArn: src.arn,
      engine: src.engine,
      engineVersion: src.engineVersion,
      instanceClass: src.instanceClass,
      instanceCount: src.instanceCount,
      region: s.region,
      drRegion: s.copyToDr ? s.drRegion : void 0,
      encrypted: src.encrypted,
      sourceKmsKeyId: src.kmsKeyId,
      startedAt: now.toISOString()
    };
    const listOp = api.resource === "instance" ? "DescribeDBSnapshots" : "DescribeDBClusterSnapshots";
    for await (const snap of api.listSnapshots(ec(ctx, s.region, listOp), sourceId)) {
      if (isOurs(snap, ctx.component) && snap.status !== DONE && !FAILED.test(snap.status)) {
        ctx.log.info("reusing snapshot in progress", { component: ctx.component, snapshotId: snap.id, status: snap.status });
        return { ...base, snapshotId: snap.id, snapshotArn: snap.arn, reused: true };
      }
    }
    const snapshotId = snapshotIdFor(ctx.component, now);
    const tags = [
      { Key: TAG_MANAGED, Value: "true" },
      { Key: TAG_COMPONENT, Value: ctx.component },
      { Key: TAG_RUN, Value: ctx.runId ?? snapshotId },
      { Key: TAG_TYPE, Value: ctx.type },
      { Key: TAG_CREATED, Value: now.toISOString() }
    ];
    const createOp = api.resource === "instance" ? "CreateDBSnapshot" : "CreateDBClusterSnapshot";
    try {
      const snap = await api.createSnapshot(ec(ctx, s.region, createOp), sourceId, snapshotId, tags);
      ctx.log.info("snapshot started", { component: ctx.component, snapshotId, region: s.region });
      return { ...base, snapshotId, snapshotArn: snap.arn, reused: false };
    } catch (err) {
      if (!(err instanceof SnapshotExistsError)) throw err;
      const existing = await api.describeSnapshot(snapCtx(ctx, s.region, listOp, snapshotId), snapshotId);
      if (!existing || !isOurs(existing, ctx.component)) {
        throw new PermanentError(`snapshot "${snapshotId}" already exists in ${s.region} but is not tagged as memvault's for ${ctx.component}; memvault will not adopt it`);
      }
      ctx.log.info("snapshot already exists, reusing it", { component: ctx.component, snapshotId });
      return { ...base, snapshotId, snapshotArn: existing.arn, reused: true };
    }
  }
  async function copiesInProgress(ctx, drRegion, limit) {
    let n = 0;
    const op = api.resource === "instance" ? "DescribeDBSnapshots" : "DescribeDBClusterSnapshots";
    for await (const snap of api.listSnapshots(ec(ctx, drRegion, op, { subject: void 0, field: void 0 }))) {
      if (snap.copiedFrom && snap.status !== DONE && !FAILED.test(snap.status)) {
        if (++n >= limit) break;
      }
    }
    return n;
  }
  function parseState(raw) {
    const st = raw;
    if (!st || typeof st.snapshotId !== "string" || typeof st.region !== "string" || !["snapshot", "copy", "copying", "done"].includes(st.phase)) {
      throw new UsageError(`snapshot state: expected the object returned by start/poll (phase, snapshotId, region...), got ${JSON.stringify(raw).slice(0, 200)}`);
    }
    return { ...st };
  }
  async function poll(ctx, raw) {
    const st = parseState(raw);
    const s = ctx.settings;
    const descOp = api.resource === "instance" ? "DescribeDBSnapshots" : "DescribeDBClusterSnapshots";
    if (st.phase === "snapshot") {
      const snap = await api.describeSnapshot(snapCtx(ctx, st.region, descOp, st.snapshotId), st.snapshotId);
      if (!snap) throw new SnapshotFailedError(`snapshot "${st.snapshotId}" of ${api.label} "${st.sourceId}" vanished from ${st.region} while being created (deleted by someone?)`);
      if (FAILED.test(snap.status)) throw new SnapshotFailedError(`snapshot "${st.snapshotId}" of ${api.label} "${st.sourceId}" in ${st.region} is ${snap.status}`);
      if (snap.status !== DONE) {
        st.waitingFor = `snapshot ${snap.status}${snap.progress !== void 0 ? ` ${snap.progress}%` : ""}`;
        return { ready: false, state: st };
      }
      st.snapshotArn = snap.arn;
      st.encrypted = snap.encrypted;
      st.sourceKmsKeyId = snap.kmsKeyId;
      if (!st.drRegion) {
        st.phase = "done";
        st.waitingFor = void 0;
        return { ready: true, state: st };
      }
      st.phase = "copy";
    }
    if (st.phase === "copy") {
      const drRegion = st.drRegion;
      needsKey(ctx, st.encrypted, st.sourceKmsKeyId);
      const limit = s.maxConcurrentCopies ?? 5;
      const inFlight = await copiesInProgress(ctx, drRegion, limit);
      if (inFlight >= limit) {
        st.waitingFor = `a copy slot in ${drRegion}: ${inFlight} cross-region copies in progress (limit ${limit})`;
        ctx.log.info("waiting for a cross-region copy slot", { component: ctx.component, drRegion, inFlight, limit });
        return { ready: false, state: st };
      }
      const copyOp = api.resource === "instance" ? "CopyDBSnapshot" : "CopyDBClusterSnapshot";
      const kms = { kmsKeyId: s.drKmsKeyId, kmsField: `components.${ctx.component}.drKmsKeyId` };
      const copyId = st.snapshotId;
      const tags = [
        { Key: TAG_MANAGED, Value: "true" },
        { Key: TAG_COMPONENT, Value: ctx.component },
        { Key: TAG_RUN, Value: ctx.runId ?? st.snapshotId },
        { Key: TAG_TYPE, Value: ctx.type },
        { Key: TAG_CREATED, Value: st.startedAt }
      ];
      let copy;
      try {
        copy = await api.copySnapshot(snapCtx(ctx, drRegion, copyOp, copyId, kms), {
          sourceArn: st.snapshotArn,
          sourceRegion: st.region,
          targetId: copyId,
          kmsKeyId: s.drKmsKeyId,
          encrypted: st.encrypted,
          tags
        });
      } catch (err) {
        if (!(err instanceof SnapshotExistsError)) throw err;
        copy = await api.describeSnapshot(snapCtx(ctx, drRegion, descOp, copyId), copyId);
        if (!copy || !isOurs(copy, ctx.component)) {
          throw new PermanentError(`snapshot "${copyId}" already exists in ${drRegion} but is not tagged as memvault's for ${ctx.component}; memvault will not adopt it`);
        }
      }
      st.phase = "copying";
      st.copyId = copyId;
      st.copyArn = copy.arn;
      st.copyRequestedAt = deps.clock.now().toISOString();
      st.waitingFor = `copy to ${drRegion}`;
      ctx.log.info("cross-region copy started", { component: ctx.component, snapshotId: st.snapshotId, drRegion });
      return { ready: false, state: st };
    }
    if (st.phase === "copying") {
      const drRegion = st.drRegion;
      const copy = await api.describeSnapshot(snapCtx(ctx, drRegion, descOp, st.copyId), st.copyId);
      if (!copy) {
        const age = deps.clock.now().getTime() - Date.parse(st.copyRequestedAt ?? st.startedAt);
        if (age < 10 * 6e4) return { ready: false, state: { ...st, waitingFor: `copy to ${drRegion} to appear` } };
        throw new SnapshotFailedError(`copy "${st.copyId}" of snapshot "${st.snapshotId}" vanished from ${drRegion} while copying`);
      }
      if (FAILED.test(copy.status)) throw new SnapshotFailedError(`copy "${st.copyId}" of snapshot "${st.snapshotId}" in ${drRegion} is ${copy.status}`);
      if (copy.status !== DONE) {
        st.waitingFor = `copy to ${drRegion} ${copy.status}${copy.progress !== void 0 ? ` ${copy.progress}%` : ""}`;
        return { ready: false, state: st };
      }
      st.copyArn = copy.arn;
      st.phase = "done";
      st.waitingFor = void 0;
    }
    return { ready: true, state: st };
  }
  async function finish(ctx, raw) {
    const st = parseState(raw);
    if (st.phase !== "done") throw new NotReadyError(`snapshot "${st.snapshotId}" is not ready (phase ${st.phase}${st.waitingFor ? `, waiting for ${st.waitingFor}` : ""}); poll until ready`);
    const descOp = api.resource === "instance" ? "DescribeDBSnapshots" : "DescribeDBClusterSnapshots";
    const snap = await api.describeSnapshot(snapCtx(ctx, st.region, descOp, st.snapshotId), st.snapshotId);
    if (!snap || snap.status !== DONE) throw new SnapshotFailedError(`snapshot "${st.snapshotId}" in ${st.region} is ${snap?.status ?? "gone"} at finish`);
    let copy;
    if (st.copyId && st.drRegion) {
      copy = await api.describeSnapshot(snapCtx(ctx, st.drRegion, descOp, st.copyId), st.copyId);
      if (!copy || copy.status !== DONE) throw new SnapshotFailedError(`copy "${st.copyId}" in ${st.drRegion} is ${copy?.status ?? "gone"} at finish`);
    }
    const meta = {
      resource: api.resource,
      sourceId: st.sourceId,
      sourceArn: st.sourceArn,
      engine: snap.engine ?? st.engine,
      engineVersion: snap.engineVersion ?? st.engineVersion,
      instanceClass: st.instanceClass,
      instanceCount: st.instanceCount,
      region: st.region,
      snapshot: record(snap),
      drCopy: copy ? record(copy) : null,
      startedAt: st.startedAt,
      readyAt: deps.clock.now().toISOString(),
      reused: st.reused
    };
    const warnings = ctx.settings.copyToDr ? [] : [`copyToDr is false: snapshot ${snap.id} exists only in ${st.region}`];
    return { entries: [], meta, warnings };
  }
  async function retrying(ctx, deadline, what, fn) {
    for (; ; ) {
      try {
        return await fn();
      } catch (err) {
        if (!isRetryable(err) || deps.clock.now().getTime() >= deadline) throw err;
        ctx.log.warn(`${what}: retrying`, { component: ctx.component, error: err.name, message: errorMessage(err) });
        await deps.sleep(ctx.settings.pollIntervalSeconds * 1e3);
      }
    }
  }
  async function backup(ctx) {
    const deadline = deps.clock.now().getTime() + ctx.settings.timeoutMinutes * 6e4;
    let state = await retrying(ctx, deadline, "start", () => start(ctx));
    for (; ; ) {
      await deps.sleep(ctx.settings.pollIntervalSeconds * 1e3);
      const cur = state;
      const r = await retrying(ctx, deadline, "poll", () => poll(ctx, cur));
      state = r.state;
      if (r.ready) break;
      if (deps.clock.now().getTime() >= deadline) {
        throw new NotReadyError(`snapshot "${state.snapshotId}" of ${ctx.component} not ready after ${ctx.settings.timeoutMinutes} minutes (waiting for ${state.waitingFor}); run the backup again to resume it`);
      }
      ctx.log.info("snapshot not ready", { component: ctx.component, snapshotId: state.snapshotId, waitingFor: state.waitingFor });
    }
    return retrying(ctx, deadline, "finish", () => finish(ctx, state));
  }
  return { start, poll, finish, backup };
}
async function pruneWith(api, deps, o) {
  const s = o.settings;
  const policy = o.retention ?? s.retention ?? {};
  const now = o.now ?? deps.clock.now();
  const regions = [s.region, ...s.drRegion ? [s.drRegion] : []];
  const listOp = api.resource === "instance" ? "DescribeDBSnapshots" : "DescribeDBClusterSnapshots";
  const delOp = api.resource === "instance" ? "DeleteDBSnapshot" : "DeleteDBClusterSnapshot";
  const out = { component: o.component, dryRun: o.dryRun ?? false, regions: [] };
  for (const region3 of regions) {
    const rep = { region: region3, kept: [], deleted: [], skipped: [], ignored: 0 };
    const good = [];
    for await (const snap of api.listSnapshots({ component: o.component, region: region3, op: listOp })) {
      if (!isOurs(snap, o.component)) {
        rep.ignored++;
        continue;
      }
      if (snap.status !== DONE) {
        rep.skipped.push({ id: snap.id, status: snap.status, why: "not available (in progress or failed)" });
        continue;
      }
      good.push(snap);
    }
    const timeOf = (x) => {
      const t = Date.parse(x.tags[TAG_CREATED] ?? "");
      return new Date(Number.isNaN(t) ? x.createdAt?.getTime() ?? 0 : t);
    };
    const refs = good.map((x) => ({ key: x.id, component: o.component, id: x.id, type: "full", time: timeOf(x) }));
    const d = applyPolicy(refs, policy, now);
    const newest = [...refs].sort((a, b) => b.time.getTime() - a.time.getTime())[0];
    for (const r of d.keep) rep.kept.push({ id: r.id, time: r.time.toISOString(), reasons: d.reasons.get(r.key) ?? [] });
    for (const r of d.forget) {
      if (r.key === newest?.key) continue;
      if (o.dryRun) {
        rep.deleted.push({ id: r.id, time: r.time.toISOString() });
        continue;
      }
      try {
        await api.deleteSnapshot({ component: o.component, region: region3, op: delOp, subject: `snapshot "${r.id}"` }, r.id);
        rep.deleted.push({ id: r.id, time: r.time.toISOString() });
        o.log?.info("snapshot deleted by retention", { component: o.component, region: region3, snapshotId: r.id });
      } catch (err) {
        if (err instanceof NotFoundError) {
          rep.deleted.push({ id: r.id, time: r.time.toISOString() });
          continue;
        }
        if (err instanceof SourceBusyError) {
          rep.skipped.push({ id: r.id, status: "busy", why: errorMessage(err) });
          continue;
        }
        throw err;
      }
    }
    out.regions.push(rep);
  }
  return out;
}
function readMeta(m, resource) {
  const d = m.driver;
  if (!d || d.resource !== resource || typeof d.sourceId !== "string" || !d.snapshot?.id) {
    throw new PermanentError(`backup ${m.id} of ${m.component} has no ${resource} snapshot record in its manifest (kind ${m.kind})`);
  }
  return d;
}
function restoreRegion(settings, meta, target, field) {
  const region3 = target.region ?? meta.region;
  const isDr = region3 !== meta.region;
  const allowed = [meta.region, meta.drCopy?.region, settings.drRegion].filter((r) => !!r);
  if (!allowed.includes(region3)) {
    throw new UsageError(`target.options.region: ${region3} is neither ${meta.region} nor the DR region ${meta.drCopy?.region ?? settings.drRegion ?? "(none configured)"}`);
  }
  const what = field === "instanceId" ? "instance" : "cluster";
  if (!isDr && target.name.toLowerCase() === meta.sourceId.toLowerCase()) {
    throw new UsageError(`target.options.${field}: "${target.name}" is the live source ${what}; restore into a new ${what} name`);
  }
  const { dr, ...base } = settings.restore ?? {};
  return { region: region3, isDr, defaults: { ...base, ...isDr ? dr ?? {} : {} } };
}
async function checkSnapshots(api, component, m) {
  const meta = readMeta(m, api.resource);
  const checks = [];
  for (const rec of [meta.snapshot, ...meta.drCopy ? [meta.drCopy] : []]) {
    const got2 = await api.describeSnapshot({ component, region: rec.region, op: api.resource === "instance" ? "DescribeDBSnapshots" : "DescribeDBClusterSnapshots", subject: `snapshot "${rec.id}"` }, rec.id);
    checks.push({ name: `snapshot ${rec.id} in ${rec.region} is available`, ok: got2?.status === "available", expected: "available", actual: got2?.status ?? "missing" });
    if (got2) checks.push({ name: `snapshot ${rec.id} in ${rec.region} encrypted as recorded`, ok: got2.encrypted === rec.encrypted, expected: rec.encrypted, actual: got2.encrypted });
  }
  return { ok: checks.every((c) => c.ok), checks };
}
function snapshotIn(meta, region3, backupId) {
  if (region3 === meta.region) return meta.snapshot;
  if (meta.drCopy && meta.drCopy.region === region3) return meta.drCopy;
  const have = [meta.region, meta.drCopy?.region].filter(Boolean).join(" and ");
  throw new NotFoundError(`backup ${backupId} has no snapshot in ${region3}; it has snapshots in ${have}`);
}
function parsePointInTime(v) {
  if (v === void 0) return void 0;
  if (v === "latest") return "latest";
  const d = new Date(v);
  if (Number.isNaN(d.getTime()) || !/^\d{4}-\d{2}-\d{2}T/.test(v)) {
    throw new UsageError(`target.options.pointInTime: expected an ISO time like 2026-01-01T14:30:00Z or "latest", got "${v}"`);
  }
  return d;
}
function checkWindow(t, earliest, latest, what) {
  if (!latest) throw new PermanentError(`${what} has no restorable window (automated backups disabled?); restore from a snapshot instead (omit pointInTime)`);
  if (t === "latest") return;
  const tooEarly = earliest !== void 0 && t.getTime() < earliest.getTime();
  if (tooEarly || t.getTime() > latest.getTime()) {
    throw new PermanentError(
      `target.options.pointInTime ${t.toISOString()} is outside the restorable window of ${what}: ${earliest?.toISOString() ?? "(unknown)"} to ${latest.toISOString()}; choose a time inside it, or restore from a snapshot (omit pointInTime)`
    );
  }
}
function parseTarget(schema, options) {
  const r = schema.safeParse(options ?? {});
  if (!r.success) {
    throw new UsageError(r.error.issues.map((i) => `target.options${i.path.length ? "." + i.path.join(".") : ""}: ${i.message}`).join("; "));
  }
  return r.data;
}
async function waitForStatus(deps, timeoutMs, intervalMs, get) {
  const deadline = deps.clock.now().getTime() + timeoutMs;
  for (; ; ) {
    let status2;
    try {
      status2 = await get();
    } catch (err) {
      if (!isRetryable(err) && !(err instanceof NotFoundError)) throw err;
      status2 = err instanceof NotFoundError ? "not-found" : "unknown";
    }
    if (status2 === "available" || TERMINAL_BAD.test(status2)) return status2;
    if (deps.clock.now().getTime() >= deadline) return status2;
    await deps.sleep(intervalMs);
  }
}
function check(name, expected, actual, ok = expected === actual) {
  return { name, ok, expected, actual };
}
function sharedSnapshotMembers(api, deps, validate) {
  const steps = makeSnapshotSteps(api, deps);
  return {
    mode: "snapshot",
    start: (ctx) => steps.start(ctx),
    poll: (ctx, st) => steps.poll(ctx, st),
    finish: (ctx, st) => steps.finish(ctx, st),
    backup: (ctx) => steps.backup(ctx),
    pruneSnapshots: (o) => pruneWith(api, deps, o),
    drillCheck: (ctx) => checkSnapshots(api, ctx.component, ctx.manifest),
    async validateOnce(ctx) {
      const options = { ...ctx.target.options ?? {}, timeoutMinutes: void 0 };
      const r = await validate({ ...ctx, settings: { ...ctx.settings, timeoutMinutes: 0 }, target: { ...ctx.target, options } });
      const status2 = String(r.checks[0]?.actual ?? "unknown");
      return { ready: status2 === "available" || TERMINAL_BAD.test(status2), status: status2, report: r };
    }
  };
}
var SnapshotCopyLimitError, SourceBusyError, SnapshotQuotaError, KmsKeyError, SnapshotFailedError, SnapshotExistsError, THROTTLING, REGION, region2, RDS_IDENTIFIER, identifier, snapshotCommonShape, rdsModule, rdsSdk, TAG_MANAGED, TAG_COMPONENT, TAG_RUN, TAG_TYPE, TAG_CREATED, DONE, FAILED, restoreTargetShape, TERMINAL_BAD;
var init_snapshot_common = __esm({
  "functions/components/snapshot-common.ts"() {
    "use strict";
    init_retention();
    init_ports();
    init_errors();
    SnapshotCopyLimitError = class extends RetryableError {
      constructor(message, options) {
        super(message, options);
        this.name = "SnapshotCopyLimitError";
      }
    };
    SourceBusyError = class extends RetryableError {
      constructor(message, options) {
        super(message, options);
        this.name = "SourceBusyError";
      }
    };
    SnapshotQuotaError = class extends PermanentError {
      constructor(message, options) {
        super(message, options);
        this.name = "SnapshotQuotaError";
      }
    };
    KmsKeyError = class extends PermanentError {
      constructor(message, options) {
        super(message, options);
        this.name = "KmsKeyError";
      }
    };
    SnapshotFailedError = class extends PermanentError {
      constructor(message) {
        super(message);
        this.name = "SnapshotFailedError";
      }
    };
    SnapshotExistsError = class extends PermanentError {
      constructor(message, options) {
        super(message, options);
        this.name = "SnapshotExistsError";
      }
    };
    THROTTLING = /* @__PURE__ */ new Set(["Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException", "RequestThrottled", "RequestThrottledException"]);
    REGION = /^[a-z]{2}(-[a-z]+)+-\d$/;
    region2 = z11.string().regex(REGION, "expected an AWS region like us-east-1");
    RDS_IDENTIFIER = /^[A-Za-z](?!.*--)[A-Za-z0-9-]{0,62}(?<!-)$/;
    identifier = z11.string().regex(RDS_IDENTIFIER, "expected an identifier: a letter, then letters, digits and single hyphens (max 63)");
    snapshotCommonShape = {
      /** Region of the source instance/cluster and of its primary snapshots. */
      region: region2,
      /** Region that receives the copy of every snapshot. Required unless copyToDr is false. */
      drRegion: region2.optional(),
      /** KMS key (ARN, id or alias) in drRegion that encrypts the DR copy. Required when the source is encrypted. */
      drKmsKeyId: z11.string().min(1).optional(),
      /** Expected engine (e.g. postgres, aurora-postgresql, docdb): a backup of anything else fails. */
      engine: z11.string().optional(),
      /** Copy every snapshot to drRegion. @default true */
      copyToDr: z11.boolean().default(true),
      /** Cross-region copies allowed in flight per destination region (the RDS quota). @default 5 */
      maxConcurrentCopies: z11.number().int().positive().default(5),
      /** backup() (CLI): seconds between polls. @default 30 */
      pollIntervalSeconds: z11.number().int().positive().default(30),
      /** backup() and validate(): give up waiting after this many minutes. @default 360 */
      timeoutMinutes: z11.number().int().positive().default(360)
    };
    rdsSdk = () => rdsModule ??= import("@aws-sdk/client-rds");
    TAG_MANAGED = "memvault:managed";
    TAG_COMPONENT = "memvault:component";
    TAG_RUN = "memvault:run";
    TAG_TYPE = "memvault:type";
    TAG_CREATED = "memvault:created";
    DONE = "available";
    FAILED = /^(failed|deleted|deleting|incompatible-.*|error)$/;
    restoreTargetShape = {
      /** Region to restore in: the component's region (primary snapshot) or drRegion (DR copy). @default region */
      region: region2.optional(),
      /** ISO time or "latest": use the service's point-in-time restore instead of the snapshot. */
      pointInTime: z11.string().optional(),
      instanceClass: z11.string().optional(),
      subnetGroup: z11.string().optional(),
      securityGroupIds: z11.array(z11.string()).optional(),
      parameterGroup: z11.string().optional(),
      port: z11.number().int().positive().optional(),
      deletionProtection: z11.boolean().optional(),
      /** validate(): wait at most this long for the restored database. @default the component's timeoutMinutes */
      timeoutMinutes: z11.number().int().positive().optional()
    };
    TERMINAL_BAD = /^(failed|incompatible-.*|inaccessible-encryption-credentials.*|storage-full|deleting|stopped)$/;
  }
});

// functions/components/rds-snapshot.ts
import { z as z12 } from "zod";
function snapInfo(s, region3) {
  return {
    id: s.DBSnapshotIdentifier ?? "",
    arn: s.DBSnapshotArn ?? "",
    region: region3,
    status: s.Status ?? "unknown",
    sourceId: s.DBInstanceIdentifier ?? "",
    engine: s.Engine,
    engineVersion: s.EngineVersion,
    encrypted: s.Encrypted ?? false,
    kmsKeyId: s.KmsKeyId,
    allocatedGiB: s.AllocatedStorage,
    storageType: s.StorageType,
    createdAt: s.OriginalSnapshotCreateTime ?? s.SnapshotCreateTime,
    progress: s.PercentProgress,
    copiedFrom: s.SourceDBSnapshotIdentifier ?? (s.SourceRegion && s.SourceRegion !== region3 ? s.SourceRegion : void 0),
    tags: tagsOf(s.TagList)
  };
}
function instanceApi(deps) {
  const rds = async (c) => deps.client(c.region);
  return {
    resource: "instance",
    label: "DB instance",
    idField: "instanceId",
    async describeSource(c, id) {
      const R = await rdsSdk();
      const out = await call2(c, async () => (await rds(c)).send(new R.DescribeDBInstancesCommand({ DBInstanceIdentifier: id })));
      const i = out.DBInstances?.[0];
      if (!i) throw new NotFoundError(`DB instance "${id}" not found in ${c.region}${c.field ? `: check ${c.field}` : ""}`);
      return {
        id,
        arn: i.DBInstanceArn,
        engine: i.Engine ?? "unknown",
        engineVersion: i.EngineVersion,
        status: i.DBInstanceStatus ?? "unknown",
        encrypted: i.StorageEncrypted ?? false,
        kmsKeyId: i.KmsKeyId,
        allocatedGiB: i.AllocatedStorage,
        storageType: i.StorageType,
        instanceClass: i.DBInstanceClass,
        latestRestorableTime: i.LatestRestorableTime
      };
    },
    async createSnapshot(c, sourceId, snapshotId, tags) {
      const R = await rdsSdk();
      const out = await call2(c, async () => (await rds(c)).send(new R.CreateDBSnapshotCommand({ DBInstanceIdentifier: sourceId, DBSnapshotIdentifier: snapshotId, Tags: tags })));
      return snapInfo(out.DBSnapshot ?? { DBSnapshotIdentifier: snapshotId }, c.region);
    },
    async describeSnapshot(c, snapshotId) {
      const R = await rdsSdk();
      try {
        const out = await call2(c, async () => (await rds(c)).send(new R.DescribeDBSnapshotsCommand({ DBSnapshotIdentifier: snapshotId })));
        const s = out.DBSnapshots?.[0];
        return s ? snapInfo(s, c.region) : void 0;
      } catch (err) {
        if (err instanceof NotFoundError) return void 0;
        throw err;
      }
    },
    async *listSnapshots(c, sourceId) {
      const R = await rdsSdk();
      let marker;
      do {
        const out = await call2(c, async () => (await rds(c)).send(new R.DescribeDBSnapshotsCommand({
          SnapshotType: "manual",
          ...sourceId ? { DBInstanceIdentifier: sourceId } : {},
          MaxRecords: 100,
          Marker: marker
        })));
        for (const s of out.DBSnapshots ?? []) yield snapInfo(s, c.region);
        marker = out.Marker;
      } while (marker);
    },
    async copySnapshot(c, o) {
      const R = await rdsSdk();
      const out = await call2(c, async () => (await rds(c)).send(new R.CopyDBSnapshotCommand({
        SourceDBSnapshotIdentifier: o.sourceArn,
        TargetDBSnapshotIdentifier: o.targetId,
        // An instance snapshot copy may also encrypt an unencrypted source: the DR copy is always under the DR key when one is set.
        KmsKeyId: o.kmsKeyId,
        // No SourceRegion/PreSignedUrl here: the SDK's RDS middleware sees a source ARN of another
        // region (o.sourceRegion) and adds the pre-signed URL (with DestinationRegion and KmsKeyId) itself.
        Tags: o.tags
      })));
      return snapInfo(out.DBSnapshot ?? { DBSnapshotIdentifier: o.targetId }, c.region);
    },
    async deleteSnapshot(c, snapshotId) {
      const R = await rdsSdk();
      await call2(c, async () => (await rds(c)).send(new R.DeleteDBSnapshotCommand({ DBSnapshotIdentifier: snapshotId })));
    }
  };
}
function makeRdsSnapshotDriver(over = {}) {
  const deps = defaultDeps4(over);
  const api = instanceApi(deps);
  function plan(ctx) {
    const o = parseTarget(rdsRestoreTargetSchema, ctx.target.options);
    const meta = readMeta(ctx.manifest, "instance");
    const { region: region3, isDr, defaults: d } = restoreRegion(ctx.settings, meta, { region: o.region, name: o.instanceId }, "instanceId");
    const pick = (k) => o[k] ?? d[k];
    const pit = parsePointInTime(o.pointInTime);
    return { o, meta, region: region3, isDr, pick, pit };
  }
  const driver = {
    kind: "rds-snapshot",
    schema: rdsSnapshotSchema,
    ...sharedSnapshotMembers(api, deps, (ctx) => driver.validate(ctx)),
    async restore(ctx) {
      const R = await rdsSdk();
      const { o, meta, region: region3, isDr, pick, pit } = plan(ctx);
      const client = await deps.client(region3);
      const c = (op, subject) => ({ component: ctx.component, region: region3, op, subject, field: "instanceId" });
      const target = `DB instance "${o.instanceId}"`;
      const tags = [
        { Key: TAG_MANAGED, Value: "true" },
        { Key: TAG_COMPONENT, Value: ctx.component },
        { Key: "memvault:restored-from", Value: ctx.manifest.id }
      ];
      const common2 = {
        DBInstanceClass: pick("instanceClass"),
        DBSubnetGroupName: pick("subnetGroup"),
        VpcSecurityGroupIds: pick("securityGroupIds"),
        DBParameterGroupName: pick("parameterGroup"),
        OptionGroupName: pick("optionGroup"),
        MultiAZ: pick("multiAz"),
        PubliclyAccessible: pick("publiclyAccessible") ?? false,
        StorageType: pick("storageType"),
        Port: o.port,
        DeletionProtection: o.deletionProtection,
        Tags: tags
      };
      if (pit) {
        const when = pit === "latest" ? { UseLatestRestorableTime: true } : { RestoreTime: pit };
        if (!isDr) {
          const src = await api.describeSource(c("DescribeDBInstances", `DB instance "${meta.sourceId}"`), meta.sourceId);
          const ab2 = await call2(c("DescribeDBInstanceAutomatedBackups", `DB instance "${meta.sourceId}"`), () => client.send(new R.DescribeDBInstanceAutomatedBackupsCommand({ DBInstanceIdentifier: meta.sourceId })));
          const local = (ab2.DBInstanceAutomatedBackups ?? []).find((b) => !b.Region || b.Region === region3);
          checkWindow(pit, local?.RestoreWindow?.EarliestTime, src.latestRestorableTime, `DB instance "${meta.sourceId}" in ${region3}`);
          const out3 = await call2(c("RestoreDBInstanceToPointInTime", target), () => client.send(new R.RestoreDBInstanceToPointInTimeCommand({
            SourceDBInstanceIdentifier: meta.sourceId,
            TargetDBInstanceIdentifier: o.instanceId,
            ...when,
            ...common2
          })));
          ctx.log.info("point-in-time restore started", { component: ctx.component, region: region3, instanceId: o.instanceId, at: String(o.pointInTime) });
          return { location: out3.DBInstance?.DBInstanceArn ?? `${region3}/${o.instanceId}`, bytes: (src.allocatedGiB ?? 0) * 2 ** 30, entries: 0 };
        }
        const ab = await call2(c("DescribeDBInstanceAutomatedBackups", `DB instance "${meta.sourceId}"`), () => client.send(new R.DescribeDBInstanceAutomatedBackupsCommand({ DBInstanceIdentifier: meta.sourceId })));
        const rep = (ab.DBInstanceAutomatedBackups ?? []).find((b) => b.DBInstanceAutomatedBackupsArn && b.RestoreWindow?.LatestTime);
        if (!rep) {
          throw new PermanentError(
            `no replicated automated backups of DB instance "${meta.sourceId}" in ${region3}, so no point-in-time restore there: enable cross-Region automated backup replication to ${region3}, or restore from the DR snapshot copy (omit pointInTime)`
          );
        }
        checkWindow(pit, rep.RestoreWindow?.EarliestTime, rep.RestoreWindow?.LatestTime, `the replicated automated backups of "${meta.sourceId}" in ${region3}`);
        const out2 = await call2(c("RestoreDBInstanceToPointInTime", target), () => client.send(new R.RestoreDBInstanceToPointInTimeCommand({
          SourceDBInstanceAutomatedBackupsArn: rep.DBInstanceAutomatedBackupsArn,
          TargetDBInstanceIdentifier: o.instanceId,
          ...when,
          ...common2
        })));
        return { location: out2.DBInstance?.DBInstanceArn ?? `${region3}/${o.instanceId}`, bytes: (rep.AllocatedStorage ?? 0) * 2 ** 30, entries: 0 };
      }
      const rec = snapshotIn(meta, region3, ctx.manifest.id);
      const cur = await api.describeSnapshot(c("DescribeDBSnapshots", `snapshot "${rec.id}"`), rec.id);
      if (!cur) throw new NotFoundError(`snapshot "${rec.id}" of backup ${ctx.manifest.id} no longer exists in ${region3} (deleted by retention or by hand)`);
      if (cur.status !== "available") throw new SourceBusyError(`snapshot "${rec.id}" in ${region3} is ${cur.status}, not available; retry later`);
      const out = await call2(c("RestoreDBInstanceFromDBSnapshot", target), () => client.send(new R.RestoreDBInstanceFromDBSnapshotCommand({
        DBInstanceIdentifier: o.instanceId,
        DBSnapshotIdentifier: rec.id,
        ...common2
      })));
      ctx.log.info("restore from snapshot started", { component: ctx.component, region: region3, instanceId: o.instanceId, snapshotId: rec.id });
      return { location: out.DBInstance?.DBInstanceArn ?? `${region3}/${o.instanceId}`, bytes: (rec.allocatedGiB ?? 0) * 2 ** 30, entries: 0 };
    },
    async validate(ctx) {
      const { o, meta, region: region3, pit } = plan(ctx);
      const timeoutMs = (o.timeoutMinutes ?? ctx.settings.timeoutMinutes ?? 360) * 6e4;
      const intervalMs = (ctx.settings.pollIntervalSeconds ?? 30) * 1e3;
      let inst;
      const status2 = await waitForStatus(deps, timeoutMs, intervalMs, async () => {
        inst = await api.describeSource({ component: ctx.component, region: region3, op: "DescribeDBInstances", subject: `DB instance "${o.instanceId}"` }, o.instanceId);
        return inst.status;
      });
      const checks = [check(`DB instance ${o.instanceId} in ${region3} is available`, "available", status2)];
      if (inst && status2 === "available") {
        const rec = pit ? meta.snapshot : snapshotIn(meta, region3, ctx.manifest.id);
        checks.push(check("engine", meta.engine, inst.engine));
        checks.push(check("storage encrypted", rec.encrypted, inst.encrypted));
        if (!pit && rec.encrypted) checks.push(check("KMS key", rec.kmsKeyId, inst.kmsKeyId));
        if (!pit) checks.push(check("engine version", rec.engineVersion ?? meta.engineVersion, inst.engineVersion));
        if (rec.allocatedGiB !== void 0) {
          checks.push(check("allocated storage (GiB) at least the snapshot's", `>= ${rec.allocatedGiB}`, inst.allocatedGiB, (inst.allocatedGiB ?? 0) >= rec.allocatedGiB));
        }
      }
      return report(checks);
    }
  };
  return driver;
}
var restoreDefaults, rdsSnapshotSchema, rdsRestoreTargetSchema, rdsSnapshotDriver;
var init_rds_snapshot = __esm({
  "functions/components/rds-snapshot.ts"() {
    "use strict";
    init_types();
    init_snapshot_common();
    init_errors();
    restoreDefaults = {
      instanceClass: z12.string().optional(),
      subnetGroup: z12.string().optional(),
      securityGroupIds: z12.array(z12.string()).optional(),
      parameterGroup: z12.string().optional(),
      optionGroup: z12.string().optional(),
      multiAz: z12.boolean().optional(),
      publiclyAccessible: z12.boolean().optional(),
      storageType: z12.string().optional()
    };
    rdsSnapshotSchema = z12.object({
      /** The source DB instance identifier. */
      instanceId: identifier,
      ...snapshotCommonShape,
      /** Defaults for restores (target options override them); `dr` overrides them for restores in drRegion. */
      restore: z12.object({
        ...restoreDefaults,
        dr: z12.object(restoreDefaults).strict().optional()
      }).strict().default({})
    });
    rdsRestoreTargetSchema = z12.object({
      /** Identifier of the NEW instance. */
      instanceId: identifier,
      ...restoreTargetShape,
      optionGroup: z12.string().optional(),
      multiAz: z12.boolean().optional(),
      publiclyAccessible: z12.boolean().optional(),
      storageType: z12.string().optional()
    }).strict();
    rdsSnapshotDriver = makeRdsSnapshotDriver();
  }
});

// functions/components/aurora-snapshot.ts
import { z as z13 } from "zod";
function snapInfo2(s, region3) {
  return {
    id: s.DBClusterSnapshotIdentifier ?? "",
    arn: s.DBClusterSnapshotArn ?? "",
    region: region3,
    status: s.Status ?? "unknown",
    sourceId: s.DBClusterIdentifier ?? "",
    engine: s.Engine,
    engineVersion: s.EngineVersion,
    encrypted: s.StorageEncrypted ?? false,
    kmsKeyId: s.KmsKeyId,
    allocatedGiB: s.AllocatedStorage,
    storageType: s.StorageType,
    createdAt: s.SnapshotCreateTime,
    progress: s.PercentProgress,
    copiedFrom: s.SourceDBClusterSnapshotArn,
    tags: tagsOf(s.TagList)
  };
}
function clusterApi(deps) {
  const rds = async (c) => deps.client(c.region);
  async function describeCluster(c, id) {
    const R = await rdsSdk();
    const out = await call2(c, async () => (await rds(c)).send(new R.DescribeDBClustersCommand({ DBClusterIdentifier: id })));
    const k = out.DBClusters?.[0];
    if (!k) throw new NotFoundError(`DB cluster "${id}" not found in ${c.region}${c.field ? `: check ${c.field}` : ""}`);
    return {
      id,
      arn: k.DBClusterArn,
      engine: k.Engine ?? "unknown",
      engineVersion: k.EngineVersion,
      status: k.Status ?? "unknown",
      encrypted: k.StorageEncrypted ?? false,
      kmsKeyId: k.KmsKeyId,
      allocatedGiB: k.AllocatedStorage,
      storageType: k.StorageType,
      instanceCount: k.DBClusterMembers?.length ?? 0,
      earliestRestorableTime: k.EarliestRestorableTime,
      latestRestorableTime: k.LatestRestorableTime,
      tags: tagsOf(k.TagList),
      writer: k.DBClusterMembers?.find((m) => m.IsClusterWriter)?.DBInstanceIdentifier
    };
  }
  return {
    resource: "cluster",
    label: "DB cluster",
    idField: "clusterId",
    describeCluster,
    async describeSource(c, id) {
      const R = await rdsSdk();
      const k = await describeCluster(c, id);
      let instanceClass;
      if (k.writer) {
        const w = await call2({ ...c, op: "DescribeDBInstances" }, async () => (await rds(c)).send(new R.DescribeDBInstancesCommand({ DBInstanceIdentifier: k.writer })));
        instanceClass = w.DBInstances?.[0]?.DBInstanceClass;
      }
      return { ...k, instanceClass };
    },
    async createSnapshot(c, sourceId, snapshotId, tags) {
      const R = await rdsSdk();
      const out = await call2(c, async () => (await rds(c)).send(new R.CreateDBClusterSnapshotCommand({ DBClusterIdentifier: sourceId, DBClusterSnapshotIdentifier: snapshotId, Tags: tags })));
      return snapInfo2(out.DBClusterSnapshot ?? { DBClusterSnapshotIdentifier: snapshotId }, c.region);
    },
    async describeSnapshot(c, snapshotId) {
      const R = await rdsSdk();
      try {
        const out = await call2(c, async () => (await rds(c)).send(new R.DescribeDBClusterSnapshotsCommand({ DBClusterSnapshotIdentifier: snapshotId })));
        const s = out.DBClusterSnapshots?.[0];
        return s ? snapInfo2(s, c.region) : void 0;
      } catch (err) {
        if (err instanceof NotFoundError) return void 0;
        throw err;
      }
    },
    async *listSnapshots(c, sourceId) {
      const R = await rdsSdk();
      let marker;
      do {
        const out = await call2(c, async () => (await rds(c)).send(new R.DescribeDBClusterSnapshotsCommand({
          SnapshotType: "manual",
          ...sourceId ? { DBClusterIdentifier: sourceId } : {},
          MaxRecords: 100,
          Marker: marker
        })));
        for (const s of out.DBClusterSnapshots ?? []) yield snapInfo2(s, c.region);
        marker = out.Marker;
      } while (marker);
    },
    async copySnapshot(c, o) {
      const R = await rdsSdk();
      const out = await call2(c, async () => (await rds(c)).send(new R.CopyDBClusterSnapshotCommand({
        SourceDBClusterSnapshotIdentifier: o.sourceArn,
        TargetDBClusterSnapshotIdentifier: o.targetId,
        // A cluster snapshot copy cannot encrypt an unencrypted snapshot: KmsKeyId with an unencrypted source is an error.
        ...o.encrypted ? { KmsKeyId: o.kmsKeyId } : {},
        // The SDK pre-signs the request for the source region (o.sourceRegion, taken from the ARN).
        Tags: o.tags
      })));
      return snapInfo2(out.DBClusterSnapshot ?? { DBClusterSnapshotIdentifier: o.targetId }, c.region);
    },
    async deleteSnapshot(c, snapshotId) {
      const R = await rdsSdk();
      await call2(c, async () => (await rds(c)).send(new R.DeleteDBClusterSnapshotCommand({ DBClusterSnapshotIdentifier: snapshotId })));
    }
  };
}
function makeAuroraSnapshotDriver(over = {}) {
  const deps = defaultDeps4(over);
  const api = clusterApi(deps);
  function plan(ctx) {
    const o = parseTarget(auroraRestoreTargetSchema, ctx.target.options);
    const meta = readMeta(ctx.manifest, "cluster");
    const { region: region3, isDr, defaults: d } = restoreRegion(ctx.settings, meta, { region: o.region, name: o.clusterId }, "clusterId");
    const pick = (k) => o[k] ?? d[k];
    const instances = pick("instances") ?? 1;
    const pit = parsePointInTime(o.pointInTime);
    return { o, meta, region: region3, isDr, pick, instances, pit };
  }
  const memberId = (clusterId, i) => `${clusterId}-${i}`;
  const driver = {
    kind: "aurora-snapshot",
    schema: auroraSnapshotSchema,
    ...sharedSnapshotMembers(api, deps, (ctx) => driver.validate(ctx)),
    async restore(ctx) {
      const R = await rdsSdk();
      const { o, meta, region: region3, isDr, pick, instances, pit } = plan(ctx);
      const client = await deps.client(region3);
      const c = (op, subject) => ({ component: ctx.component, region: region3, op, subject, field: "clusterId" });
      const target = `DB cluster "${o.clusterId}"`;
      const instanceClass = pick("instanceClass") ?? meta.instanceClass;
      if (!instanceClass) {
        throw new UsageError(`target.options.instanceClass: required (the backup did not record the source writer's class); or set components.${ctx.component}.restore.instanceClass`);
      }
      const tags = [
        { Key: TAG_MANAGED, Value: "true" },
        { Key: TAG_COMPONENT, Value: ctx.component },
        { Key: "memvault:restored-from", Value: ctx.manifest.id }
      ];
      const common2 = {
        DBClusterIdentifier: o.clusterId,
        DBSubnetGroupName: pick("subnetGroup"),
        VpcSecurityGroupIds: pick("securityGroupIds"),
        DBClusterParameterGroupName: pick("clusterParameterGroup"),
        Port: o.port,
        DeletionProtection: o.deletionProtection,
        Tags: tags
      };
      let bytes2 = 0;
      const restoring = async (fn) => {
        try {
          await fn();
        } catch (err) {
          if (errorCode(err.cause) !== "DBClusterAlreadyExists") throw err;
          const k = await api.describeCluster(c("DescribeDBClusters", target), o.clusterId);
          if (k.tags["memvault:restored-from"] !== ctx.manifest.id) throw err;
          ctx.log.info("cluster already restored for this backup, continuing", { component: ctx.component, clusterId: o.clusterId });
        }
      };
      if (pit) {
        if (isDr) {
          throw new PermanentError(
            `point-in-time restore of DB cluster "${meta.sourceId}" is only possible in its own region ${meta.region}: Aurora and DocumentDB keep automated backups in one region; in ${region3} restore from the DR snapshot copy (omit pointInTime)`
          );
        }
        const src = await api.describeCluster(c("DescribeDBClusters", `DB cluster "${meta.sourceId}"`), meta.sourceId);
        checkWindow(pit, src.earliestRestorableTime, src.latestRestorableTime, `DB cluster "${meta.sourceId}" in ${region3}`);
        await restoring(() => call2(c("RestoreDBClusterToPointInTime", target), () => client.send(new R.RestoreDBClusterToPointInTimeCommand({
          SourceDBClusterIdentifier: meta.sourceId,
          RestoreType: "full-copy",
          ...pit === "latest" ? { UseLatestRestorableTime: true } : { RestoreToTime: pit },
          ...common2
        }))));
        bytes2 = (src.allocatedGiB ?? 0) * 2 ** 30;
      } else {
        const rec = snapshotIn(meta, region3, ctx.manifest.id);
        const cur = await api.describeSnapshot(c("DescribeDBClusterSnapshots", `snapshot "${rec.id}"`), rec.id);
        if (!cur) throw new NotFoundError(`snapshot "${rec.id}" of backup ${ctx.manifest.id} no longer exists in ${region3} (deleted by retention or by hand)`);
        if (cur.status !== "available") throw new SourceBusyError(`snapshot "${rec.id}" in ${region3} is ${cur.status}, not available; retry later`);
        await restoring(() => call2(c("RestoreDBClusterFromSnapshot", target), () => client.send(new R.RestoreDBClusterFromSnapshotCommand({
          SnapshotIdentifier: rec.id,
          Engine: meta.engine,
          EngineVersion: rec.engineVersion ?? meta.engineVersion,
          ...common2
        }))));
        bytes2 = (rec.allocatedGiB ?? 0) * 2 ** 30;
      }
      for (let i = 1; i <= instances; i++) {
        const id = memberId(o.clusterId, i);
        try {
          await call2(c("CreateDBInstance", `DB instance "${id}" of ${target}`), () => client.send(new R.CreateDBInstanceCommand({
            DBInstanceIdentifier: id,
            DBClusterIdentifier: o.clusterId,
            Engine: meta.engine,
            DBInstanceClass: instanceClass,
            ...pick("parameterGroup") ? { DBParameterGroupName: pick("parameterGroup") } : {},
            Tags: tags
          })));
        } catch (err) {
          if (errorCode(err.cause) === "DBInstanceAlreadyExists") continue;
          if (err instanceof PermanentError) {
            throw new PermanentError(`${target} was restored in ${region3}, but its instance "${id}" could not be created: ${err.message}; create it by hand or delete the cluster`, { cause: err });
          }
          throw err;
        }
      }
      ctx.log.info("cluster restore started", { component: ctx.component, region: region3, clusterId: o.clusterId, instances, pointInTime: o.pointInTime });
      return { location: `${region3}/${o.clusterId}`, bytes: bytes2, entries: 0 };
    },
    async validate(ctx) {
      const R = await rdsSdk();
      const { o, meta, region: region3, instances, pit } = plan(ctx);
      const client = await deps.client(region3);
      const timeoutMs = (o.timeoutMinutes ?? ctx.settings.timeoutMinutes ?? 360) * 6e4;
      const intervalMs = (ctx.settings.pollIntervalSeconds ?? 30) * 1e3;
      let cluster;
      let members = [];
      const status2 = await waitForStatus(deps, timeoutMs, intervalMs, async () => {
        cluster = await api.describeCluster({ component: ctx.component, region: region3, op: "DescribeDBClusters", subject: `DB cluster "${o.clusterId}"` }, o.clusterId);
        const out = await call2({ component: ctx.component, region: region3, op: "DescribeDBInstances" }, () => client.send(new R.DescribeDBInstancesCommand({ Filters: [{ Name: "db-cluster-id", Values: [o.clusterId] }] })));
        members = (out.DBInstances ?? []).map((i) => ({ id: i.DBInstanceIdentifier ?? "", status: i.DBInstanceStatus ?? "unknown" }));
        const bad = members.find((m) => m.status !== "available");
        if (cluster.status !== "available") return cluster.status;
        if (members.length < instances) return "creating-instances";
        return bad ? bad.status : "available";
      });
      const checks = [check(`DB cluster ${o.clusterId} in ${region3} and its instances are available`, "available", status2)];
      if (cluster && status2 === "available") {
        const rec = pit ? meta.snapshot : snapshotIn(meta, region3, ctx.manifest.id);
        checks.push(check("available instances", `>= ${instances}`, members.length, members.length >= instances));
        checks.push(check("engine", meta.engine, cluster.engine));
        checks.push(check("storage encrypted", rec.encrypted, cluster.encrypted));
        if (!pit && rec.encrypted) checks.push(check("KMS key", rec.kmsKeyId, cluster.kmsKeyId));
        if (!pit) checks.push(check("engine version", rec.engineVersion ?? meta.engineVersion, cluster.engineVersion));
      }
      return report(checks);
    }
  };
  return driver;
}
var restoreDefaults2, auroraSnapshotSchema, auroraRestoreTargetSchema, auroraSnapshotDriver;
var init_aurora_snapshot = __esm({
  "functions/components/aurora-snapshot.ts"() {
    "use strict";
    init_types();
    init_snapshot_common();
    init_errors();
    restoreDefaults2 = {
      /** Instance class of the restored members. @default the source writer's class */
      instanceClass: z13.string().optional(),
      /** Members to create in the restored cluster. @default 1 */
      instances: z13.number().int().min(1).max(16).optional(),
      subnetGroup: z13.string().optional(),
      securityGroupIds: z13.array(z13.string()).optional(),
      clusterParameterGroup: z13.string().optional(),
      /** DB parameter group of the members (Aurora only). */
      parameterGroup: z13.string().optional()
    };
    auroraSnapshotSchema = z13.object({
      /** The source DB cluster identifier (Aurora or DocumentDB). */
      clusterId: identifier,
      ...snapshotCommonShape,
      /** Defaults for restores (target options override them); `dr` overrides them for restores in drRegion. */
      restore: z13.object({
        ...restoreDefaults2,
        dr: z13.object(restoreDefaults2).strict().optional()
      }).strict().default({})
    });
    auroraRestoreTargetSchema = z13.object({
      /** Identifier of the NEW cluster; members are <clusterId>-1..N. */
      clusterId: identifier,
      ...restoreTargetShape,
      instances: z13.number().int().min(1).max(16).optional(),
      clusterParameterGroup: z13.string().optional()
    }).strict();
    auroraSnapshotDriver = makeAuroraSnapshotDriver();
  }
});

// functions/components/registry.ts
function driverFor(kind) {
  const d = drivers[kind];
  if (!d) throw new Error(`no driver for kind "${kind}"`);
  return d;
}
var drivers, kindSchemas;
var init_registry = __esm({
  "functions/components/registry.ts"() {
    "use strict";
    init_files();
    init_sqlite();
    init_postgres();
    init_vector();
    init_redis();
    init_s3_prefix();
    init_mongodb();
    init_ssm_config();
    init_rds_snapshot();
    init_aurora_snapshot();
    drivers = {
      files: filesDriver,
      sqlite: sqliteDriver,
      postgres: postgresDriver,
      vector: vectorDriver,
      redis: redisDriver,
      "s3-prefix": s3PrefixDriver,
      mongodb: mongodbDriver,
      "ssm-config": ssmConfigDriver,
      "rds-snapshot": rdsSnapshotDriver,
      "aurora-snapshot": auroraSnapshotDriver
    };
    kindSchemas = Object.fromEntries(Object.entries(drivers).map(([k, d]) => [k, d.schema]));
  }
});

// functions/adapters/storage/file.ts
import { promises as fs11 } from "node:fs";
import path10 from "node:path";
import { randomBytes as randomBytes4 } from "node:crypto";
async function writeAll(fh, parts) {
  let rest = parts.filter((p) => p.byteLength > 0);
  while (rest.length > 0) {
    const { bytesWritten } = await fh.writev(rest);
    let n = bytesWritten;
    while (rest.length > 0 && n >= rest[0].byteLength) n -= rest.shift().byteLength;
    if (n > 0) rest[0] = rest[0].subarray(n);
  }
}
var TRANSIENT, FileStorage;
var init_file = __esm({
  "functions/adapters/storage/file.ts"() {
    "use strict";
    init_errors();
    TRANSIENT = /* @__PURE__ */ new Set(["EAGAIN", "EBUSY", "EMFILE", "ENFILE", "EINTR", "ETIMEDOUT"]);
    FileStorage = class {
      constructor(root) {
        this.root = root;
        this.url = `file://${root}`;
      }
      root;
      url;
      file(key) {
        if (key.includes("..") || key.startsWith("/")) throw new PermanentError(`invalid object key "${key}"`);
        return path10.join(this.root, key);
      }
      wrap(err, key) {
        const code = err.code;
        if (code === "ENOENT") throw new NotFoundError(`${this.url}: object ${key} not found`);
        if (code && TRANSIENT.has(code)) throw new TransientStorageError(`${this.url}: ${key}: ${code}`, { cause: err });
        throw err;
      }
      async get(key) {
        try {
          return await fs11.readFile(this.file(key));
        } catch (err) {
          this.wrap(err, key);
        }
      }
      async put(key, data) {
        const dest = this.file(key);
        const tmp = `${dest}.tmp-${randomBytes4(6).toString("hex")}`;
        try {
          await fs11.mkdir(path10.dirname(dest), { recursive: true });
          const fh = await fs11.open(tmp, "w", 384);
          try {
            if (data instanceof Uint8Array) await fh.writeFile(data);
            else await writeAll(fh, data);
            await fh.sync();
          } finally {
            await fh.close();
          }
          await fs11.rename(tmp, dest);
        } catch (err) {
          await fs11.rm(tmp, { force: true });
          this.wrap(err, key);
        }
      }
      async has(key) {
        try {
          await fs11.access(this.file(key));
          return true;
        } catch {
          return false;
        }
      }
      async *list(prefix) {
        const slash = prefix.lastIndexOf("/");
        const dirKey = slash >= 0 ? prefix.slice(0, slash) : "";
        yield* this.walk(dirKey, prefix);
      }
      async *walk(dirKey, prefix) {
        let entries;
        try {
          entries = await fs11.readdir(path10.join(this.root, dirKey), { withFileTypes: true });
        } catch (err) {
          if (err.code === "ENOENT") return;
          throw err;
        }
        for (const e of entries) {
          const key = dirKey ? `${dirKey}/${e.name}` : e.name;
          if (e.isDirectory()) {
            if (key.startsWith(prefix) || prefix.startsWith(`${key}/`)) yield* this.walk(key, prefix);
          } else if (e.isFile() && key.startsWith(prefix) && !e.name.includes(".tmp-")) {
            const st = await fs11.stat(path10.join(this.root, key)).catch(() => null);
            if (st) yield { key, size: st.size, modified: st.mtime };
          }
        }
      }
      async delete(key) {
        await fs11.rm(this.file(key), { force: true });
      }
    };
  }
});

// functions/adapters/storage/retrying.ts
async function withRetry(fn, o) {
  const sleep = o.sleep ?? defaultSleep;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (!isRetryable(err) || attempt >= o.attempts) throw err;
      const cap = Math.min(o.maxMs, o.baseMs * 2 ** (attempt - 1));
      await sleep(Math.random() * cap);
    }
  }
}
var defaultSleep, RetryingStorage;
var init_retrying = __esm({
  "functions/adapters/storage/retrying.ts"() {
    "use strict";
    init_errors();
    defaultSleep = (ms2) => new Promise((r) => setTimeout(r, ms2));
    RetryingStorage = class {
      constructor(inner, opts = { attempts: 6, baseMs: 100, maxMs: 5e3 }) {
        this.inner = inner;
        this.opts = opts;
        this.url = inner.url;
      }
      inner;
      opts;
      url;
      get(key) {
        return withRetry(() => this.inner.get(key), this.opts);
      }
      put(key, data) {
        return withRetry(() => this.inner.put(key, data), this.opts);
      }
      has(key) {
        return withRetry(() => this.inner.has(key), this.opts);
      }
      delete(key) {
        return withRetry(() => this.inner.delete(key), this.opts);
      }
      async *list(prefix) {
        const seen = /* @__PURE__ */ new Map();
        await withRetry(async () => {
          for await (const o of this.inner.list(prefix)) seen.set(o.key, o);
        }, this.opts);
        yield* seen.values();
      }
    };
  }
});

// functions/adapters/keys/local.ts
import { promises as fs12, constants } from "node:fs";
import path11 from "node:path";
import { createHmac as createHmac2, randomBytes as randomBytes5 } from "node:crypto";
var PREFIX, LocalKeyProvider;
var init_local = __esm({
  "functions/adapters/keys/local.ts"() {
    "use strict";
    init_crypto();
    init_errors();
    PREFIX = "memvault-key-v1:";
    LocalKeyProvider = class _LocalKeyProvider {
      constructor(key, file) {
        this.key = key;
        this.file = file;
        this.keyId = createHmac2("sha256", key).update("memvault key fingerprint").digest("hex").slice(0, 16);
      }
      key;
      file;
      type = "local";
      keyId;
      /** Creates a new key file (fails if one exists: a key is never overwritten). */
      static async create(file) {
        const key = randomBytes5(32);
        await fs12.mkdir(path11.dirname(file), { recursive: true });
        try {
          await fs12.writeFile(file, `${PREFIX}${key.toString("base64")}
`, { mode: 384, flag: "wx" });
        } catch (err) {
          if (err.code === "EEXIST") return _LocalKeyProvider.load(file);
          throw err;
        }
        return new _LocalKeyProvider(key, file);
      }
      static async load(file) {
        let text;
        try {
          text = (await fs12.readFile(file, "utf8")).trim();
        } catch (err) {
          if (err.code === "ENOENT") {
            throw new ConfigError(`encryption.key: key file ${file} does not exist (run \`memvault init\` to create it)`);
          }
          throw err;
        }
        if (!text.startsWith(PREFIX)) throw new ConfigError(`encryption.key: ${file} is not a memvault key file`);
        const key = Buffer.from(text.slice(PREFIX.length), "base64");
        if (key.length !== 32) throw new ConfigError(`encryption.key: ${file} holds a key of ${key.length} bytes, expected 32`);
        const st = await fs12.stat(file);
        if ((st.mode & 63) !== 0 && process.platform !== "win32") {
          await fs12.chmod(file, 384).catch(() => void 0);
        }
        return new _LocalKeyProvider(key, file);
      }
      static async exists(file) {
        return fs12.access(file, constants.F_OK).then(() => true, () => false);
      }
      async wrap(secret, context) {
        return { type: this.type, keyId: this.keyId, blob: seal(this.key, secret, JSON.stringify(context)).toString("base64") };
      }
      async unwrap(w, context) {
        if (w.type !== this.type || w.keyId !== this.keyId) {
          throw new WrongKeyError(`the key in ${this.file} (id ${this.keyId}) is not a key of this vault (it has ${w.type} key ${w.keyId})`);
        }
        try {
          return open(this.key, Buffer.from(w.blob, "base64"), JSON.stringify(context));
        } catch (err) {
          if (err instanceof IntegrityError) throw new WrongKeyError(`the key in ${this.file} cannot unwrap this vault's secret`);
          throw err;
        }
      }
    };
  }
});

// functions/adapters/keys/kms.ts
function regionOfArn2(keyId) {
  const m = /^arn:aws[a-z-]*:kms:([a-z0-9-]+):\d{12}:/.exec(keyId);
  return m ? m[1] : void 0;
}
var kmsModule, kmsSdk, THROTTLING2, KmsKeyProvider;
var init_kms = __esm({
  "functions/adapters/keys/kms.ts"() {
    "use strict";
    init_errors();
    kmsSdk = () => kmsModule ??= import("@aws-sdk/client-kms");
    THROTTLING2 = /* @__PURE__ */ new Set([
      "ThrottlingException",
      "Throttling",
      "TooManyRequestsException",
      "RequestLimitExceeded",
      "KMSInternalException",
      "DependencyTimeoutException",
      "LimitExceededException"
    ]);
    KmsKeyProvider = class _KmsKeyProvider {
      type = "kms";
      keyId;
      region;
      field;
      client;
      constructor(opts) {
        if (!opts.keyId || !opts.keyId.trim()) {
          throw new ConfigError(`${opts.field ?? "encryption.kms"}: a KMS key id, alias or ARN is required`);
        }
        this.keyId = opts.keyId;
        this.region = opts.region ?? regionOfArn2(opts.keyId);
        this.field = opts.field ?? "encryption.kms";
        this.client = opts.client;
      }
      async sdk() {
        const sdk = await kmsSdk();
        this.client ??= new sdk.KMSClient(this.region ? { region: this.region } : {});
        return { sdk, client: this.client };
      }
      /** Creates a provider and a new vault master secret wrapped by it (GenerateDataKey, AES_256). */
      static async generate(opts) {
        const provider = new _KmsKeyProvider(opts);
        const { secret, wrapped } = await provider.generateSecret(opts.context);
        return { provider, secret, wrapped };
      }
      /** A new 32-byte secret from KMS together with its wrapping under this key. */
      async generateSecret(context) {
        const { sdk, client } = await this.sdk();
        const out = await this.call(
          "GenerateDataKey",
          () => client.send(new sdk.GenerateDataKeyCommand({ KeyId: this.keyId, KeySpec: "AES_256", EncryptionContext: context }))
        );
        if (!out.Plaintext || !out.CiphertextBlob) {
          throw new PermanentError(`KMS GenerateDataKey with key ${this.keyId} returned no data key`);
        }
        return { secret: Buffer.from(out.Plaintext), wrapped: this.wrapping(out.CiphertextBlob) };
      }
      async wrap(secret, context) {
        const { sdk, client } = await this.sdk();
        const out = await this.call(
          "Encrypt",
          () => client.send(new sdk.EncryptCommand({ KeyId: this.keyId, Plaintext: secret, EncryptionContext: context }))
        );
        if (!out.CiphertextBlob) throw new PermanentError(`KMS Encrypt with key ${this.keyId} returned no ciphertext`);
        return this.wrapping(out.CiphertextBlob);
      }
      async unwrap(w, context) {
        if (w.type !== this.type || w.keyId !== this.keyId) {
          throw new WrongKeyError(`KMS key ${this.keyId} is not the key of this wrapping (it has ${w.type} key ${w.keyId})`);
        }
        const { sdk, client } = await this.sdk();
        const out = await this.call(
          "Decrypt",
          () => client.send(
            new sdk.DecryptCommand({ KeyId: this.keyId, CiphertextBlob: Buffer.from(w.blob, "base64"), EncryptionContext: context })
          )
        );
        if (!out.Plaintext) throw new PermanentError(`KMS Decrypt with key ${this.keyId} returned no plaintext`);
        return Buffer.from(out.Plaintext);
      }
      wrapping(blob) {
        return { type: this.type, keyId: this.keyId, blob: Buffer.from(blob).toString("base64") };
      }
      async call(op, fn) {
        try {
          return await fn();
        } catch (err) {
          throw await this.mapError(op, err);
        }
      }
      async describeRegion() {
        if (this.region) return this.region;
        try {
          const r = (await this.sdk()).client.config.region;
          return (typeof r === "function" ? await r() : r) || "the default region";
        } catch {
          return "the default region";
        }
      }
      async mapError(op, err) {
        const name = err?.name ?? "";
        const detail = errorMessage(err);
        const key = this.keyId;
        const region3 = await this.describeRegion();
        const where = `KMS key ${key} in ${region3}`;
        if (THROTTLING2.has(name)) {
          return new ThrottledError(`KMS ${op} with key ${key} in ${region3} was throttled or timed out (${name}); retry later`, { cause: err });
        }
        switch (name) {
          case "NotFoundException":
            return new NotFoundError(`KMS key ${key} not found in ${region3}: check ${this.field} (key id, alias or ARN, and its region)`);
          case "DisabledException":
            return new PermanentError(`${where} is disabled: enable it (aws kms enable-key) or point ${this.field} at an enabled key`, { cause: err });
          case "KMSInvalidStateException":
            return new PermanentError(
              `${where} cannot be used in its current state (${detail}): cancel a pending deletion or finish the key import, or check ${this.field}`,
              { cause: err }
            );
          case "AccessDeniedException":
          case "AccessDenied":
            return new PermanentError(
              `access to ${where} denied for kms:${op} (${detail}): allow kms:Encrypt, kms:Decrypt and kms:GenerateDataKey for this role in the key policy or IAM policy`,
              { cause: err }
            );
          case "InvalidKeyUsageException":
            return new PermanentError(`${where} cannot be used for kms:${op}: ${this.field} must name a symmetric ENCRYPT_DECRYPT key`, { cause: err });
          case "InvalidCiphertextException":
            return new WrongKeyError(
              `${where} cannot unwrap this vault's secret: the wrapping was made by another key, for another vault, or is damaged`
            );
          case "IncorrectKeyException":
            return new WrongKeyError(`${where} did not wrap this vault's secret: use the key that made this wrapping`);
          case "KeyUnavailableException":
            return new RetryableError(`${where} is temporarily unavailable (custom key store): ${detail}`, { cause: err });
        }
        const fault = err?.$fault;
        const status2 = err?.$metadata?.httpStatusCode;
        if (fault === "server" || status2 !== void 0 && status2 >= 500) {
          return new RetryableError(`KMS ${op} with key ${key} in ${region3} failed on the service side: ${detail}`, { cause: err });
        }
        if (status2 === 429) {
          return new ThrottledError(`KMS ${op} with key ${key} in ${region3} was throttled; retry later`, { cause: err });
        }
        return new PermanentError(`KMS ${op} with key ${key} in ${region3} failed: ${name ? `${name}: ` : ""}${detail}`, { cause: err });
      }
    };
  }
});

// functions/adapters/alerts/local.ts
import { promises as fs13 } from "node:fs";
import path12 from "node:path";
var StreamAlertSink, FileAlertSink, FanoutAlertSink;
var init_local2 = __esm({
  "functions/adapters/alerts/local.ts"() {
    "use strict";
    StreamAlertSink = class {
      constructor(out = process.stdout) {
        this.out = out;
      }
      out;
      async send(a) {
        const lines3 = [`ALERT [${a.severity}] ${a.subject}`, `  ${a.message}`];
        if (a.component) lines3.push(`  component: ${a.component}`);
        if (a.step) lines3.push(`  step: ${a.step}`);
        if (a.cause) lines3.push(`  cause: ${a.cause}`);
        this.out.write(`${lines3.join("\n")}
`);
      }
    };
    FileAlertSink = class {
      constructor(file) {
        this.file = file;
      }
      file;
      async send(a) {
        await fs13.mkdir(path12.dirname(this.file), { recursive: true });
        await fs13.appendFile(this.file, `${JSON.stringify(a)}
`);
      }
    };
    FanoutAlertSink = class {
      constructor(sinks) {
        this.sinks = sinks;
      }
      sinks;
      async send(a) {
        const results = await Promise.allSettled(this.sinks.map((s) => s.send(a)));
        const failed = results.filter((r) => r.status === "rejected");
        if (failed.length > 0 && failed.length === this.sinks.length) throw failed[0].reason;
      }
    };
  }
});

// functions/adapters/alerts/sns.ts
import { createHash as createHash9 } from "node:crypto";
function snsSubject(subject) {
  const ascii = subject.normalize("NFKD").replace(/[\u0300-\u036f]/g, "").replace(/\s+/g, " ").replace(/[^\x20-\x7e]/g, "?").trim();
  if (!ascii) return "memvault alert";
  if (ascii.length <= SNS_SUBJECT_MAX) return ascii;
  return `${ascii.slice(0, SNS_SUBJECT_MAX - 3).trimEnd()}...`;
}
function formatAlertMessage(alert) {
  const lines3 = [alert.subject, ""];
  if (alert.message && alert.message !== alert.subject) lines3.push(alert.message, "");
  const field = (label, value) => {
    if (value) lines3.push(`${`${label}:`.padEnd(11)}${value}`);
  };
  field("Severity", alert.severity);
  field("Component", alert.component);
  field("Step", alert.step);
  field("Cause", alert.cause);
  field("Time", alert.time);
  if (alert.details && Object.keys(alert.details).length > 0) {
    lines3.push("Details:");
    lines3.push(...safeJson(alert.details).split("\n").map((l) => `  ${l}`));
  }
  let text = lines3.join("\n");
  if (Buffer.byteLength(text) > MESSAGE_MAX_BYTES) {
    const note = "\n... (truncated: the alert exceeded the SNS message size limit)";
    text = Buffer.from(text).subarray(0, MESSAGE_MAX_BYTES - note.length).toString("utf8").replace(/\uFFFD$/, "") + note;
  }
  return text;
}
function messageAttributes(alert) {
  const out = {};
  for (const [name, value] of [
    ["severity", alert.severity],
    ["component", alert.component],
    ["step", alert.step]
  ]) {
    if (value !== void 0 && value.trim() !== "") out[name] = { DataType: "String", StringValue: value };
  }
  return out;
}
function safeJson(value) {
  try {
    return JSON.stringify(value, (_k, v) => typeof v === "bigint" ? v.toString() : v, 2) ?? String(value);
  } catch {
    return String(value);
  }
}
var snsModule, snsSdk, SNS_SUBJECT_MAX, MESSAGE_MAX_BYTES, SnsAlertSink;
var init_sns = __esm({
  "functions/adapters/alerts/sns.ts"() {
    "use strict";
    init_errors();
    snsSdk = () => snsModule ??= import("@aws-sdk/client-sns");
    SNS_SUBJECT_MAX = 100;
    MESSAGE_MAX_BYTES = 250 * 1024;
    SnsAlertSink = class {
      topicArn;
      client;
      region;
      constructor(opts) {
        if (!/^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]+$/.test(opts.topicArn)) {
          throw new ConfigError(`alerts topic: expected an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME), got ${JSON.stringify(opts.topicArn)}`);
        }
        this.topicArn = opts.topicArn;
        this.region = opts.region ?? opts.topicArn.split(":")[3];
        this.client = opts.client;
      }
      async send(alert) {
        const subject = snsSubject(alert.subject);
        const input = {
          TopicArn: this.topicArn,
          Subject: subject,
          Message: formatAlertMessage(alert),
          MessageAttributes: messageAttributes(alert),
          ...this.topicArn.endsWith(".fifo") ? {
            MessageGroupId: alert.component || "memvault",
            MessageDeduplicationId: createHash9("sha256").update(JSON.stringify([alert.time, alert.subject, alert.component ?? "", alert.step ?? ""])).digest("hex")
          } : {}
        };
        try {
          const sdk = await snsSdk();
          this.client ??= new sdk.SNSClient({ region: this.region });
          await this.client.send(new sdk.PublishCommand(input));
        } catch (err) {
          throw this.mapError(err);
        }
      }
      mapError(err) {
        const raw = err?.name ?? "";
        const name = raw.replace(/Exception$/, "");
        const detail = errorMessage(err);
        const topic = this.topicArn;
        switch (name) {
          case "Throttled":
          case "Throttling":
          case "TooManyRequests":
          case "KMSThrottling":
            return new ThrottledError(`SNS throttled publishing to ${topic} (${raw}); retry later`, { cause: err });
          case "NotFound":
          case "ResourceNotFound":
            return new PermanentError(`SNS topic ${topic} not found: check the alert topic ARN (region and account) and that the stack is deployed`, { cause: err });
          case "AuthorizationError":
          case "AccessDenied":
            return new PermanentError(`not authorized to publish to SNS topic ${topic} (${detail}): grant sns:Publish on the topic to this role`, { cause: err });
          case "KMSAccessDenied":
            return new PermanentError(
              `SNS topic ${topic} is encrypted with a KMS key this role cannot use (KMSAccessDenied: ${detail}): allow kms:GenerateDataKey and kms:Decrypt on the topic's key`,
              { cause: err }
            );
          case "KMSDisabled":
            return new PermanentError(`SNS topic ${topic} is encrypted with a disabled KMS key (KMSDisabled: ${detail}): enable the key`, { cause: err });
          case "KMSInvalidState":
            return new PermanentError(`SNS topic ${topic}: its KMS key is not usable in its current state (KMSInvalidState: ${detail})`, { cause: err });
          case "KMSNotFound":
            return new PermanentError(`SNS topic ${topic}: its KMS key was not found (KMSNotFound: ${detail}): fix the topic's encryption key`, { cause: err });
          case "KMSOptInRequired":
            return new PermanentError(`SNS topic ${topic}: KMS is not enabled for this account (KMSOptInRequired: ${detail})`, { cause: err });
          case "InvalidParameter":
          case "InvalidParameterValue":
          case "Validation":
            return new PermanentError(`SNS rejected the alert for ${topic} (${raw}: ${detail})`, { cause: err });
          case "InternalError":
            return new RetryableError(`SNS failed publishing to ${topic} on the service side: ${detail}`, { cause: err });
        }
        const fault = err?.$fault;
        const status2 = err?.$metadata?.httpStatusCode;
        if (status2 === 429) return new ThrottledError(`SNS throttled publishing to ${topic}; retry later`, { cause: err });
        if (fault === "server" || status2 !== void 0 && status2 >= 500) {
          return new RetryableError(`SNS failed publishing to ${topic} on the service side: ${detail}`, { cause: err });
        }
        return new PermanentError(`publishing to SNS topic ${topic} failed: ${raw ? `${raw}: ` : ""}${detail}`, { cause: err });
      }
    };
  }
});

// functions/services.ts
import path13 from "node:path";
function openStorage(cfg, loc) {
  if (loc.url.startsWith("file://")) {
    const p = loc.url.slice("file://".length);
    return new RetryingStorage(new FileStorage(path13.isAbsolute(p) ? p : resolvePath(cfg, p)));
  }
  if (loc.url.startsWith("s3://")) return new RetryingStorage(new LazyS3Storage(loc));
  throw new ConfigError(`vault url ${loc.url}: expected file://DIR or s3://bucket/prefix`);
}
function location(cfg, side3) {
  const loc = side3 === "primary" ? cfg.vault.primary : cfg.vault.secondary;
  if (!loc) throw new ConfigError("vault.secondary is not configured; add it to use the DR copy");
  return loc;
}
async function keyProvider(cfg, side3) {
  const e = cfg.encryption;
  if (e.kms) {
    const keyId = side3 === "primary" ? e.kms.primary : e.kms.secondary ?? e.kms.primary;
    const region3 = side3 === "primary" ? e.kms.region : e.kms.secondaryRegion ?? e.kms.region;
    return new KmsKeyProvider({ keyId, region: region3 });
  }
  return LocalKeyProvider.load(resolvePath(cfg, e.key));
}
async function openVault(cfg, side3 = "primary") {
  return Vault.open(openStorage(cfg, location(cfg, side3)), await keyProvider(cfg, side3));
}
function alertSink(cfg, opts = {}) {
  return new FanoutAlertSink(cfg.alerts.map((a) => {
    if (a.type === "stdout") return new StreamAlertSink(opts.json ? process.stderr : process.stdout);
    if (a.type === "file") return new FileAlertSink(resolvePath(cfg, a.path));
    return new SnsAlertSink({ topicArn: a.topicArn, region: a.region });
  }));
}
var init_services = __esm({
  "functions/services.ts"() {
    "use strict";
    init_config();
    init_file();
    init_s3_location();
    init_retrying();
    init_local();
    init_kms();
    init_local2();
    init_sns();
    init_vault();
    init_errors();
  }
});

// functions/core/backup.ts
import os4 from "node:os";
import { randomBytes as randomBytes6 } from "node:crypto";
function newBackupId(now) {
  return `${now.toISOString().slice(0, 10).replaceAll("-", "")}-${randomBytes6(4).toString("hex")}`;
}
function selectComponents(cfg, type, names = []) {
  const all = Object.keys(cfg.components);
  for (const n of names) {
    if (!cfg.components[n]) throw new UsageError(`unknown component "${n}"; configured components: ${all.join(", ")}`);
  }
  let chosen = names.length > 0 ? names : all;
  if (type === "critical") chosen = chosen.filter((n) => cfg.components[n].critical);
  if (chosen.length === 0) throw new UsageError(`no component to back up${type === "critical" ? " (none is marked critical: true)" : ""}`);
  return chosen;
}
async function acquireBackupLock(vault, waitMs) {
  const deadline = Date.now() + waitMs;
  for (; ; ) {
    try {
      return await vault.lock("backup");
    } catch (err) {
      if (!(err instanceof LockedError) || Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 2e3));
    }
  }
}
async function backupComponent(deps, component, type, runId) {
  const { cfg, vault, log } = deps;
  const clock = deps.clock ?? systemClock;
  const settings = cfg.components[component];
  if (!settings) throw new NotFoundError(`unknown component "${component}"; configured: ${Object.keys(cfg.components).join(", ")}`);
  const driver = deps.driverFor(settings.kind);
  const started = clock.now();
  const lock = await acquireBackupLock(vault, deps.lockWaitMs ?? 10 * 6e4);
  try {
    const known = deps.known ?? new Set((await vault.listChunks()).keys());
    const latest = (await listCatalog(vault.storage, component))[0];
    const parent = latest && type !== "full" ? await vault.readManifest(latest) : void 0;
    const writer = new BackupWriter(vault, known);
    if (deps.onProgress) writer.onProgress = (s) => deps.onProgress(component, s);
    log.info("backup started", { component, type, parent: parent?.id });
    const result = await driver.backup({
      component,
      settings,
      type,
      parent,
      writer,
      resolve: (p) => resolvePath(cfg, p),
      log
    });
    await writer.drain();
    await writer.close();
    const finished = clock.now();
    const id = newBackupId(started);
    const key = manifestKey(component, started, type, id);
    const manifest = {
      format: "memvault-manifest/1",
      id,
      component,
      kind: settings.kind,
      type,
      runId,
      startedAt: started.toISOString(),
      finishedAt: finished.toISOString(),
      parent: parent?.id,
      host: os4.hostname(),
      entries: result.entries,
      driver: result.meta,
      stats: { ...writer.stats, durationMs: finished.getTime() - started.getTime() },
      warnings: result.warnings
    };
    manifest.stats.bytesStored += await vault.writeManifest(key, manifest);
    log.info("backup finished", { component, backupId: id, ...manifest.stats, warnings: result.warnings.length });
    return {
      component,
      kind: settings.kind,
      backupId: id,
      manifestKey: key,
      type,
      parent: parent?.id,
      startedAt: manifest.startedAt,
      finishedAt: manifest.finishedAt,
      stats: manifest.stats,
      warnings: result.warnings
    };
  } finally {
    await lock.release();
  }
}
var init_backup = __esm({
  "functions/core/backup.ts"() {
    "use strict";
    init_vault();
    init_writer();
    init_manifest();
    init_config();
    init_errors();
    init_ports();
  }
});

// functions/core/replicate.ts
async function keys(storage, prefix) {
  const m = /* @__PURE__ */ new Map();
  for await (const o of storage.list(prefix)) m.set(o.key, o.size);
  return m;
}
async function replicate(source, dest, o = {}) {
  const t0 = Date.now();
  const [srcDoc, dstDoc] = await Promise.all([Vault.readDoc(source), Vault.readDoc(dest)]);
  if (srcDoc.vaultId !== dstDoc.vaultId) {
    throw new PermanentError(`${dest.url} is vault ${dstDoc.vaultId}, not a replica of ${source.url} (vault ${srcDoc.vaultId}); run \`memvault init\` to create the secondary as a replica`);
  }
  let bytesCopied = 0;
  let present = 0;
  const report2 = { chunksCopied: 0, manifestsCopied: 0 };
  for (const prefix of ["chunks/", "manifests/"]) {
    const [src, dst] = await Promise.all([keys(source, prefix), keys(dest, prefix)]);
    const todo = [...src.keys()].filter((k) => {
      if (dst.has(k)) {
        present++;
        return false;
      }
      return true;
    });
    let done = 0;
    const worker = async () => {
      for (let k = todo.pop(); k !== void 0; k = todo.pop()) {
        const data = await source.get(k);
        await dest.put(k, data);
        bytesCopied += data.length;
        if (prefix === "chunks/") report2.chunksCopied++;
        else report2.manifestsCopied++;
        o.onProgress?.(++done, todo.length + done);
      }
    };
    await Promise.all(Array.from({ length: o.concurrency ?? 8 }, worker));
  }
  return { from: source.url, to: dest.url, ...report2, bytesCopied, alreadyPresent: present, durationMs: Date.now() - t0 };
}
var init_replicate = __esm({
  "functions/core/replicate.ts"() {
    "use strict";
    init_vault();
    init_errors();
  }
});

// functions/ops.ts
async function initVaults(cfg) {
  let created = false;
  if (cfg.encryption.key && !cfg.encryption.kms) {
    const file = resolvePath(cfg, cfg.encryption.key);
    if (!await LocalKeyProvider.exists(file)) {
      await LocalKeyProvider.create(file);
      created = true;
    }
  }
  const pk = await keyProvider(cfg, "primary");
  const pStore = openStorage(cfg, location(cfg, "primary"));
  let primaryCreated = false;
  let secret;
  let vault;
  try {
    ({ vault, secret } = await Vault.openWithSecret(pStore, pk));
  } catch (err) {
    if (!(err instanceof NotFoundError)) throw err;
    vault = await Vault.init(pStore, [pk]);
    ({ secret } = await Vault.openWithSecret(pStore, pk));
    primaryCreated = true;
  }
  const report2 = {
    key: { type: pk.type, keyId: pk.keyId, created, file: pk instanceof LocalKeyProvider ? pk.file : void 0 },
    primary: { url: pStore.url, vaultId: vault.id, created: primaryCreated }
  };
  if (cfg.vault.secondary) {
    const sk = await keyProvider(cfg, "secondary");
    const sStore = openStorage(cfg, location(cfg, "secondary"));
    let sCreated = false;
    try {
      const s = await Vault.open(sStore, sk);
      if (s.id !== vault.id) throw new Error(`${sStore.url} holds vault ${s.id}, not a replica of ${vault.id}`);
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
      await Vault.init(sStore, [sk], { secret, doc: vault.doc });
      sCreated = true;
    }
    report2.secondary = { url: sStore.url, vaultId: vault.id, created: sCreated };
  }
  return report2;
}
async function runBackups(cfg, o) {
  const t0 = Date.now();
  const names = selectComponents(cfg, o.type, o.components);
  const runId = o.runId ?? `run-${(/* @__PURE__ */ new Date()).toISOString().replace(/[-:.]/g, "")}`;
  const vault = await openVault(cfg, "primary");
  const known = new Set((await vault.listChunks()).keys());
  const outcomes = [];
  const failures = [];
  for (const name of names) {
    try {
      const out = await backupComponent({ cfg, vault, driverFor, log: o.log, known, onProgress: o.onProgress }, name, o.type, runId);
      outcomes.push(out);
      if (out.warnings.length > 0) {
        failures.push({ component: name, error: `incomplete backup: ${out.warnings.join("; ")}`, errorName: "IncompleteBackup" });
        await o.alerts.send({
          severity: "warning",
          subject: `backup incomplete: ${name}`,
          component: name,
          step: "export",
          message: `backup ${out.backupId} of ${name} completed with ${out.warnings.length} problem(s): ${out.warnings.slice(0, 5).join("; ")}`,
          time: (/* @__PURE__ */ new Date()).toISOString(),
          details: { runId, warnings: out.warnings }
        });
      }
    } catch (err) {
      failures.push({ component: name, error: errorMessage(err), errorName: err.name ?? "Error" });
      await o.alerts.send({
        severity: "error",
        subject: `backup failed: ${name}`,
        component: name,
        step: "backup",
        cause: errorMessage(err),
        message: `backup of ${name} (${cfg.components[name].kind}) failed: ${errorMessage(err)}`,
        time: (/* @__PURE__ */ new Date()).toISOString(),
        details: { runId, type: o.type }
      });
    }
  }
  let replicated;
  if (o.replicate && cfg.vault.secondary) {
    try {
      replicated = await replicateVaults(cfg);
    } catch (err) {
      failures.push({ component: "(secondary vault)", error: errorMessage(err), errorName: err.name });
      await o.alerts.send({
        severity: "error",
        subject: "replication to the secondary vault failed",
        step: "replicate",
        cause: errorMessage(err),
        message: errorMessage(err),
        time: (/* @__PURE__ */ new Date()).toISOString(),
        details: { runId }
      });
    }
  }
  return { runId, type: o.type, ok: failures.length === 0, outcomes, failures, replicated, durationMs: Date.now() - t0 };
}
async function replicateVaults(cfg, onProgress) {
  const [p, s] = await Promise.all([openVault(cfg, "primary"), openVault(cfg, "secondary")]);
  return replicate(p.storage, s.storage, { onProgress });
}
async function pruneServiceSnapshots(cfg, driverOf, o = {}) {
  const out = [];
  for (const [component, settings] of Object.entries(cfg.components)) {
    const d = driverOf(settings.kind);
    if (hasServiceRetention(d)) out.push(await d.pruneSnapshots({ component, settings, now: o.now, dryRun: o.dryRun, log: o.log }));
  }
  return out;
}
async function retentionRun(cfg, o = {}) {
  const policies = Object.fromEntries(Object.entries(cfg.components).map(([n, c]) => [n, c.retention]));
  const sides = o.sides ?? (cfg.vault.secondary ? ["primary", "secondary"] : ["primary"]);
  const vaults = [];
  for (const side3 of sides) vaults.push(await applyRetention(await openVault(cfg, side3), policies, { dryRun: o.dryRun, now: o.now }));
  const snapshots = await pruneServiceSnapshots(cfg, driverFor, { dryRun: o.dryRun, now: o.now });
  return { vaults, snapshots };
}
var init_ops = __esm({
  "functions/ops.ts"() {
    "use strict";
    init_backup();
    init_vault();
    init_replicate();
    init_retention();
    init_errors();
    init_types();
    init_registry();
    init_services();
    init_local();
    init_config();
  }
});

// functions/logger.ts
function jsonLogger(base = {}, level = process.env.MEMVAULT_LOG ?? "warn", out = process.stderr) {
  const min = order[level] ?? order.warn;
  const write = (lvl, msg, fields) => {
    if (order[lvl] < min) return;
    out.write(`${JSON.stringify({ level: lvl, time: (/* @__PURE__ */ new Date()).toISOString(), msg, ...base, ...fields })}
`);
  };
  return {
    info: (m, f) => write("info", m, f),
    warn: (m, f) => write("warn", m, f),
    error: (m, f) => write("error", m, f),
    child: (f) => jsonLogger({ ...base, ...f }, level, out)
  };
}
var order;
var init_logger = __esm({
  "functions/logger.ts"() {
    "use strict";
    order = { debug: 10, info: 20, warn: 30, error: 40, silent: 99 };
  }
});

// cli/format.ts
function bytes(n) {
  if (!Number.isFinite(n)) return String(n);
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)} ${units[i]}`;
}
function ms(n) {
  if (n < 1e3) return `${Math.round(n)} ms`;
  if (n < 6e4) return `${(n / 1e3).toFixed(2)} s`;
  return `${Math.floor(n / 6e4)}m${Math.round(n % 6e4 / 1e3)}s`;
}
function table(head, rows) {
  const all = [head, ...rows.map((r) => r.map(String))];
  const w = head.map((_, i) => Math.max(...all.map((r) => (r[i] ?? "").length)));
  const last = head.length - 1;
  const line = (r) => r.map((c, i) => i === 0 || i === last && last > 1 ? c.padEnd(w[i]) : c.padStart(w[i])).join("  ").trimEnd();
  return [line(all[0]), w.map((x) => "-".repeat(x)).join("  "), ...all.slice(1).map(line)].join("\n");
}
function progress(enabled = process.stderr.isTTY === true) {
  let last = 0;
  return {
    update(text) {
      if (!enabled) return;
      const now = Date.now();
      if (now - last < 100) return;
      last = now;
      process.stderr.write(`\r\x1B[2K${text}`);
    },
    done() {
      if (enabled) process.stderr.write("\r\x1B[2K");
    }
  };
}
var init_format = __esm({
  "cli/format.ts"() {
    "use strict";
  }
});

// functions/adapters/sfn.ts
var sfn_exports = {};
__export(sfn_exports, {
  runRemote: () => runRemote,
  stateMachineArnFor: () => stateMachineArnFor
});
import { randomBytes as randomBytes7 } from "node:crypto";
import {
  DescribeExecutionCommand,
  GetExecutionHistoryCommand,
  StartExecutionCommand
} from "@aws-sdk/client-sfn";
async function runRemote(opts) {
  const { client, stateMachineArn } = opts;
  const sleep = opts.sleep ?? defaultSleep2;
  const pollMs = opts.pollMs ?? 2e3;
  const name = opts.name ?? generatedName();
  const began = Date.now();
  let start;
  try {
    start = await backingOff(
      "StartExecution",
      sleep,
      () => client.send(new StartExecutionCommand({ stateMachineArn, name, input: JSON.stringify(opts.input ?? {}) }))
    );
  } catch (err) {
    throw mapSfnError(err, { op: "StartExecution", stateMachineArn, name });
  }
  const executionArn = start.executionArn;
  if (!executionArn) throw new PermanentError(`StartExecution of ${stateMachineArn} returned no execution ARN`);
  const history = new HistoryFollower(client, executionArn, sleep, opts.onEvent);
  for (; ; ) {
    await history.readNew();
    let d;
    try {
      d = await backingOff("DescribeExecution", sleep, () => client.send(new DescribeExecutionCommand({ executionArn })));
    } catch (err) {
      throw mapSfnError(err, { op: "DescribeExecution", stateMachineArn, executionArn });
    }
    const status2 = d.status ?? "UNKNOWN";
    if (!IN_PROGRESS.has(status2)) {
      await history.readNew();
      const result = {
        executionArn,
        status: status2,
        durationMs: d.startDate && d.stopDate ? d.stopDate.getTime() - d.startDate.getTime() : Date.now() - began
      };
      if (d.output !== void 0) result.output = parseJson(d.output);
      const error = d.error ?? history.lastFailure?.error;
      const cause = d.cause ?? history.lastFailure?.cause;
      if (status2 !== "SUCCEEDED") {
        if (error !== void 0) result.error = error;
        if (cause !== void 0) result.cause = cause;
      }
      return result;
    }
    await sleep(pollMs);
  }
}
function stateMachineArnFor(name, opts) {
  if (name.startsWith("arn:")) return name;
  const problems = [];
  if (!/^[a-z]{2}(-[a-z]+)+-\d+$/.test(opts.region)) problems.push(`region: expected an AWS region such as us-east-1, got ${JSON.stringify(opts.region)}`);
  if (!/^\d{12}$/.test(opts.account)) problems.push(`account: expected a 12-digit AWS account id, got ${JSON.stringify(opts.account)}`);
  const prefix = opts.prefix ?? "memvault";
  const full = prefix ? `${prefix}-${name}` : name;
  if (!/^[A-Za-z0-9_-]{1,80}$/.test(full)) {
    problems.push(`state machine name: expected 1-80 letters, digits, '-' or '_', got ${JSON.stringify(full)}`);
  }
  if (problems.length) throw new ConfigError(problems);
  const partition = opts.region.startsWith("cn-") ? "aws-cn" : opts.region.startsWith("us-gov-") ? "aws-us-gov" : "aws";
  return `arn:${partition}:states:${opts.region}:${opts.account}:stateMachine:${full}`;
}
function failureOf(e) {
  for (const [k, v] of Object.entries(e)) {
    if (!k.endsWith("EventDetails") || !v || typeof v !== "object") continue;
    const d = v;
    if (d.error !== void 0 || d.cause !== void 0) return { error: d.error, cause: d.cause };
    if (d.name !== void 0 && d.index !== void 0) return { extra: `${d.name}[${d.index}]` };
  }
  return {};
}
function describeFailure(type, f) {
  const cause = f.cause !== void 0 ? lambdaMessage(f.cause) : void 0;
  const parts = [f.error, cause].filter((x) => !!x);
  if (parts.length) return parts.join(": ");
  return f.extra ? `${type} ${f.extra}` : type;
}
function lambdaMessage(cause) {
  try {
    const c = JSON.parse(cause);
    if (c && typeof c === "object" && typeof c.errorMessage === "string") return c.errorMessage;
  } catch {
  }
  return cause;
}
function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
function generatedName() {
  const time = (/* @__PURE__ */ new Date()).toISOString().replace(/[-:]/g, "").replace(/\..*$/, "");
  return `cli-${time}-${randomBytes7(4).toString("hex")}`;
}
function errorName(err) {
  return err?.name ?? "";
}
function isTransient2(err) {
  const e = err;
  if (!e) return false;
  if (THROTTLING3.has(e.name ?? "")) return true;
  const status2 = e.$metadata?.httpStatusCode;
  if (status2 === 429 || status2 !== void 0 && status2 >= 500 || e.$fault === "server") return true;
  return ["ECONNRESET", "ETIMEDOUT", "EPIPE", "ECONNREFUSED"].includes(e.code ?? "") || e.name === "TimeoutError";
}
async function backingOff(op, sleep, fn) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (!isTransient2(err)) throw err;
      if (attempt >= MAX_ATTEMPTS) {
        throw new ThrottledError(`Step Functions ${op} still throttled or failing after ${attempt} attempts: ${errorMessage(err)}`, { cause: err });
      }
      const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** (attempt - 1));
      await sleep(Math.round(cap / 2 + Math.random() * (cap / 2)));
    }
  }
}
function mapSfnError(err, ctx) {
  if (err instanceof ThrottledError) return err;
  const name = errorName(err);
  const detail = errorMessage(err);
  const target = ctx.executionArn ?? ctx.stateMachineArn ?? "";
  switch (name) {
    case "StateMachineDoesNotExist":
      return new NotFoundError(
        `state machine ${ctx.stateMachineArn} does not exist: deploy the stack (cdk deploy) or check the region, account and name`
      );
    case "ExecutionDoesNotExist":
      return new NotFoundError(`execution ${ctx.executionArn} does not exist (${detail})`);
    case "InvalidArn":
      return new PermanentError(`${ctx.op}: invalid ARN ${target} (${detail}): expected arn:aws:states:REGION:ACCOUNT:...`, { cause: err });
    case "ExecutionAlreadyExists":
      return new PermanentError(
        `an execution named ${ctx.name} of ${ctx.stateMachineArn} already exists with other input or has finished: choose another name`,
        { cause: err }
      );
    case "InvalidName":
      return new PermanentError(`invalid execution name ${JSON.stringify(ctx.name)} for ${ctx.stateMachineArn}: use 1-80 letters, digits, '-' or '_'`, { cause: err });
    case "InvalidExecutionInput":
      return new PermanentError(`${ctx.stateMachineArn} rejected the execution input: ${detail}`, { cause: err });
    case "StateMachineDeleting":
      return new PermanentError(`state machine ${ctx.stateMachineArn} is being deleted: redeploy the stack`, { cause: err });
    case "ExecutionLimitExceeded":
      return new RetryableError(`${ctx.stateMachineArn} has reached its limit of running executions: try again when some have finished`, { cause: err });
    case "AccessDeniedException":
    case "AccessDenied":
      return new PermanentError(`not allowed to call states:${ctx.op} on ${target}: ${detail}`, { cause: err });
    case "KmsAccessDeniedException":
    case "KmsInvalidStateException":
      return new PermanentError(`${ctx.op} on ${target}: the state machine's KMS key cannot be used (${name}: ${detail})`, { cause: err });
  }
  return new PermanentError(`Step Functions ${ctx.op} on ${target} failed: ${name ? `${name}: ` : ""}${detail}`, { cause: err });
}
var IN_PROGRESS, THROTTLING3, MAX_ATTEMPTS, BACKOFF_BASE_MS, BACKOFF_MAX_MS, HISTORY_PAGE, defaultSleep2, HistoryFollower;
var init_sfn = __esm({
  "functions/adapters/sfn.ts"() {
    "use strict";
    init_errors();
    IN_PROGRESS = /* @__PURE__ */ new Set(["RUNNING", "PENDING_REDRIVE"]);
    THROTTLING3 = /* @__PURE__ */ new Set([
      "ThrottlingException",
      "Throttling",
      "TooManyRequestsException",
      "RequestLimitExceeded",
      "KmsThrottlingException"
    ]);
    MAX_ATTEMPTS = 8;
    BACKOFF_BASE_MS = 500;
    BACKOFF_MAX_MS = 3e4;
    HISTORY_PAGE = 1e3;
    defaultSleep2 = (ms2) => new Promise((r) => setTimeout(r, ms2));
    HistoryFollower = class {
      constructor(client, executionArn, sleep, onEvent) {
        this.client = client;
        this.executionArn = executionArn;
        this.sleep = sleep;
        this.onEvent = onEvent;
      }
      client;
      executionArn;
      sleep;
      onEvent;
      /** The token of the last page read (undefined: the first page); the next read starts there. */
      resumeToken;
      lastId = 0;
      /** id -> previous event id and, for state entered/exited events, the state name. */
      seen = /* @__PURE__ */ new Map();
      lastEntered = "";
      lastFailure;
      async readNew() {
        let token = this.resumeToken;
        let restarted = false;
        for (; ; ) {
          let page;
          try {
            page = await backingOff(
              "GetExecutionHistory",
              this.sleep,
              () => this.client.send(
                new GetExecutionHistoryCommand({
                  executionArn: this.executionArn,
                  maxResults: HISTORY_PAGE,
                  includeExecutionData: false,
                  ...token ? { nextToken: token } : {}
                })
              )
            );
          } catch (err) {
            if (token && !restarted && errorName(err) === "InvalidToken") {
              restarted = true;
              token = void 0;
              this.resumeToken = void 0;
              continue;
            }
            throw mapSfnError(err, { op: "GetExecutionHistory", executionArn: this.executionArn });
          }
          for (const e of page.events ?? []) {
            if (e.id === void 0 || e.id <= this.lastId) continue;
            this.lastId = e.id;
            this.handle(e);
          }
          if (!page.nextToken) {
            this.resumeToken = token;
            return;
          }
          token = page.nextToken;
        }
      }
      handle(e) {
        const type = e.type ?? "";
        const time = e.timestamp ?? /* @__PURE__ */ new Date();
        const state = e.stateEnteredEventDetails?.name ?? e.stateExitedEventDetails?.name;
        this.seen.set(e.id, { prev: e.previousEventId, state });
        if (type.endsWith("StateEntered")) {
          this.lastEntered = state ?? "";
          this.onEvent?.({ state: state ?? "", type: "entered", time, detail: type.slice(0, -"StateEntered".length) });
        } else if (type.endsWith("StateExited")) {
          this.onEvent?.({ state: state ?? "", type: "exited", time, detail: type.slice(0, -"StateExited".length) });
        } else if (/(Failed|TimedOut|Aborted)$/.test(type)) {
          const failure = failureOf(e);
          if (failure.error !== void 0 || failure.cause !== void 0) this.lastFailure = failure;
          const detail = describeFailure(type, failure);
          this.onEvent?.({ state: this.stateOf(e), type: "failed", time, detail });
        }
      }
      /** The state an event belongs to: follow previousEventId back to a state entered/exited event. */
      stateOf(e) {
        let id = e.previousEventId;
        for (let hops = 0; id !== void 0 && id > 0 && hops < 1e5; hops++) {
          const s = this.seen.get(id);
          if (!s) break;
          if (s.state !== void 0) return s.state;
          id = s.prev;
        }
        return this.lastEntered;
      }
    };
  }
});

// functions/handlers/metrics.ts
import { appendFileSync } from "node:fs";
function emfLines(points, time) {
  const groups = /* @__PURE__ */ new Map();
  for (const p of points) {
    if (!Number.isFinite(p.value)) continue;
    const key = `${METRIC_DIMENSION[p.name]}\0${p.dimension}`;
    const g = groups.get(key) ?? [];
    g.push(p);
    groups.set(key, g);
  }
  const lines3 = [];
  for (const g of groups.values()) {
    const dim = METRIC_DIMENSION[g[0].name];
    const values = {};
    const metrics = [];
    for (const p of g) {
      if (!(p.name in values)) metrics.push({ Name: p.name, Unit: METRIC_UNIT[p.name] });
      values[p.name] = p.value;
    }
    lines3.push(JSON.stringify({
      _aws: { Timestamp: time.getTime(), CloudWatchMetrics: [{ Namespace: METRIC_NAMESPACE, Dimensions: [[dim]], Metrics: metrics }] },
      [dim]: g[0].dimension,
      ...values
    }));
  }
  return lines3;
}
function fileMetrics(file) {
  return {
    emit(points, time) {
      const lines3 = emfLines(points, time);
      if (lines3.length) appendFileSync(file, lines3.map((l) => `${l}
`).join(""));
    }
  };
}
function metricsFromEnv(env = process.env) {
  if (env.AWS_LAMBDA_FUNCTION_NAME) return stdoutMetrics;
  if (env.MEMVAULT_METRICS_FILE) return fileMetrics(env.MEMVAULT_METRICS_FILE);
  return noMetrics;
}
var METRIC_NAMESPACE, METRIC_DIMENSION, METRIC_UNIT, stdoutMetrics, noMetrics;
var init_metrics = __esm({
  "functions/handlers/metrics.ts"() {
    "use strict";
    METRIC_NAMESPACE = "Memvault";
    METRIC_DIMENSION = {
      LastBackupAgeSeconds: "Component",
      BytesStored: "Vault",
      NewBytes: "Component",
      BackupDurationSeconds: "Component",
      BackupFailures: "Component",
      DrillResult: "Component",
      RestoreDurationSeconds: "Component"
    };
    METRIC_UNIT = {
      LastBackupAgeSeconds: "Seconds",
      BytesStored: "Bytes",
      NewBytes: "Bytes",
      BackupDurationSeconds: "Seconds",
      BackupFailures: "Count",
      DrillResult: "None",
      RestoreDurationSeconds: "Seconds"
    };
    stdoutMetrics = {
      emit(points, time) {
        for (const l of emfLines(points, time)) process.stdout.write(`${l}
`);
      }
    };
    noMetrics = { emit() {
    } };
  }
});

// functions/handlers/deps.ts
import { z as z14 } from "zod";
import path14 from "node:path";
function configFromEnv(env = process.env) {
  const json2 = env.MEMVAULT_CONFIG_JSON;
  if (json2 !== void 0 && json2 !== "") {
    let raw;
    try {
      raw = JSON.parse(json2);
    } catch (err) {
      throw new ConfigError(`MEMVAULT_CONFIG_JSON: not valid JSON (${err.message}); set it to the validated memvault.yaml as JSON`);
    }
    const { baseDir, file: file2, ...doc } = raw;
    return parseConfig(doc, kindSchemas, typeof baseDir === "string" ? baseDir : process.cwd(), typeof file2 === "string" ? file2 : void 0);
  }
  const file = env.MEMVAULT_CONFIG;
  if (file !== void 0 && file !== "") return loadConfigFile(path14.resolve(file), kindSchemas);
  throw new ConfigError("neither MEMVAULT_CONFIG_JSON (the configuration as JSON) nor MEMVAULT_CONFIG (a path to memvault.yaml) is set in the environment of this handler");
}
function defaultDeps5(cfg, overrides = {}) {
  const vaults = /* @__PURE__ */ new Map();
  return {
    cfg,
    clock: systemClock,
    alerts: alertSink(cfg, { json: true }),
    log: jsonLogger({ service: "memvault" }),
    driverFor,
    metrics: metricsFromEnv(),
    openVault(side3) {
      let v = vaults.get(side3);
      if (!v) {
        v = openVault(cfg, side3);
        v.catch(() => vaults.delete(side3));
        vaults.set(side3, v);
      }
      return v;
    },
    ...overrides
  };
}
function lazyHandler(make, env = process.env) {
  let fn;
  const build = () => fn ??= make(defaultDeps5(configFromEnv(env)));
  if (env.AWS_LAMBDA_FUNCTION_NAME) build();
  return async (event) => build()(event);
}
function parseEvent(schema, event, what, example) {
  const r = schema.safeParse(event ?? {});
  if (r.success) return r.data;
  const problems = formatIssues(r.error);
  throw new UsageError(`${what}: ${problems.join("; ")}${example ? `; a valid input looks like ${example}` : ""}`);
}
function invocationLog(deps, handler2, fields) {
  return deps.log.child({ handler: handler2, executionId: fields.executionId, ...fields.component ? { component: fields.component } : {} });
}
function json(v) {
  return JSON.parse(JSON.stringify(v));
}
var traced, side;
var init_deps = __esm({
  "functions/handlers/deps.ts"() {
    "use strict";
    init_config();
    init_errors();
    init_config();
    init_ports();
    init_registry();
    init_services();
    init_logger();
    init_metrics();
    traced = { executionId: z14.string().optional() };
    side = z14.enum(["primary", "secondary"]);
  }
});

// local/runtime.ts
var runtime_exports = {};
__export(runtime_exports, {
  HANDLERS_DIR: () => HANDLERS_DIR,
  STATE_MACHINES_DIR: () => STATE_MACHINES_DIR,
  STATE_MACHINE_NAMES: () => STATE_MACHINE_NAMES,
  handlerNames: () => handlerNames,
  kebab: () => kebab,
  localDefinition: () => localDefinition,
  localFunctionArn: () => localFunctionArn,
  localSubstitutions: () => localSubstitutions,
  pascal: () => pascal,
  placeholders: () => placeholders,
  readDefinitionText: () => readDefinitionText,
  runLocal: () => runLocal,
  taskStates: () => taskStates
});
import { readFileSync as readFileSync3, readdirSync as readdirSync2 } from "node:fs";
import path15 from "node:path";
import { fileURLToPath as fileURLToPath2 } from "node:url";
import { randomBytes as randomBytes8 } from "node:crypto";
import { StateMachine, ExecutionError } from "aws-local-stepfunctions";
function kebab(pascal2) {
  return pascal2.replace(/([a-z0-9])([A-Z])/g, "$1-$2").toLowerCase();
}
function pascal(kebabName) {
  return kebabName.split("-").map((p) => p.charAt(0).toUpperCase() + p.slice(1)).join("");
}
function localFunctionArn(pascalName) {
  return `arn:aws:lambda:${LOCAL_REGION}:${LOCAL_ACCOUNT}:function:memvault-${kebab(pascalName)}`;
}
function placeholders(text) {
  return [...new Set([...text.matchAll(/\$\{([A-Za-z0-9_]+)\}/g)].map((m) => m[1]))];
}
function handlerNames(dir = HANDLERS_DIR) {
  return readdirSync2(dir).filter((f) => f.endsWith(".ts")).filter((f) => /export const handler\b/.test(readFileSync3(path15.join(dir, f), "utf8"))).map((f) => f.slice(0, -3)).sort();
}
function localSubstitutions(dir = STATE_MACHINES_DIR) {
  return JSON.parse(readFileSync3(path15.join(dir, "substitutions.json"), "utf8"));
}
function readDefinitionText(name, dir = STATE_MACHINES_DIR) {
  if (!STATE_MACHINE_NAMES.includes(name)) {
    throw new UsageError(`unknown state machine "${name}"; state machines: ${STATE_MACHINE_NAMES.join(", ")}`);
  }
  return readFileSync3(path15.join(dir, `${name}.asl.json`), "utf8");
}
function localDefinition(name, dir = STATE_MACHINES_DIR) {
  const text = readDefinitionText(name, dir);
  const subs = localSubstitutions(dir);
  const handlers = new Set(handlerNames());
  const unbound = [];
  const out = text.replace(/\$\{([A-Za-z0-9_]+)\}/g, (whole, key) => {
    const fn = FUNCTION_ARN.exec(whole);
    if (fn) {
      if (!handlers.has(kebab(fn[1]))) unbound.push(`${whole} (no functions/handlers/${kebab(fn[1])}.ts exporting handler)`);
      return localFunctionArn(fn[1]);
    }
    if (subs[key] === void 0) unbound.push(`${whole} (not in statemachines/substitutions.json)`);
    return subs[key] ?? whole;
  });
  if (unbound.length) throw new ConfigError(`statemachines/${name}.asl.json: unbound placeholder(s): ${unbound.join(", ")}`);
  return JSON.parse(out);
}
function taskStates(def) {
  const out = [];
  const visit = (states) => {
    for (const [name, s] of Object.entries(states)) {
      if (s.Type === "Task") out.push({ state: name, resource: s.Resource });
      if (s.Type === "Map") visit((s.ItemProcessor ?? s.Iterator).States);
      if (s.Type === "Parallel") for (const b of s.Branches) visit(b.States);
    }
  };
  visit(def.States);
  return out;
}
function statesOfType(def, pred) {
  const out = [];
  const visit = (states) => {
    for (const [name, s] of Object.entries(states)) {
      if (pred(s)) out.push(name);
      if (s.Type === "Map") visit((s.ItemProcessor ?? s.Iterator).States);
      if (s.Type === "Parallel") for (const b of s.Branches) visit(b.States);
    }
  };
  visit(def.States);
  return out;
}
async function loadHandlerModule(kebabName) {
  let m = modules.get(kebabName);
  if (!m) {
    m = import(path15.join(HANDLERS_DIR, `${kebabName}.ts`));
    modules.set(kebabName, m);
  }
  return m;
}
async function runLocal(name, input, o) {
  const def = localDefinition(name, o.dir);
  const deps = defaultDeps5(o.cfg, o.deps);
  const execName = o.name ?? `local-${(/* @__PURE__ */ new Date()).toISOString().replace(/[-:.]/g, "")}-${randomBytes8(3).toString("hex")}`;
  const executionArn = `arn:aws:states:${LOCAL_REGION}:${LOCAL_ACCOUNT}:execution:memvault-${name}:${execName}`;
  const invocations = {};
  const retried = {};
  const taskHandlers = {};
  for (const { state, resource } of taskStates(def)) {
    const m = /:function:memvault-([a-z0-9-]+)$/.exec(resource);
    if (!m) throw new ConfigError(`statemachines/${name}.asl.json: state ${state}: Resource ${resource} is not a memvault handler`);
    const pascalName = pascal(m[1]);
    const mod = await loadHandlerModule(m[1]);
    let fn = mod.makeHandler(deps);
    if (o.wrap) fn = o.wrap(pascalName, fn);
    const bound = fn;
    taskHandlers[state] = async (event) => {
      invocations[pascalName] = (invocations[pascalName] ?? 0) + 1;
      try {
        return JSON.parse(JSON.stringify(await bound(JSON.parse(JSON.stringify(event))) ?? null));
      } catch (err) {
        const e = err instanceof Error ? err : new Error(String(err));
        throw new LambdaError(e.name || "Error", e.message);
      }
    };
  }
  const waitMs = o.waitMs ?? 10;
  const retryMs = o.retryMs ?? 10;
  const sm = new StateMachine(def, { validationOptions: { checkPaths: true, checkArn: true } });
  const began = Date.now();
  const execution = sm.run(input, {
    overrides: {
      taskResourceLocalHandlers: taskHandlers,
      waitTimeOverrides: Object.fromEntries(statesOfType(def, (s) => s.Type === "Wait").map((s) => [s, waitMs])),
      retryIntervalOverrides: Object.fromEntries(statesOfType(def, (s) => Array.isArray(s.Retry)).map((s) => [s, retryMs]))
    },
    context: {
      Execution: { Id: executionArn, Name: execName, RoleArn: `arn:aws:iam::${LOCAL_ACCOUNT}:role/memvault-local` },
      StateMachine: { Id: `arn:aws:states:${LOCAL_REGION}:${LOCAL_ACCOUNT}:stateMachine:memvault-${name}`, Name: `memvault-${name}` }
    }
  });
  const following = (async () => {
    for await (const ev of execution.eventLogs) {
      const time = new Date(ev.timestamp ?? Date.now());
      if (ev.type === "StateRetried") retried[ev.state.name] = (retried[ev.state.name] ?? 0) + 1;
      if (!o.onEvent) continue;
      if (ev.type === "StateEntered") o.onEvent({ state: ev.state.name, type: "entered", time, detail: ev.state.type });
      else if (ev.type === "StateExited") o.onEvent({ state: ev.state.name, type: "exited", time, detail: ev.state.type });
      else if (ev.type === "StateFailed") o.onEvent({ state: ev.state.name, type: "failed", time, detail: `${ev.Error}: ${causeText(ev.Cause)}` });
    }
  })();
  let result;
  try {
    const output2 = await execution.result;
    result = { executionArn, status: "SUCCEEDED", output: output2, durationMs: Date.now() - began, invocations, retried };
  } catch (err) {
    const inner = err instanceof ExecutionError ? err.cause : err;
    const status2 = err.name === "ExecutionTimeoutError" ? "TIMED_OUT" : err.name === "ExecutionAbortedError" ? "ABORTED" : "FAILED";
    result = { executionArn, status: status2, error: inner?.name ?? "Error", cause: causeText(inner?.message), durationMs: Date.now() - began, invocations, retried };
  }
  await following.catch(() => void 0);
  return result;
}
function causeText(cause) {
  if (typeof cause !== "string") return cause === void 0 ? "" : JSON.stringify(cause);
  try {
    const c = JSON.parse(cause);
    if (c && typeof c.errorMessage === "string") return c.errorMessage;
  } catch {
  }
  return cause;
}
var STATE_MACHINES_DIR, HANDLERS_DIR, STATE_MACHINE_NAMES, LOCAL_ACCOUNT, LOCAL_REGION, FUNCTION_ARN, modules, LambdaError;
var init_runtime = __esm({
  "local/runtime.ts"() {
    "use strict";
    init_errors();
    init_deps();
    STATE_MACHINES_DIR = fileURLToPath2(new URL("../statemachines/", import.meta.url));
    HANDLERS_DIR = fileURLToPath2(new URL("../functions/handlers/", import.meta.url));
    STATE_MACHINE_NAMES = ["backup-run", "restore", "verify-drill", "retention", "rpo-watch"];
    LOCAL_ACCOUNT = "000000000000";
    LOCAL_REGION = "local-1";
    FUNCTION_ARN = /^\$\{([A-Z][A-Za-z0-9]*)FunctionArn\}$/;
    modules = /* @__PURE__ */ new Map();
    LambdaError = class extends Error {
      constructor(name, message) {
        super(JSON.stringify({ errorType: name, errorMessage: message, trace: [] }));
        this.name = name;
      }
    };
  }
});

// local/platform.ts
import { promises as fs14 } from "node:fs";
import path16 from "node:path";
import { createHash as createHash10 } from "node:crypto";
import { DatabaseSync as DatabaseSync2 } from "node:sqlite";
function rng(seed) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}
function sentence(r, n = 12) {
  return Array.from({ length: n }, () => WORDS[Math.floor(r() * WORDS.length)]).join(" ");
}
function embedding(r, dim = 64) {
  const f = new Float32Array(dim);
  for (let i = 0; i < dim; i++) f[i] = r() * 2 - 1;
  return Buffer.from(f.buffer);
}
function addMemories(dbPath, count, seed) {
  const r = rng(seed);
  const db = new DatabaseSync2(dbPath);
  db.exec(`
    CREATE TABLE IF NOT EXISTS semantic_memories (id INTEGER PRIMARY KEY, concept TEXT NOT NULL, fact TEXT NOT NULL, confidence REAL, embedding BLOB, created_at TEXT);
    CREATE TABLE IF NOT EXISTS episodic_memories (id INTEGER PRIMARY KEY, session TEXT NOT NULL, event TEXT NOT NULL, occurred_at TEXT, embedding BLOB);
    CREATE TABLE IF NOT EXISTS procedural_memories (id INTEGER PRIMARY KEY, skill TEXT NOT NULL, steps TEXT NOT NULL, success_rate REAL);
    CREATE INDEX IF NOT EXISTS idx_semantic_concept ON semantic_memories(concept);
    CREATE INDEX IF NOT EXISTS idx_episodic_session ON episodic_memories(session);
  `);
  const s = db.prepare("INSERT INTO semantic_memories (concept, fact, confidence, embedding, created_at) VALUES (?, ?, ?, ?, ?)");
  const e = db.prepare("INSERT INTO episodic_memories (session, event, occurred_at, embedding) VALUES (?, ?, ?, ?)");
  const p = db.prepare("INSERT INTO procedural_memories (skill, steps, success_rate) VALUES (?, ?, ?)");
  db.exec("BEGIN");
  for (let i = 0; i < count; i++) {
    const t = new Date(Date.UTC(2026, 0, 1) + Math.floor(r() * 3e10)).toISOString();
    s.run(WORDS[i % WORDS.length], sentence(r), r(), embedding(r), t);
    e.run(`session-${Math.floor(r() * 500)}`, sentence(r, 20), t, embedding(r));
    if (i % 5 === 0) p.run(`skill-${i}`, JSON.stringify(Array.from({ length: 4 }, () => sentence(r, 6))), r());
  }
  db.exec("COMMIT");
  db.close();
}
async function writeWeights(dir, totalMb, seed) {
  await fs14.mkdir(dir, { recursive: true });
  const shards = Math.max(1, Math.ceil(totalMb / 64));
  const r = rng(seed);
  for (let s = 0; s < shards; s++) {
    const mb = Math.min(64, totalMb - s * 64);
    const f = new Float32Array(mb * 1024 * 1024 / 4);
    for (let i = 0; i < f.length; i += 2) {
      const u = r() || 1e-9;
      const v = r();
      const m = Math.sqrt(-2 * Math.log(u)) * 0.02;
      f[i] = m * Math.cos(2 * Math.PI * v);
      f[i + 1] = m * Math.sin(2 * Math.PI * v);
    }
    await fs14.writeFile(path16.join(dir, `model-${String(s).padStart(5, "0")}-of-${String(shards).padStart(5, "0")}.safetensors`), Buffer.from(f.buffer));
  }
}
async function createPlatform(root, o = {}) {
  const seed = o.seed ?? 42;
  const r = rng(seed);
  await fs14.mkdir(root, { recursive: true });
  addMemories(path16.join(root, "memory.db"), o.memories ?? 5e3, seed);
  const graph = path16.join(root, "graph");
  await fs14.mkdir(graph, { recursive: true });
  const nodes = [];
  const edges = [];
  for (let i = 0; i < 2e4; i++) nodes.push(JSON.stringify({ id: `c${i}`, label: WORDS[i % WORDS.length], weight: r() }));
  for (let i = 0; i < 6e4; i++) edges.push(JSON.stringify({ from: `c${Math.floor(r() * 2e4)}`, to: `c${Math.floor(r() * 2e4)}`, rel: WORDS[Math.floor(r() * 5)] }));
  await fs14.writeFile(path16.join(graph, "nodes.jsonl"), `${nodes.join("\n")}
`);
  await fs14.writeFile(path16.join(graph, "edges.jsonl"), `${edges.join("\n")}
`);
  await writeWeights(path16.join(root, "weights"), o.weightsMb ?? 256, seed + 1);
  await fs14.writeFile(path16.join(root, "weights", "checkpoint.json"), JSON.stringify({ step: 1e3, lr: 3e-4 }, null, 2));
  const cfg = path16.join(root, "config");
  await fs14.mkdir(path16.join(cfg, "profiles"), { recursive: true });
  await fs14.writeFile(path16.join(cfg, "platform.yaml"), "memory:\n  tiers: [working, episodic, semantic]\n  consolidation: nightly\n");
  await fs14.writeFile(path16.join(cfg, "profiles", "v1.yaml"), "temperature: 0.7\n");
  await fs14.writeFile(path16.join(cfg, "profiles", "v2.yaml"), "temperature: 0.5\n");
  await fs14.writeFile(path16.join(cfg, "secrets.env"), "API_TOKEN=demo-not-a-secret\n", { mode: 384 });
  await fs14.symlink("profiles/v2.yaml", path16.join(cfg, "active.yaml"));
  const logs = path16.join(root, "logs");
  await fs14.mkdir(logs, { recursive: true });
  for (let d = 1; d <= 3; d++) {
    const lines3 = [];
    for (let i = 0; i < 3e4; i++) lines3.push(`2026-11-0${d}T${String(i % 24).padStart(2, "0")}:00:00Z INFO agent recalled ${sentence(r, 6)}`);
    await fs14.writeFile(path16.join(logs, `agent-2026-11-0${d}.log`), `${lines3.join("\n")}
`);
  }
}
async function changePlatform(root, seed = 7) {
  addMemories(path16.join(root, "memory.db"), 500, seed);
  const shard = (await fs14.readdir(path16.join(root, "weights"))).filter((f) => f.endsWith(".safetensors")).sort()[0];
  const fh = await fs14.open(path16.join(root, "weights", shard), "r+");
  const r = rng(seed);
  const patch = new Float32Array(256 * 1024);
  for (let i = 0; i < patch.length; i++) patch[i] = (r() - 0.5) * 0.04;
  await fh.write(Buffer.from(patch.buffer), 0, patch.byteLength, 8 * 1024 * 1024);
  await fh.close();
  await fs14.writeFile(path16.join(root, "weights", "checkpoint.json"), JSON.stringify({ step: 2e3, lr: 1e-4 }, null, 2));
  await fs14.appendFile(path16.join(root, "logs", "agent-2026-11-03.log"), "fine-tune finished\n");
  await fs14.writeFile(path16.join(root, "logs", "agent-2026-11-04.log"), `${Array.from({ length: 5e3 }, (_, i) => `2026-11-04 INFO step ${i}`).join("\n")}
`);
}
async function fingerprint(root) {
  const files = {};
  let tables;
  const walk2 = async (rel) => {
    for (const name of (await fs14.readdir(path16.join(root, rel))).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const abs = path16.join(root, r);
      const st = await fs14.lstat(abs);
      if (st.isDirectory()) {
        await walk2(r);
        continue;
      }
      if (st.isSymbolicLink()) {
        files[r] = { link: await fs14.readlink(abs), mode: 0, size: 0 };
        continue;
      }
      if (name.endsWith(".db")) {
        const db = new DatabaseSync2(abs, { readOnly: true });
        tables = tableFigures(db);
        db.close();
        files[r] = { mode: st.mode & 511, size: -1 };
        continue;
      }
      const h = createHash10("sha256");
      for await (const b of (await fs14.open(abs)).createReadStream()) h.update(b);
      files[r] = { sha256: h.digest("hex"), mode: st.mode & 511, size: st.size };
    }
  };
  await walk2("");
  return { files, tables };
}
function diffFingerprints(want, got2) {
  const out = [];
  for (const [k, v] of Object.entries(want.files)) {
    const g = got2.files[k];
    if (!g) out.push(`${k}: missing`);
    else if (v.sha256 !== g.sha256) out.push(`${k}: content differs`);
    else if (v.link !== g.link) out.push(`${k}: link target differs`);
    else if (v.mode !== g.mode && !v.link) out.push(`${k}: mode ${g.mode.toString(8)} != ${v.mode.toString(8)}`);
  }
  for (const k of Object.keys(got2.files)) if (!want.files[k]) out.push(`${k}: unexpected`);
  if (JSON.stringify(want.tables) !== JSON.stringify(got2.tables)) out.push("database tables differ");
  return out;
}
var WORDS;
var init_platform = __esm({
  "local/platform.ts"() {
    "use strict";
    init_sqlite();
    WORDS = "memory recall concept agent embedding graph episode user preference task tool plan goal context summary fact belief event session model".split(" ");
  }
});

// local/demo.ts
var demo_exports = {};
__export(demo_exports, {
  COMPONENT_DIRS: () => COMPONENT_DIRS,
  demoConfig: () => demoConfig,
  runDemo: () => runDemo
});
import { promises as fs15 } from "node:fs";
import path17 from "node:path";
import { stringify } from "yaml";
function demoConfig() {
  return {
    vault: { primary: "file://vault-primary", secondary: "file://vault-dr" },
    encryption: { key: "memvault.key" },
    alerts: [{ type: "stdout" }, { type: "file", path: "alerts.jsonl" }],
    components: {
      "memory-db": { kind: "sqlite", path: "platform/memory.db", critical: true, schedule: "0 2 * * *", rpo: "26h", retention: { days: 30, keepLast: 7 } },
      "concept-graph": { kind: "files", path: "platform/graph", critical: true, schedule: "15 2 * * *", rpo: "26h", retention: { days: 14 } },
      "model-weights": { kind: "files", path: "platform/weights", schedule: "0 3 * * 0", rpo: "8d", retention: { days: 180, keepWeekly: 26 } },
      config: { kind: "files", path: "platform/config", critical: true, schedule: "30 2 * * *", rpo: "26h", retention: { days: 90 } },
      logs: { kind: "files", path: "platform/logs", schedule: "45 2 * * *", rpo: "26h", retention: { days: 90 } }
    }
  };
}
async function snapshotPlatform(root) {
  const out = {};
  for (const [c, d] of Object.entries(COMPONENT_DIRS)) out[c] = await fingerprint(path17.join(root, d));
  const db = await fingerprint(root).then((f) => ({ files: {}, tables: f.tables }));
  out["memory-db"] = db;
  return out;
}
async function prove(restoreRoot, want) {
  const problems = [];
  for (const [c, f] of Object.entries(want)) {
    const got2 = await fingerprint(path17.join(restoreRoot, c));
    if (c === "memory-db") {
      if (JSON.stringify(got2.tables) !== JSON.stringify(f.tables)) problems.push("memory-db: table contents differ");
      continue;
    }
    problems.push(...diffFingerprints(f, got2).map((p) => `${c}: ${p}`));
  }
  return problems;
}
async function runDemo(o = {}) {
  const dir = path17.resolve(o.dir ?? ".memvault-demo");
  const say = o.log ?? ((s) => {
    if (!o.json) process.stdout.write(`${s}
`);
  });
  await fs15.rm(dir, { recursive: true, force: true });
  await fs15.mkdir(dir, { recursive: true });
  const cfgFile = path17.join(dir, "memvault.yaml");
  await fs15.writeFile(cfgFile, stringify(demoConfig()));
  const cfg = loadConfigFile(cfgFile, kindSchemas);
  const platform = path17.join(dir, "platform");
  const steps = [];
  const timed = async (fn) => {
    const t = Date.now();
    const v = await fn();
    return { v, ms: Date.now() - t };
  };
  say(`memvault demo in ${dir}`);
  const gen = await timed(() => createPlatform(platform, { weightsMb: o.weightsMb ?? 256 }));
  steps.push({ step: "create platform", durationMs: gen.ms, ok: true });
  await initVaults(cfg);
  const v1 = await snapshotPlatform(platform);
  const alertsFile = path17.join(dir, "alerts.jsonl");
  const sm = async (name, input) => {
    const r = await runLocal(name, input, { cfg, deps: { alerts: new FileAlertSink(alertsFile) } });
    if (r.status !== "SUCCEEDED") throw new Error(`${name} ${r.status}: ${r.error}: ${r.cause}`);
    return r.output;
  };
  const sum = (r, k) => r.components.reduce((a, x) => a + x[k], 0);
  const b1 = await timed(() => sm("backup-run", { type: "full", replicate: false }));
  steps.push({ step: "full backup", bytesRead: sum(b1.v, "bytesRead"), bytesStored: sum(b1.v, "bytesStored"), newBytes: sum(b1.v, "newBytes"), durationMs: b1.ms, ok: b1.v.ok, proof: `backup-run ${b1.v.components.length} components` });
  const firstBackupTime = new Date(Math.max(...b1.v.components.map((x) => Date.parse(x.startedAt))));
  await new Promise((r) => setTimeout(r, 20));
  const ch = await timed(() => changePlatform(platform));
  steps.push({ step: "add memories, change weights", durationMs: ch.ms, ok: true });
  const v2 = await snapshotPlatform(platform);
  const b2 = await timed(() => sm("backup-run", { type: "incremental" }));
  const rep = b2.v.replication;
  steps.push({ step: "incremental backup", bytesRead: sum(b2.v, "bytesRead"), bytesStored: sum(b2.v, "bytesStored"), newBytes: sum(b2.v, "newBytes"), durationMs: b2.ms - rep.durationMs, ok: b2.v.ok, proof: "backup-run" });
  steps.push({ step: "replicate to DR vault", bytesStored: rep.bytesCopied, durationMs: rep.durationMs, ok: true, proof: `backup-run: ${rep.chunksCopied} chunks, ${rep.manifestsCopied} manifests` });
  const drilled = Object.keys(cfg.components).filter((c) => c !== "model-weights");
  const ver = await timed(() => sm("verify-drill", { from: "secondary", readData: "all", components: drilled }));
  steps.push({
    step: "verify DR vault (all data)",
    durationMs: ver.ms,
    ok: ver.v.ok,
    proof: ver.v.ok ? `verify-drill: ${ver.v.chunksRead} chunks read, all intact; ${ver.v.restores.length} components restored in a sandbox and validated` : ver.v.cause
  });
  const dis = await timed(() => fs15.rm(platform, { recursive: true, force: true }));
  steps.push({ step: "disaster: platform data deleted", durationMs: dis.ms, ok: true });
  const restoreLatest = path17.join(dir, "restore-latest");
  const r1 = await timed(() => sm("restore", { mode: "latest", from: "secondary", target: { dir: restoreLatest } }));
  const p1 = await prove(restoreLatest, v2);
  const invalid = (r) => r.components.filter((c) => !c.validation.ok).map((c) => `${c.component} invalid`);
  steps.push({
    step: "restore latest from DR vault",
    bytesRead: r1.v.components.reduce((a, c) => a + c.bytes, 0),
    durationMs: r1.ms,
    recoveryTimeMs: r1.v.recoveryTimeMs,
    ok: r1.v.ok && p1.length === 0,
    proof: p1.length === 0 && r1.v.ok ? "restore: byte-identical, integrity_check ok" : [...p1, ...invalid(r1.v)].join("; ")
  });
  const restorePit = path17.join(dir, "restore-point-in-time");
  const r2 = await timed(() => sm("restore", { mode: "point-in-time", at: firstBackupTime.toISOString(), target: { dir: restorePit } }));
  const p2 = await prove(restorePit, v1);
  steps.push({
    step: `restore at ${firstBackupTime.toISOString()}`,
    bytesRead: r2.v.components.reduce((a, c) => a + c.bytes, 0),
    durationMs: r2.ms,
    recoveryTimeMs: r2.v.recoveryTimeMs,
    ok: r2.v.ok && p2.length === 0,
    proof: p2.length === 0 && r2.v.ok ? `restore: first backup state, byte-identical (skew ${ms(r2.v.skewMs)})` : p2.join("; ")
  });
  const ret = await timed(() => sm("retention", {}));
  steps.push({
    step: "retention (both vaults)",
    durationMs: ret.ms,
    ok: true,
    proof: ret.v.vaults.map((r) => `${r.forgotten.length} forgotten, ${r.kept} kept, ${r.chunksPruned} chunks pruned`).join(" | ")
  });
  const rpo = await timed(() => sm("rpo-watch", {}));
  steps.push({ step: "rpo watch", durationMs: rpo.ms, ok: !rpo.v.breached, proof: `${rpo.v.components.length} components within their rpo` });
  const ok = steps.every((s) => s.ok);
  say("");
  say(table(
    ["step", "read", "stored", "new", "duration", "recovery time", "result"],
    steps.map((s) => [s.step, s.bytesRead !== void 0 ? bytes(s.bytesRead) : "", s.bytesStored !== void 0 ? bytes(s.bytesStored) : "", s.newBytes !== void 0 ? bytes(s.newBytes) : "", ms(s.durationMs), s.recoveryTimeMs !== void 0 ? ms(s.recoveryTimeMs) : "", `${s.ok ? "ok" : "FAILED"}${s.proof ? `: ${s.proof}` : ""}`])
  ));
  say("");
  say(ok ? "demo drill passed: every proof held" : "demo drill FAILED");
  return { ok, dir, steps };
}
var COMPONENT_DIRS;
var init_demo = __esm({
  "local/demo.ts"() {
    "use strict";
    init_platform();
    init_config();
    init_registry();
    init_ops();
    init_local2();
    init_runtime();
    init_format();
    COMPONENT_DIRS = {
      "concept-graph": "graph",
      "model-weights": "weights",
      config: "config",
      logs: "logs"
    };
  }
});

// functions/handlers/plan-backup.ts
import { z as z15 } from "zod";
function scheduleGroups(cfg) {
  const groups = /* @__PURE__ */ new Map();
  for (const [name, c] of Object.entries(cfg.components)) {
    if (!c.schedule) continue;
    const key = `${c.schedule}|${c.timezone}`;
    let g = groups.get(key);
    if (!g) {
      g = { cron: c.schedule, timezone: c.timezone, components: [], input: { schedule: c.schedule, timezone: c.timezone } };
      groups.set(key, g);
    }
    g.components.push(name);
  }
  return [...groups.values()];
}
function makeHandler(deps) {
  return async (event) => {
    const e = parseEvent(planBackupInput, event, "backup-run input", EXAMPLE);
    const log = invocationLog(deps, "plan-backup", e);
    const { cfg } = deps;
    const r = e.request;
    let picked;
    if (r.schedule !== void 0) {
      if (r.type !== void 0 || r.components !== void 0) throw new UsageError(`backup-run input: give either "schedule" or "type"/"components", not both; e.g. ${EXAMPLE}`);
      const names = Object.entries(cfg.components).filter(([, c]) => c.schedule?.trim() === r.schedule.trim() && (r.timezone === void 0 || c.timezone === r.timezone)).map(([n]) => n);
      if (names.length === 0) {
        const known = [...new Set(Object.values(cfg.components).map((c) => c.schedule).filter(Boolean))];
        throw new UsageError(`backup-run input: schedule: no component has schedule "${r.schedule}"${r.timezone ? ` in ${r.timezone}` : ""}; configured schedules: ${known.map((s) => `"${s}"`).join(", ") || "(none)"}`);
      }
      picked = names.map((n) => ({ component: n, type: cfg.components[n].scheduleType }));
    } else {
      const type = r.type ?? "incremental";
      picked = selectComponents(cfg, type, r.components).map((n) => ({ component: n, type }));
    }
    const now = deps.clock.now();
    const plan = {
      runId: `run-${now.toISOString().replace(/[-:.]/g, "")}`,
      replicate: r.replicate && cfg.vault.secondary !== void 0,
      items: picked.map(({ component, type }) => {
        const kind = cfg.components[component].kind;
        return { component, kind, mode: deps.driverFor(kind).mode, type };
      })
    };
    log.info("backup run planned", { runId: plan.runId, components: plan.items.map((i) => i.component) });
    return json(plan);
  };
}
var EXAMPLE, planBackupInput, handler;
var init_plan_backup = __esm({
  "functions/handlers/plan-backup.ts"() {
    "use strict";
    init_backup();
    init_manifest();
    init_errors();
    init_deps();
    EXAMPLE = '{"type":"incremental","components":["memory-db"]} or {"schedule":"0 2 * * *"}';
    planBackupInput = z15.object({
      request: z15.object({
        schedule: z15.string().optional(),
        timezone: z15.string().optional(),
        type: z15.enum(BACKUP_TYPES).optional(),
        components: z15.array(z15.string()).optional(),
        replicate: z15.boolean().default(true)
      }).strict(),
      ...traced
    });
    handler = lazyHandler(makeHandler);
  }
});

// local/scheduler.ts
var scheduler_exports = {};
__export(scheduler_exports, {
  dueJobs: () => dueJobs,
  runScheduler: () => runScheduler,
  scheduledJobs: () => scheduledJobs
});
function scheduledJobs(cfg) {
  const jobs = scheduleGroups(cfg).map((g) => ({
    id: `backup-run ${g.cron} ${g.timezone} (${g.components.join(", ")})`,
    stateMachine: "backup-run",
    cron: g.cron,
    timezone: g.timezone,
    input: g.input
  }));
  jobs.push({ id: "verify-drill", stateMachine: "verify-drill", cron: cfg.jobs.verifyDrill, timezone: "UTC", input: {} });
  jobs.push({ id: "retention", stateMachine: "retention", cron: cfg.jobs.retention, timezone: "UTC", input: {} });
  jobs.push({ id: "rpo-watch", stateMachine: "rpo-watch", cron: cfg.jobs.rpoWatch, timezone: "UTC", input: {} });
  return jobs;
}
function dueJobs(jobs, from, to) {
  return jobs.filter((j) => nextRun(j.cron, from, j.timezone).getTime() <= to.getTime());
}
async function runScheduler(o) {
  const now = o.now ?? (() => /* @__PURE__ */ new Date());
  const sleep = o.sleep ?? defaultSleep3;
  const running = /* @__PURE__ */ new Map();
  let last = now();
  o.log({ msg: "scheduler started", jobs: o.jobs.map((j) => ({ id: j.id, cron: j.cron, timezone: j.timezone, next: nextRun(j.cron, last, j.timezone).toISOString() })) });
  while (!o.signal?.aborted) {
    const next = Math.min(...o.jobs.map((j) => nextRun(j.cron, last, j.timezone).getTime()));
    const wait = next - now().getTime();
    if (wait > 0) await sleep(Math.min(wait, 6e4), o.signal);
    if (o.signal?.aborted) break;
    const t = now();
    if (t.getTime() < next) continue;
    for (const job of dueJobs(o.jobs, last, t)) {
      if (running.has(job.id)) {
        o.log({ msg: "skipped: previous execution still running", job: job.id, stateMachine: job.stateMachine });
        continue;
      }
      o.log({ msg: "execution started", job: job.id, stateMachine: job.stateMachine, input: job.input });
      const p = o.start(job).then(
        (r) => o.log({ msg: "execution finished", job: job.id, stateMachine: job.stateMachine, ...r }),
        (err) => o.log({ msg: "execution could not start", job: job.id, stateMachine: job.stateMachine, error: err.message })
      ).finally(() => running.delete(job.id));
      running.set(job.id, p);
    }
    last = t;
  }
  await Promise.all(running.values());
  o.log({ msg: "scheduler stopped" });
}
var defaultSleep3;
var init_scheduler = __esm({
  "local/scheduler.ts"() {
    "use strict";
    init_cron();
    init_plan_backup();
    defaultSleep3 = (ms2, signal) => new Promise((resolve) => {
      const t = setTimeout(resolve, ms2);
      signal?.addEventListener("abort", () => {
        clearTimeout(t);
        resolve();
      }, { once: true });
    });
  }
});

// cli/main.ts
init_config();
init_registry();
init_errors();
init_manifest();
init_vault();
import { parseArgs } from "node:util";

// functions/core/restore.ts
init_vault();
init_config();
init_errors();
import { promises as fs10 } from "node:fs";
import path9 from "node:path";
function describe(refs) {
  return refs.slice(0, 10).map((r) => `${r.id} (${r.component}, ${r.time.toISOString()})`).join(", ") + (refs.length > 10 ? `, ... ${refs.length - 10} more` : "");
}
async function planRestore(storage, sel, components, configured) {
  const catalog = await listCatalog(storage);
  const present = [...new Set(catalog.map((r) => r.component))];
  const known = /* @__PURE__ */ new Set([...configured, ...present]);
  for (const c of components ?? []) {
    if (!known.has(c)) throw new UsageError(`unknown component "${c}"; components: ${[...known].sort().join(", ") || "(none)"}`);
  }
  if (catalog.length === 0) throw new NotFoundError(`${storage.url} holds no backups yet`);
  const items = [];
  if (sel.mode === "backup") {
    const ref = catalog.find((r) => r.id === sel.backupId);
    if (!ref) throw new NotFoundError(`no backup with id "${sel.backupId}" in ${storage.url}; newest backups: ${describe(catalog)}`);
    if (components && components.length > 0 && !components.includes(ref.component)) {
      throw new UsageError(`backup ${sel.backupId} is of component ${ref.component}, not ${components.join(", ")}`);
    }
    return { items: [{ component: ref.component, ref }], skewMs: 0 };
  }
  const chosen = components && components.length > 0 ? components : present.sort();
  for (const c of chosen) {
    const refs = catalog.filter((r) => r.component === c);
    if (refs.length === 0) throw new NotFoundError(`component ${c} has no backups in ${storage.url}; components with backups: ${present.join(", ")}`);
    if (sel.mode === "latest") {
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
  return { items, skewMs: times.length ? Math.max(...times) - Math.min(...times) : 0 };
}
async function isNonEmptyDir(p) {
  try {
    return (await fs10.readdir(p)).length > 0;
  } catch (err) {
    if (err.code === "ENOENT") return false;
    if (err.code === "ENOTDIR") throw new UsageError(`restore target ${p} is not a directory`);
    throw err;
  }
}
async function restoreItem(deps, item, targetRoot, options) {
  const t0 = Date.now();
  const manifest = await deps.vault.readManifest(item.ref);
  const settings = deps.cfg.components[item.component] ?? { kind: manifest.kind, critical: false, timezone: "UTC", scheduleType: "incremental", retention: {} };
  const driver = deps.driverFor(manifest.kind);
  const dir = path9.join(targetRoot, item.component);
  const resolve = (p) => resolvePath(deps.cfg, p);
  deps.log.info("restore started", { component: item.component, backupId: manifest.id, target: dir });
  const r = await driver.restore({ component: item.component, settings, manifest, vault: deps.vault, target: { dir, options }, resolve, log: deps.log });
  const validation = await driver.validate({ component: item.component, settings, manifest, target: { dir, options }, location: r.location, resolve, log: deps.log });
  const durationMs = Date.now() - t0;
  deps.log.info("restore finished", { component: item.component, backupId: manifest.id, ok: validation.ok, durationMs });
  return {
    component: item.component,
    backupId: manifest.id,
    backupTime: manifest.startedAt,
    location: r.location,
    bytes: r.bytes,
    entries: r.entries,
    validation,
    durationMs
  };
}
function parseTargetOptions(args, components) {
  const out = {};
  for (const arg of args) {
    const m = /^(?:([a-z0-9][a-z0-9_-]*):)?([A-Za-z][A-Za-z0-9_.-]*)=(.*)$/s.exec(arg);
    if (!m) throw new UsageError(`--target-option: expected [COMPONENT:]KEY=VALUE, e.g. memory-db:url=postgres://localhost/restored, got "${arg}"`);
    const [, component, key, raw] = m;
    if (component && !components.includes(component)) {
      throw new UsageError(`--target-option ${arg}: "${component}" is not restored here; restored components: ${components.join(", ")}`);
    }
    let value = raw;
    try {
      value = JSON.parse(raw);
    } catch {
    }
    for (const c of component ? [component] : components) (out[c] ??= {})[key] = value;
  }
  return out;
}
async function restorePlan(deps, plan, target, force, options = {}) {
  const t0 = Date.now();
  const targetRoot = path9.resolve(target);
  assertSafeTarget(targetRoot, deps.cfg);
  for (const item of plan.items) assertSafeTarget(path9.join(targetRoot, item.component), deps.cfg);
  if (!force && await isNonEmptyDir(targetRoot)) {
    throw new UsageError(`restore target ${targetRoot} is not empty; choose an empty directory or pass --force to write into it`);
  }
  const results = [];
  for (const item of plan.items) {
    const o = options[item.component];
    results.push(await restoreItem(deps, item, targetRoot, force ? { force: true, ...o } : o));
  }
  return {
    target: targetRoot,
    from: deps.vault.storage.url,
    skewMs: plan.skewMs,
    components: results,
    recoveryTimeMs: Date.now() - t0,
    ok: results.every((r) => r.validation.ok)
  };
}
function parseAt(s) {
  const d = new Date(s);
  if (Number.isNaN(d.getTime()) || !/^\d{4}-\d{2}-\d{2}/.test(s)) {
    throw new UsageError(`--at: expected an ISO time like 2026-01-01T14:30:00Z, got "${s}"`);
  }
  return d;
}
function assertSafeTarget(target, cfg) {
  for (const [name, c] of Object.entries(cfg.components)) {
    const src = typeof c.path === "string" ? resolvePath(cfg, c.path) : void 0;
    if (src && path9.resolve(target) === src) throw new PermanentError(`restore target ${target} is the live data of ${name}; restore elsewhere`);
  }
}

// functions/core/verify.ts
init_vault();
init_errors();
function inSubset(id, percent, cycleIndex = 0) {
  const x = parseInt(id.slice(0, 8), 16) / 4294967296;
  const w = percent / 100;
  const start = cycleIndex * w % 1;
  const end = start + w;
  return end <= 1 ? x >= start && x < end : x >= start || x < end - 1;
}
async function verifyVault(vault, o = {}) {
  const refs = await listCatalog(vault.storage);
  const users = /* @__PURE__ */ new Map();
  const damagedManifests = [];
  for (const ref of refs) {
    let m;
    try {
      m = await vault.readManifest(ref);
    } catch (err) {
      damagedManifests.push({ key: ref.key, error: errorMessage(err) });
      continue;
    }
    for (const e of m.entries) {
      for (const c of e.chunks ?? []) {
        const list = users.get(c.id);
        const name = `${m.component}/${m.id}`;
        if (!list) users.set(c.id, [name]);
        else if (list[list.length - 1] !== name) list.push(name);
      }
    }
  }
  const present = await vault.listChunks();
  const problems = [];
  for (const [id, backups] of users) {
    if (!present.has(id)) problems.push({ chunk: id, problem: "missing", detail: `chunks/${id.slice(0, 2)}/${id} is missing`, backups });
  }
  let selected = [];
  const mode = o.readData ?? "none";
  if (mode === "all") selected = [...users.keys()].filter((id) => present.has(id));
  else if (mode !== "none") selected = [...users.keys()].filter((id) => present.has(id) && inSubset(id, mode.percent, mode.cycleIndex));
  let done = 0;
  const queue = [...selected];
  const worker = async () => {
    for (let id = queue.pop(); id !== void 0; id = queue.pop()) {
      try {
        await vault.getChunk(id);
      } catch (err) {
        if (!(err instanceof IntegrityError)) throw err;
        problems.push({ chunk: id, problem: "corrupt", detail: err.message, backups: users.get(id) });
      }
      o.onProgress?.(++done, selected.length);
    }
  };
  await Promise.all(Array.from({ length: o.concurrency ?? 4 }, worker));
  const damagedBackups = [...new Set(problems.flatMap((p) => p.backups).concat(damagedManifests.map((d) => d.key)))].sort();
  let unreferenced = 0;
  for (const id of present.keys()) if (!users.has(id)) unreferenced++;
  return {
    vault: vault.storage.url,
    ok: problems.length === 0 && damagedManifests.length === 0,
    manifests: refs.length,
    damagedManifests,
    chunksReferenced: users.size,
    chunksInVault: present.size,
    chunksRead: selected.length,
    unreferencedChunks: unreferenced,
    problems,
    damagedBackups
  };
}

// cli/main.ts
init_services();
init_ops();
init_logger();
init_format();
var USAGE = `memvault: backup and recovery for AI memory platforms

usage:
  memvault init                                   create the vault(s) and the key
  memvault config validate
  memvault backup [--type full|incremental|critical] [--component NAME]...
  memvault list [--component NAME]                backups in the catalog, newest first
  memvault restore (--latest | --backup ID | --at ISO-TIME) [--component NAME]...
                   --target DIR [--from primary|secondary] [--force]
                   [--target-option [COMPONENT:]KEY=VALUE]...   e.g. memory-db:url=postgres://host/db
  memvault verify [--read-data | --read-data-subset PERCENT] [--from primary|secondary]
  memvault replicate                              copy what the secondary vault lacks
  memvault retention [--dry-run]                  forget by policy, then prune
  memvault demo [--dir DIR] [--weights-mb N]      the end-to-end drill on a generated platform
  memvault run NAME [--input JSON]                run a state machine once (backup-run, restore,
                                                  verify-drill, retention, rpo-watch), locally
  memvault run NAME --remote [--input JSON]       ... or the deployed one on AWS (Step Functions),
                   (--state-machine-arn ARN | --region R --account ID [--prefix memvault])
  memvault restore ... --remote (--state-machine-arn ARN | --region R --account ID)
                                                  restore through the deployed restore state machine
  memvault schedule                               foreground daemon: start the state machines on
                                                  their cron schedules

every command: --config FILE (or $MEMVAULT_CONFIG, or ./memvault.yaml), --json
exit codes: 0 success, 1 failure, 2 bad usage or bad config`;
function output(json2) {
  return {
    json: json2,
    print(human, data) {
      process.stdout.write(json2 ? `${JSON.stringify(data, null, 2)}
` : `${human}
`);
    }
  };
}
function loadConfig(file) {
  return loadConfigFile(locateConfig(file), kindSchemas);
}
var common = {
  config: { type: "string" },
  json: { type: "boolean", default: false },
  help: { type: "boolean", short: "h", default: false }
};
function parse(args, options) {
  try {
    return parseArgs({ args, options: { ...common, ...options }, allowPositionals: false, strict: true }).values;
  } catch (err) {
    throw new UsageError(`${errorMessage(err)}

${USAGE}`);
  }
}
function side2(v) {
  if (v === void 0 || v === "primary") return "primary";
  if (v === "secondary") return "secondary";
  throw new UsageError(`--from: expected primary or secondary, got "${String(v)}"`);
}
var remoteOptions = {
  remote: { type: "boolean", default: false },
  "state-machine-arn": { type: "string" },
  region: { type: "string" },
  account: { type: "string" },
  prefix: { type: "string" }
};
async function runStateMachineCommand(name, input, a) {
  const printEvent = (e) => {
    if (e.type === "entered") return;
    process.stderr.write(`${e.time.toISOString()}  ${e.type === "failed" ? "FAILED" : "done  "}  ${e.state}${e.type === "failed" ? `: ${e.detail}` : ""}
`);
  };
  let r;
  if (a.remote) {
    const { SFNClient: SFNClient2 } = await import("@aws-sdk/client-sfn");
    const { runRemote: runRemote2, stateMachineArnFor: stateMachineArnFor2 } = await Promise.resolve().then(() => (init_sfn(), sfn_exports));
    const region3 = a.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION;
    let arn = a["state-machine-arn"];
    if (!arn) {
      if (!region3 || !a.account) throw new UsageError("--remote: give --state-machine-arn ARN, or --region REGION (or $AWS_REGION) and --account ID");
      arn = stateMachineArnFor2(name, { region: region3, account: a.account, prefix: a.prefix });
    }
    r = await runRemote2({ client: new SFNClient2(region3 ? { region: region3 } : {}), stateMachineArn: arn, input, onEvent: a.json ? void 0 : printEvent });
  } else {
    const cfg = loadConfig(a.config);
    const { runLocal: runLocal2 } = await Promise.resolve().then(() => (init_runtime(), runtime_exports));
    r = await runLocal2(name, input, { cfg, waitMs: 1e3, retryMs: 1e3, onEvent: a.json ? void 0 : printEvent });
  }
  const human = r.status === "SUCCEEDED" ? `${name} succeeded (${ms(r.durationMs)}): ${r.executionArn}
${JSON.stringify(r.output, null, 2)}` : `${name} ${r.status}: ${r.error}: ${r.cause}
${r.executionArn}`;
  output(a.json).print(human, { status: r.status, executionArn: r.executionArn, output: r.output, error: r.error, cause: r.cause, durationMs: r.durationMs });
  return r.status === "SUCCEEDED" ? 0 : 1;
}
function remoteTargetOptions(args, components) {
  for (const arg of args) {
    if (components.length === 0 && !/^[a-z0-9][a-z0-9_-]*:/.test(arg)) {
      throw new UsageError(`--target-option ${arg}: with --remote, name the component (COMPONENT:KEY=VALUE) or pass --component`);
    }
  }
  const named = args.map((x) => /^([a-z0-9][a-z0-9_-]*):/.exec(x)?.[1]).filter((x) => !!x);
  return parseTargetOptions(args, [.../* @__PURE__ */ new Set([...components, ...named])]);
}
async function main(argv) {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === "--help" || cmd === "-h" || cmd === "help") {
    process.stdout.write(`${USAGE}
`);
    return cmd ? 0 : 2;
  }
  const log = jsonLogger({ command: cmd });
  switch (cmd) {
    case "init": {
      const a = parse(rest, {});
      const cfg = loadConfig(a.config);
      const r = await initVaults(cfg);
      output(a.json).print([
        `key: ${r.key.type} ${r.key.keyId}${r.key.file ? ` (${r.key.file})` : ""}${r.key.created ? " created" : ""}`,
        `primary vault: ${r.primary.url} (vault ${r.primary.vaultId}) ${r.primary.created ? "created" : "already initialized"}`,
        ...r.secondary ? [`secondary vault: ${r.secondary.url} ${r.secondary.created ? "created as replica" : "already initialized"}`] : []
      ].join("\n"), r);
      return 0;
    }
    case "config": {
      const [sub, ...more] = rest;
      if (sub !== "validate") throw new UsageError(`unknown command "config ${sub ?? ""}"; did you mean "config validate"?`);
      const a = parse(more, {});
      try {
        const cfg = loadConfig(a.config);
        output(a.json).print(
          `${cfg.file}: valid, ${Object.keys(cfg.components).length} components (${Object.entries(cfg.components).map(([n, c]) => `${n}: ${c.kind}`).join(", ")})`,
          { ok: true, file: cfg.file, components: Object.keys(cfg.components) }
        );
        return 0;
      } catch (err) {
        if (err instanceof ConfigError) {
          if (a.json) output(true).print("", { ok: false, problems: err.problems });
          else process.stderr.write(`invalid configuration:
${err.problems.map((p) => `  ${p}`).join("\n")}
`);
          return 2;
        }
        throw err;
      }
    }
    case "backup": {
      const a = parse(rest, { type: { type: "string", default: "incremental" }, component: { type: "string", multiple: true } });
      if (!BACKUP_TYPES.includes(a.type)) throw new UsageError(`--type: expected full, incremental or critical, got "${a.type}"`);
      const cfg = loadConfig(a.config);
      const p = progress(!a.json && process.stderr.isTTY === true);
      const r = await runBackups(cfg, {
        type: a.type,
        components: a.component,
        alerts: alertSink(cfg, { json: a.json }),
        log,
        onProgress: (c, s) => p.update(`${c}: read ${bytes(s.bytesRead)}, new ${bytes(s.newBytes)}, stored ${bytes(s.bytesStored)}`)
      });
      p.done();
      const rows = r.outcomes.map((o) => [o.component, o.type, o.backupId, bytes(o.stats.bytesTotal), bytes(o.stats.bytesRead), bytes(o.stats.newBytes), bytes(o.stats.bytesStored), ms(o.stats.durationMs)]);
      const human = [
        table(["component", "type", "backup id", "size", "read", "new", "stored", "time"], rows),
        ...r.outcomes.filter((o) => o.type !== "full" && o.parent).map((o) => `${o.component}: changed since ${o.parent}: ${bytes(o.stats.newBytes)} new of ${bytes(o.stats.bytesTotal)} (${bytes(o.stats.bytesUnchanged)} unchanged files not re-read)`),
        ...r.failures.map((f) => `FAILED ${f.component}: ${f.error}`)
      ].join("\n");
      output(a.json).print(human, r);
      return r.ok ? 0 : 1;
    }
    case "list": {
      const a = parse(rest, { component: { type: "string" }, from: { type: "string" } });
      const cfg = loadConfig(a.config);
      const s = side2(a.from);
      const storage = openStorage(cfg, location(cfg, s));
      if (a.component && !cfg.components[a.component]) {
        const present = [...new Set((await listCatalog(storage)).map((r) => r.component))];
        if (!present.includes(a.component)) throw new UsageError(`unknown component "${a.component}"; configured: ${Object.keys(cfg.components).join(", ")}`);
      }
      const refs = await listCatalog(storage, a.component);
      output(a.json).print(
        refs.length ? table(["time", "component", "type", "backup id"], refs.map((r) => [r.time.toISOString(), r.component, r.type, r.id])) : `no backups in ${storage.url}`,
        refs.map((r) => ({ id: r.id, component: r.component, type: r.type, time: r.time.toISOString() }))
      );
      return 0;
    }
    case "restore": {
      const a = parse(rest, {
        latest: { type: "boolean", default: false },
        backup: { type: "string" },
        at: { type: "string" },
        component: { type: "string", multiple: true },
        target: { type: "string" },
        from: { type: "string" },
        force: { type: "boolean", default: false },
        "target-option": { type: "string", multiple: true },
        ...remoteOptions
      });
      if (a.remote) {
        const modes2 = [a.latest, a.backup !== void 0, a.at !== void 0].filter(Boolean).length;
        if (modes2 !== 1) throw new UsageError("restore: give exactly one of --latest, --backup ID, --at ISO-TIME");
        const input = {
          mode: a.latest ? "latest" : a.backup ? "backup" : "point-in-time",
          ...a.backup ? { backupId: a.backup } : {},
          ...a.at ? { at: parseAt(a.at).toISOString() } : {},
          ...a.component ? { components: a.component } : {},
          from: side2(a.from),
          ...a.target || a.force || a["target-option"] ? { target: {
            ...a.target ? { dir: a.target } : {},
            ...a.force ? { force: true } : {},
            ...a["target-option"] ? { options: remoteTargetOptions(a["target-option"], a.component ?? []) } : {}
          } } : {}
        };
        return runStateMachineCommand("restore", input, a);
      }
      const modes = [a.latest, a.backup !== void 0, a.at !== void 0].filter(Boolean).length;
      if (modes !== 1) throw new UsageError("restore: give exactly one of --latest, --backup ID, --at ISO-TIME");
      if (!a.target) throw new UsageError("restore: --target DIR is required (an empty directory, or pass --force)");
      const sel = a.latest ? { mode: "latest" } : a.backup ? { mode: "backup", backupId: a.backup } : { mode: "point-in-time", at: parseAt(a.at) };
      const cfg = loadConfig(a.config);
      const s = side2(a.from);
      const vault = await openVault(cfg, s);
      const plan = await planRestore(vault.storage, sel, a.component, Object.keys(cfg.components));
      let r;
      try {
        const options = parseTargetOptions(a["target-option"] ?? [], plan.items.map((i) => i.component));
        r = await restorePlan({ cfg, vault, driverFor, log }, plan, a.target, a.force, options);
      } catch (err) {
        if (!(err instanceof UsageError)) {
          await alertSink(cfg, { json: a.json }).send({
            severity: "error",
            subject: `restore failed: ${plan.items.map((i) => i.component).join(", ")}`,
            step: "restore",
            cause: errorMessage(err),
            message: errorMessage(err),
            time: (/* @__PURE__ */ new Date()).toISOString()
          });
        }
        throw err;
      }
      const human = [
        table(["component", "backup id", "backup time", "bytes", "valid", "time"], r.components.map((c) => [c.component, c.backupId, c.backupTime, bytes(c.bytes), c.validation.ok ? "yes" : "NO", ms(c.durationMs)])),
        `restored from ${r.from} into ${r.target}; recovery time ${ms(r.recoveryTimeMs)}${plan.items.length > 1 ? `; skew between components ${ms(r.skewMs)}` : ""}`,
        ...r.components.flatMap((c) => c.validation.checks.filter((k) => !k.ok).map((k) => `INVALID ${c.component}: ${k.name}: expected ${JSON.stringify(k.expected)}, got ${JSON.stringify(k.actual)}`))
      ].join("\n");
      output(a.json).print(human, r);
      return r.ok ? 0 : 1;
    }
    case "verify": {
      const a = parse(rest, { "read-data": { type: "boolean", default: false }, "read-data-subset": { type: "string" }, from: { type: "string" } });
      let readData = "none";
      if (a["read-data"]) readData = "all";
      if (a["read-data-subset"] !== void 0) {
        const pct = Number(String(a["read-data-subset"]).replace(/%$/, ""));
        if (!(pct > 0 && pct <= 100)) throw new UsageError(`--read-data-subset: expected a percentage in (0, 100], got "${a["read-data-subset"]}"`);
        readData = { percent: pct, ...{ cycleIndex: Math.floor(Date.now() / 864e5) } };
      }
      const cfg = loadConfig(a.config);
      const vault = await openVault(cfg, side2(a.from));
      const p = progress(!a.json && process.stderr.isTTY === true);
      const r = await verifyVault(vault, { readData, onProgress: (d, t) => p.update(`read ${d}/${t} chunks`) });
      p.done();
      const human = [
        `${r.vault}: ${r.manifests} backups, ${r.chunksReferenced} chunks referenced, ${r.chunksInVault} in the vault, ${r.chunksRead} read, ${r.unreferencedChunks} unreferenced`,
        ...r.damagedManifests.map((d) => `DAMAGED manifest ${d.key}: ${d.error}`),
        ...r.problems.map((p2) => `${p2.problem.toUpperCase()} chunk ${p2.chunk}: ${p2.detail}; needed by ${p2.backups.join(", ")}`),
        r.ok ? "no problems found" : `${r.problems.length + r.damagedManifests.length} problem(s); damaged backups: ${r.damagedBackups.join(", ")}`
      ].join("\n");
      output(a.json).print(human, r);
      if (!r.ok) {
        await alertSink(cfg, { json: a.json }).send({
          severity: "error",
          subject: "vault verification found damage",
          step: "verify",
          message: human,
          time: (/* @__PURE__ */ new Date()).toISOString(),
          details: { damagedBackups: r.damagedBackups }
        });
      }
      return r.ok ? 0 : 1;
    }
    case "replicate": {
      const a = parse(rest, {});
      const cfg = loadConfig(a.config);
      const p = progress(!a.json && process.stderr.isTTY === true);
      const r = await replicateVaults(cfg, (d, t) => p.update(`copied ${d}/${t}`));
      p.done();
      output(a.json).print(`replicated ${r.from} -> ${r.to}: ${r.chunksCopied} chunks, ${r.manifestsCopied} manifests, ${bytes(r.bytesCopied)} copied; ${r.alreadyPresent} objects already there (${ms(r.durationMs)})`, r);
      return 0;
    }
    case "retention": {
      const a = parse(rest, { "dry-run": { type: "boolean", default: false } });
      const cfg = loadConfig(a.config);
      const rs = await retentionRun(cfg, { dryRun: a["dry-run"] });
      const would = a["dry-run"] ? "would be " : "";
      const human = [...rs.vaults.map((r) => [
        `${r.vault}${r.dryRun ? " (dry run: nothing deleted)" : ""}: ${r.forgotten.length} backups ${r.dryRun ? "would be " : ""}forgotten, ${r.kept} kept; ${r.chunksPruned} chunks (${bytes(r.bytesPruned)}) ${r.dryRun ? "would be " : ""}pruned, ${r.chunksKept} kept`,
        ...r.forgotten.map((f) => `  forget ${f.component} ${f.id} (${f.time})`)
      ].join("\n")), ...rs.snapshots.flatMap((p) => p.regions.map((g) => `${p.component} snapshots in ${g.region}: ${g.deleted.length} ${would}deleted (${g.deleted.map((d) => d.id).join(", ") || "none"}), ${g.kept.length} kept, ${g.skipped.length} skipped`))].join("\n");
      output(a.json).print(human, rs);
      return 0;
    }
    case "demo": {
      const a = parse(rest, { dir: { type: "string" }, "weights-mb": { type: "string" } });
      const { runDemo: runDemo2 } = await Promise.resolve().then(() => (init_demo(), demo_exports));
      const r = await runDemo2({ dir: a.dir, weightsMb: a["weights-mb"] ? Number(a["weights-mb"]) : void 0, json: a.json });
      if (a.json) output(true).print("", r);
      return r.ok ? 0 : 1;
    }
    case "run": {
      const [name, ...more] = rest;
      if (!name || name.startsWith("-")) throw new UsageError(`run: name a state machine: backup-run, restore, verify-drill, retention, rpo-watch

${USAGE}`);
      const a = parse(more, { input: { type: "string" }, ...remoteOptions });
      let input = {};
      if (a.input !== void 0) {
        try {
          input = JSON.parse(a.input);
        } catch (err) {
          throw new UsageError(`--input: not valid JSON (${errorMessage(err)}); e.g. --input '{"type":"full"}'`);
        }
      }
      return runStateMachineCommand(name, input, a);
    }
    case "schedule": {
      const a = parse(rest, {});
      const cfg = loadConfig(a.config);
      const { scheduledJobs: scheduledJobs2, runScheduler: runScheduler2 } = await Promise.resolve().then(() => (init_scheduler(), scheduler_exports));
      const { runLocal: runLocal2 } = await Promise.resolve().then(() => (init_runtime(), runtime_exports));
      const stop = new AbortController();
      process.once("SIGINT", () => stop.abort());
      process.once("SIGTERM", () => stop.abort());
      await runScheduler2({
        jobs: scheduledJobs2(cfg),
        signal: stop.signal,
        log: (line) => process.stdout.write(`${JSON.stringify({ time: (/* @__PURE__ */ new Date()).toISOString(), ...line })}
`),
        start: async (job) => {
          const r = await runLocal2(job.stateMachine, job.input, { cfg, waitMs: 1e3, retryMs: 1e3 });
          return { status: r.status, error: r.error, cause: r.cause, durationMs: r.durationMs, executionArn: r.executionArn };
        }
      });
      return 0;
    }
    default:
      throw new UsageError(`unknown command "${cmd}"

${USAGE}`);
  }
}
main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    const code = err instanceof MemvaultError ? err.exitCode : 1;
    const msg = err instanceof ConfigError ? `invalid configuration:
${err.problems.map((p) => `  ${p}`).join("\n")}` : errorMessage(err);
    process.stderr.write(`memvault: ${msg}
`);
    if (process.env.MEMVAULT_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}
`);
    process.exitCode = code;
  }
);
