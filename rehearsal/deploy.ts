// `cdk deploy`, as the rehearsal does it: from one example config to a running
// rehearsal of both stacks.
//
//   1. loopback servers: s3rver, PostgreSQL 15 and redis-server (the test
//      harness's), each behind a TCP forwarder on a port kept between runs, so
//      the overlaid config (which names the ports) and its cloud assembly stay
//      the same and a second run reuses the synth;
//   2. the rehearsal overlay (configs.ts), then `cdk synth -c config=FILE`
//      (synth.ts) and the resolved model of the assembly (template.ts);
//   3. what the stacks create and what exists before them: the buckets of
//      the templates (vault, access logs), the bootstrap bucket with the file
//      assets uploaded as `cdk deploy` publishes them, the configured source
//      buckets seeded with objects, the database users and databases with data,
//      Redis keys, and the fakes' state (Secrets Manager secrets holding the
//      loopback credentials, SSM parameters, RDS instances and clusters);
//   4. the gateway (rehearsal/gateway.ts) with the templates' roles, resource
//      policies, keys and topics; Lambda (lambda.ts: every function created,
//      so a function Lambda would refuse fails here, named); Step Functions,
//      EventBridge and CloudWatch (machines.ts); the schedules (schedules.ts).
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { CreateBucketCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import pg from 'pg';
import { createClient } from 'redis';
import { parse as parseYaml } from 'yaml';
import { startGateway, type Gateway } from './gateway.ts';
import { overlay, ROOT, type Overlaid } from './configs.ts';
import { LambdaRuntime, type LogLine } from './lambda.ts';
import { StepFunctions } from './machines.ts';
import { Schedules } from './schedules.ts';
import { synthesize, type SynthResult } from './synth.ts';
import { loadDeployedModel, type DeployedModel, type FunctionInfo } from './template.ts';
import { startS3rver, type S3rverHandle } from '../test/helpers/s3rver.ts';
import { startPostgres, type PostgresHandle } from '../test/helpers/postgres.ts';
import { startRedis, type RedisHandle } from '../test/helpers/redis.ts';

/** Where the rehearsal keeps cloud assemblies, ports and instance directories (not /tmp: each Lambda instance's /tmp hides it). */
export const DEFAULT_WORK_ROOT = process.env.MEMVAULT_REHEARSAL_DIR ?? '/var/tmp/memvault-rehearsal';

export interface SourceObject { bucket: string; key: string; body: Buffer }
export interface SeededData {
  objects: SourceObject[];
  /** Rows per component's PostgreSQL table, as the source has them. */
  tables: { component: string; database: string; table: string; rows: number }[];
  redisKeys: Record<string, string>;
  parameters: { name: string; value: string; type: string; region: string }[];
  secrets: { name: string; value: string; region: string }[];
}

export interface Rehearsal {
  label: string;
  configFile: string;
  synth: SynthResult;
  overlaid: Overlaid;
  model: DeployedModel;
  account: string;
  primaryRegion: string;
  drRegion: string;
  gateway: Gateway;
  lambda: LambdaRuntime;
  sfn: StepFunctions;
  schedules: Schedules;
  s3: S3Client;
  s3rver: S3rverHandle;
  postgres: PostgresHandle;
  redis: RedisHandle;
  /** The password of every rehearsal database user but the harness's superuser (the secrets hold it; it must appear nowhere else). */
  dbPassword: string;
  /** The password of a PostgreSQL user of the rehearsal. */
  passwordFor(user: string | undefined): string;
  seeded: SeededData;
  close(): Promise<void>;
}

export interface DeployOptions {
  workRoot?: string;
  /** Pause of Wait states / retries in ms. @default 5 */
  waitMs?: number;
  retryMs?: number;
  onLog?: (l: LogLine) => void;
  /** The config document instead of the file's (e.g. a documented example plus a section it lacks). */
  doc?: Record<string, any>;
  /** See LambdaOptions.environmentLimit. @default 'enforce' */
  environmentLimit?: 'enforce' | 'report';
  /** Per-function Timeout override (seconds), e.g. to rehearse a timeout. */
  timeoutOverride?: (fn: FunctionInfo) => number | undefined;
}

/** A TCP forwarder from a kept port to the server's port. */
async function forward(targetPort: number, preferred?: number): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((c) => {
    const up = net.connect(targetPort, '127.0.0.1');
    sockets.add(c).add(up);
    c.pipe(up).pipe(c);
    const end = () => { c.destroy(); up.destroy(); sockets.delete(c); sockets.delete(up); };
    c.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
  });
  const listen = (port: number) => new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => { server.off('error', reject); resolve((server.address() as net.AddressInfo).port); });
  });
  let port: number;
  try {
    port = await listen(preferred ?? 0);
  } catch {
    port = await listen(0);
  }
  return {
    port,
    close: () => new Promise<void>((resolve) => { for (const s of sockets) s.destroy(); server.close(() => resolve()); }),
  };
}

async function pgAdmin(url: string, f: (c: pg.Client) => Promise<void>): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try { await f(c); } finally { await c.end(); }
}

const run = promisify(execFile);
const ident = (s: string) => `"${s.replaceAll('"', '""')}"`;

/**
 * The README's step after deploy: `memvault init --config cdk.out/memvault.deployed.json`
 * (the CLI, as the deployer) creates both vaults in the created buckets with the created keys.
 */
async function initVaults(outdir: string, gateway: Gateway, deployerRole: string, region: string, workRoot: string): Promise<void> {
  const creds = gateway.credentialsFor(deployerRole);
  const stateDir = path.join(workRoot, 'deployer-state');
  mkdirSync(stateDir, { recursive: true });
  const env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root',
    AWS_ENDPOINT_URL: gateway.url, AWS_REGION: region, AWS_ACCESS_KEY_ID: creds.accessKeyId, AWS_SECRET_ACCESS_KEY: creds.secretAccessKey,
    AWS_SESSION_TOKEN: creds.sessionToken, AWS_REQUEST_CHECKSUM_CALCULATION: 'WHEN_REQUIRED', AWS_RESPONSE_CHECKSUM_VALIDATION: 'WHEN_REQUIRED',
    MEMVAULT_STATE_DIR: stateDir,
  };
  try {
    await run(process.execPath, [path.join(ROOT, 'cli', 'memvault.mjs'), 'init', '--config', path.join(outdir, 'memvault.deployed.json')], { cwd: ROOT, env });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`memvault init --config cdk.out/memvault.deployed.json failed: ${(e.stderr ?? '').trim() || e.message}`);
  }
}

/** Starts everything for one example config (path relative to the repository). */
export async function deployRehearsal(configRel: string, o: DeployOptions = {}): Promise<Rehearsal> {
  const workRoot = o.workRoot ?? DEFAULT_WORK_ROOT;
  mkdirSync(workRoot, { recursive: true });
  const portsFile = path.join(workRoot, 'ports.json');
  // Kept per config (and document override), so rehearsals of different configs running at once do not take each other's ports.
  const portsKey = o.doc ? `${configRel}+${JSON.stringify(o.doc).length}` : configRel;
  const readPorts = (): Record<string, { postgres?: number; redis?: number }> => {
    try { return existsSync(portsFile) ? JSON.parse(readFileSync(portsFile, 'utf8')) : {}; } catch { return {}; }
  };
  const kept = readPorts()[portsKey] ?? {};
  const closers: (() => Promise<unknown>)[] = [];
  const closeAll = async () => { for (const c of closers.reverse()) await c().catch(() => undefined); };
  try {
    const [s3rver, postgres, redis] = await Promise.all([startS3rver(`rehearsal-${randomBytes(3).toString('hex')}`), startPostgres(), startRedis()]);
    closers.push(() => s3rver.close(), () => postgres.stop(), () => redis.stop());
    const pgFwd = await forward(postgres.port, kept.postgres);
    const redisFwd = await forward(redis.port, kept.redis);
    closers.push(() => pgFwd.close(), () => redisFwd.close());
    writeFileSync(portsFile, JSON.stringify({ ...readPorts(), [portsKey]: { postgres: pgFwd.port, redis: redisFwd.port } }));

    const doc = o.doc ?? (parseYaml(readFileSync(path.join(ROOT, configRel), 'utf8')) as Record<string, any>);
    const overlaid = overlay(doc, { postgres: { host: '127.0.0.1', port: pgFwd.port }, redis: { host: '127.0.0.1', port: redisFwd.port } });
    const synth = await synthesize(overlaid.doc, path.join(workRoot, 'assemblies'), configRel);
    const model = loadDeployedModel(synth.outdir);
    const account = model.stacks[0].account;
    const primaryRegion = String(overlaid.doc.aws.region);
    const drRegion = String(overlaid.doc.aws.drRegion);

    // ---- data the rehearsal flows back up and restore ----
    const dbPassword = randomBytes(12).toString('hex');
    const seeded: SeededData = { objects: [], tables: [], redisKeys: {}, parameters: [], secrets: [] };
    await pgAdmin(postgres.url, async (c) => {
      for (const u of new Set(overlaid.seeds.postgres.map((p) => p.user))) {
        // The harness's superuser keeps its own password (passwordFor); every other user gets dbPassword.
        if (u !== 'postgres') await c.query(`CREATE ROLE ${ident(u)} LOGIN SUPERUSER PASSWORD '${dbPassword}'`);
      }
      for (const d of new Set(overlaid.seeds.postgres.map((p) => p.database))) {
        if (d === 'postgres') continue;
        const owner = overlaid.seeds.postgres.find((p) => p.database === d)!.user;
        await c.query(`CREATE DATABASE ${ident(d)} OWNER ${ident(owner)}`);
      }
    });
    const adminUrl = (db: string) => postgres.urlFor(db);
    const passwordFor = (user: string | undefined) => (user === undefined || user === 'postgres' ? postgres.password : dbPassword);
    for (const [name, c] of Object.entries(overlaid.doc.components as Record<string, any>)) {
      const use = overlaid.seeds.postgres.find((p) => p.component === name);
      if (!use) continue;
      if (c.kind === 'postgres') {
        await pgAdmin(adminUrl(use.database), async (cl) => {
          await cl.query(`CREATE TABLE IF NOT EXISTS memories (id serial PRIMARY KEY, kind text NOT NULL, content text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`);
          await cl.query(`INSERT INTO memories (kind, content) SELECT (ARRAY['semantic','episodic','procedural'])[1 + g % 3], 'memory ' || g || ' ' || md5(g::text) FROM generate_series(1, 500) g`);
        });
        seeded.tables.push({ component: name, database: use.database, table: 'memories', rows: 500 });
      } else if (c.kind === 'vector') {
        const [schema, table] = String(c.table).includes('.') ? String(c.table).split('.') : ['public', String(c.table)];
        const meta = (c.metadataColumns ?? []) as string[];
        await pgAdmin(adminUrl(use.database), async (cl) => {
          const cols = [`${ident(c.idColumn ?? 'id')} bigint PRIMARY KEY`, `${ident(c.vectorColumn ?? 'embedding')} real[] NOT NULL`, ...meta.map((m) => `${ident(m)} text`)];
          await cl.query(`CREATE SCHEMA IF NOT EXISTS ${ident(schema)}`);
          await cl.query(`CREATE TABLE ${ident(schema)}.${ident(table)} (${cols.join(', ')})`);
          const dims = Number(c.dimensions);
          await cl.query(
            `INSERT INTO ${ident(schema)}.${ident(table)} SELECT g, (SELECT array_agg(((g * ${dims} + d) % 997)::real / 997) FROM generate_series(1, ${dims}) d)${meta.map(() => `, 'm' || g`).join('')} FROM generate_series(1, 50) g`,
          );
        });
        seeded.tables.push({ component: name, database: use.database, table: `${schema}.${table}`, rows: 50 });
      }
    }
    {
      const r = createClient({ url: redis.url });
      await r.connect();
      for (const u of overlaid.seeds.redisUsers) await r.sendCommand(['ACL', 'SETUSER', u, 'on', `>${dbPassword}`, '~*', '&*', '+@all']);
      for (let i = 0; i < 50; i++) {
        const k = `session:${i}`;
        const v = `working memory ${i} ${randomBytes(8).toString('hex')}`;
        await r.set(k, v);
        seeded.redisKeys[k] = v;
      }
      await r.quit();
    }

    const s3 = s3rver.client();
    const buckets = new Set<string>([...model.buckets.map((b) => b.name), ...model.assets.map((a) => a.bucketName), ...overlaid.seeds.s3Sources.map((s) => s.bucket), ...overlaid.seeds.buckets]);
    for (const b of buckets) await s3.send(new CreateBucketCommand({ Bucket: b }));
    // cdk deploy publishes file assets to the bootstrap bucket before the stacks are created.
    for (const a of model.assets.filter((x) => x.packaging === 'file')) {
      await s3.send(new PutObjectCommand({ Bucket: a.bucketName, Key: a.objectKey, Body: readFileSync(a.sourcePath) }));
    }
    for (const src of overlaid.seeds.s3Sources) {
      const prefix = src.prefix && !src.prefix.endsWith('/') ? `${src.prefix}/` : src.prefix;
      for (let i = 0; i < 6; i++) {
        const key = `${prefix}${i % 2 ? 'shards/' : ''}part-${i}.bin`;
        const body = randomBytes(i === 5 ? 300_000 : 4_000 + i * 1_000);
        await s3.send(new PutObjectCommand({ Bucket: src.bucket, Key: key, Body: body }));
        seeded.objects.push({ bucket: src.bucket, key, body });
      }
    }
    for (const p of overlaid.seeds.ssmParameterPaths) {
      seeded.parameters.push(
        { name: `${p.path.replace(/\/$/, '')}/model/name`, value: 'memory-7b', type: 'String', region: p.region },
        { name: `${p.path.replace(/\/$/, '')}/model/temperature`, value: '0.2', type: 'String', region: p.region },
        { name: `${p.path.replace(/\/$/, '')}/api/token`, value: randomBytes(8).toString('hex'), type: 'SecureString', region: p.region },
      );
    }
    for (const p of overlaid.seeds.ssmSecretPrefixes) seeded.secrets.push({ name: `${p.prefix}api-key`, value: randomBytes(12).toString('hex'), region: p.region });
    const dbSecrets = overlaid.seeds.secrets.map((s) => ({
      name: s.arn,
      region: s.arn.split(':')[3],
      value: JSON.stringify(s.engine === 'redis'
        ? { username: s.user ?? 'default', password: dbPassword, engine: 'redis', host: '127.0.0.1', port: redisFwd.port }
        : { username: s.user ?? 'postgres', password: passwordFor(s.user), engine: 'postgres', host: '127.0.0.1', port: pgFwd.port, dbname: s.database ?? 'postgres' }),
    }));

    const deployerRole = `arn:aws:iam::${account}:role/memvault-rehearsal-deployer`;
    const gateway = await startGateway({
      account,
      region: primaryRegion,
      s3Endpoint: s3rver.endpoint,
      principals: [
        ...model.roles.map((r) => ({ roleArn: r.arn, policies: r.policies })),
        // The human who runs cdk deploy and `memvault init` (an administrator, outside the stacks).
        { roleArn: deployerRole, policies: [{ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: '*', Resource: '*' }] }] },
      ],
      resourcePolicies: model.resourcePolicies.map((p) => ({ resourceArn: p.resourceArn, policy: p.policy })),
      kmsKeys: [
        ...model.keys.map((k) => ({ keyArn: k.arn, region: k.region, aliases: k.aliases })),
        // The account's own keys the config names (a DR copy's drKmsKeyId, an s3-prefix kmsKeyArn...):
        // they exist before the deploy, with AWS's default key policy.
        ...customerKeys(overlaid.doc, model.keys.map((k) => k.arn)),
      ],
      topics: model.topics.map((t) => ({ topicArn: t.arn, kmsMasterKeyId: t.kmsMasterKeyId })),
      bucketEncryption: model.buckets.filter((b) => b.kmsKeyArn).map((b) => ({ bucket: b.name, kmsKeyArn: b.kmsKeyArn! })),
      seed: {
        parameters: seeded.parameters,
        secrets: [...dbSecrets, ...seeded.secrets],
        rdsInstances: overlaid.seeds.rdsInstances.map(({ id, region, engine }) => ({ id, region, engine })),
        rdsClusters: overlaid.seeds.rdsClusters.map(({ id, region, engine }) => ({ id, region, engine })),
      },
    });
    closers.push(() => gateway.close());
    await initVaults(synth.outdir, gateway, deployerRole, primaryRegion, workRoot);
    const lambda = new LambdaRuntime({ workDir: path.join(workRoot, 'run', `${process.pid}-${randomBytes(3).toString('hex')}`), gateway, onLog: o.onLog, timeoutOverride: o.timeoutOverride, environmentLimit: o.environmentLimit });
    closers.push(() => lambda.close());
    for (const f of model.functions) lambda.create(f);
    const sfn = new StepFunctions(model, lambda, gateway, { waitMs: o.waitMs, retryMs: o.retryMs });
    closers.push(async () => sfn.close());
    const schedules = new Schedules(model, sfn, gateway);
    return {
      label: configRel, configFile: synth.configFile, synth, overlaid, model, account, primaryRegion, drRegion,
      gateway, lambda, sfn, schedules, s3, s3rver, postgres, redis, dbPassword, passwordFor, seeded,
      close: closeAll,
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

/** KMS key ARNs named anywhere in the config that the stacks do not create. */
function customerKeys(doc: unknown, created: string[]): { keyArn: string; region: string; aliases: string[] }[] {
  const found = new Set<string>();
  const walk = (v: unknown): void => {
    if (typeof v === 'string') { if (/^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/[A-Za-z0-9-]+$/.test(v) && !created.includes(v)) found.add(v); }
    else if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') Object.values(v).forEach(walk);
  };
  walk(doc);
  return [...found].sort().map((keyArn) => ({ keyArn, region: keyArn.split(':')[3], aliases: [] }));
}
