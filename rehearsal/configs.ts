// Which configs the rehearsal deploys, and the rehearsal overlay.
//
// Configs: every *.yaml under examples/ and infra/ with a top-level `aws:`
// section (the ones a user can `cdk deploy`), so a new documented example is
// rehearsed without a code change.
//
// The overlay: an example names AWS hosts (RDS, ElastiCache) that cannot be
// reached from here. Before synth, the rehearsal rewrites every database
// address in the components (postgres:// and redis:// URLs, host/port fields,
// also inside restore targets and scratch targets) to the loopback servers,
// drops TLS (sslmode / rediss://: the loopback servers have no certificates),
// and leaves everything else as written: credentials stay where the config
// says they are (a Secrets Manager secret, which the rehearsal seeds with the
// loopback password, or an environment variable, which a Lambda function does
// not have unless the template sets it). MongoDB cannot run here: mongodb
// components are removed and reported as not rehearsed, never faked. What the
// overlay derives for the fakes (secrets, SSM parameters, RDS instances and
// clusters, source buckets, database users) is returned as `seeds`.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Every example config with an `aws` section, relative to the repository (examples/cloud.yaml, infra/memvault.example.yaml, ...). */
export function deployableConfigs(root = ROOT): string[] {
  const out: string[] = [];
  for (const dir of ['examples', 'infra']) {
    for (const f of readdirSync(path.join(root, dir)).filter((n) => /\.ya?ml$/.test(n)).sort()) {
      const rel = `${dir}/${f}`;
      const doc = parseYaml(readFileSync(path.join(root, rel), 'utf8')) as Record<string, unknown> | null;
      if (doc && typeof doc === 'object' && 'aws' in doc) out.push(rel);
    }
  }
  return out;
}

export interface LoopbackServers {
  postgres: { host: string; port: number };
  redis: { host: string; port: number };
}

export interface DatabaseUse { component: string; user: string; database: string }

export interface OverlaySeeds {
  /** PostgreSQL roles and databases the components connect as / to. */
  postgres: DatabaseUse[];
  /** Redis ACL users named in URLs. */
  redisUsers: string[];
  /** Secrets Manager secrets named anywhere in the config, with the connection they are for. */
  secrets: { arn: string; component?: string; engine: 'postgres' | 'redis' | 'other'; user?: string; database?: string }[];
  ssmParameterPaths: { component: string; region: string; path: string }[];
  ssmSecretPrefixes: { component: string; region: string; prefix: string }[];
  s3Sources: { component: string; bucket: string; prefix: string; region?: string }[];
  rdsInstances: { component: string; id: string; region: string; engine: string }[];
  rdsClusters: { component: string; id: string; region: string; engine: string }[];
  /** Buckets the config names besides the sources (drill scratch and restore-target buckets): they exist before the deploy. */
  buckets: string[];
}

export interface Overlaid {
  doc: Record<string, any>;
  /** Components not rehearsed, with why. */
  notRehearsed: { component: string; kind: string; why: string }[];
  /** Each rewrite, for the report. */
  rewrites: string[];
  seeds: OverlaySeeds;
}

const SECRET_ARN = /^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$/;

function rewritePostgresUrl(u: string, s: LoopbackServers): { url: string; user: string; database: string } {
  const url = new URL(u);
  url.hostname = s.postgres.host;
  url.port = String(s.postgres.port);
  url.searchParams.delete('sslmode');
  url.searchParams.delete('sslrootcert');
  return { url: url.toString(), user: decodeURIComponent(url.username) || 'postgres', database: decodeURIComponent(url.pathname.slice(1)) || 'postgres' };
}

function rewriteRedisUrl(u: string, s: LoopbackServers): { url: string; user?: string } {
  const url = new URL(u.replace(/^rediss:/, 'redis:'));
  url.hostname = s.redis.host;
  url.port = String(s.redis.port);
  return { url: url.toString(), user: decodeURIComponent(url.username) || undefined };
}

/** Returns the overlaid document (the input is not changed). */
export function overlay(input: Record<string, any>, s: LoopbackServers): Overlaid {
  const doc = structuredClone(input);
  const notRehearsed: Overlaid['notRehearsed'] = [];
  const rewrites: string[] = [];
  const seeds: OverlaySeeds = { postgres: [], redisUsers: [], secrets: [], ssmParameterPaths: [], ssmSecretPrefixes: [], s3Sources: [], rdsInstances: [], rdsClusters: [], buckets: [] };
  const awsRegion = String(doc.aws?.region ?? 'us-east-1');
  const components = (doc.components ?? {}) as Record<string, Record<string, any>>;
  for (const [name, c] of Object.entries(components)) {
    if (c.kind === 'mongodb') {
      delete components[name];
      notRehearsed.push({ component: name, kind: 'mongodb', why: 'no MongoDB / DocumentDB server runs on this machine; the rehearsal does not fake a database' });
      continue;
    }
    const engine = c.kind === 'redis' ? 'redis' : c.kind === 'postgres' || c.kind === 'vector' ? 'postgres' : 'other';
    let conn: { user?: string; database?: string } = {};
    // Every database address in the component, at any depth (restore and scratch targets included).
    const visit = (o: Record<string, any>, where: string) => {
      for (const [k, v] of Object.entries(o)) {
        const field = `${where}.${k}`;
        if (typeof v === 'string' && /^postgres(ql)?:\/\//.test(v)) {
          const r = rewritePostgresUrl(v, s);
          o[k] = r.url;
          rewrites.push(`${field}: ${v.replace(/\/\/[^@/]*@/, '//…@')} -> ${r.url.replace(/\/\/[^@/]*@/, '//…@')}`);
          seeds.postgres.push({ component: name, user: r.user, database: r.database });
          if (o === c) conn = { user: r.user, database: r.database };
        } else if (typeof v === 'string' && /^rediss?:\/\//.test(v)) {
          const r = rewriteRedisUrl(v, s);
          o[k] = r.url;
          rewrites.push(`${field}: ${v.replace(/\/\/[^@/]*@/, '//…@')} -> ${r.url.replace(/\/\/[^@/]*@/, '//…@')}`);
          if (r.user) seeds.redisUsers.push(r.user);
          if (o === c) conn = { user: r.user };
        } else if (k === 'host' && typeof v === 'string' && engine === 'postgres') {
          o.host = s.postgres.host;
          o.port = s.postgres.port;
          rewrites.push(`${field}: ${v}:${String(o.port ?? 5432)} -> ${s.postgres.host}:${s.postgres.port}`);
          const user = String(o.user ?? 'postgres');
          const database = String(o.database ?? 'postgres');
          seeds.postgres.push({ component: name, user, database });
          if (o === c) conn = { user, database };
        } else if (k === 'sslmode' && v !== 'disable') {
          o.sslmode = 'disable';
          rewrites.push(`${field}: ${String(v)} -> disable (the loopback server has no certificate)`);
        } else if (k === 'tls' && v === true) {
          o.tls = false;
          rewrites.push(`${field}: true -> false (the loopback server has no certificate)`);
        } else if (v && typeof v === 'object' && !Array.isArray(v)) visit(v, field);
      }
    };
    visit(c, `components.${name}`);
    const secretsIn = (o: unknown): string[] => (typeof o === 'string' ? (SECRET_ARN.test(o) ? [o] : []) : o && typeof o === 'object' ? Object.values(o).flatMap(secretsIn) : []);
    for (const arn of secretsIn(c)) seeds.secrets.push({ arn, component: name, engine, ...conn });
    const region = String(c.region ?? awsRegion);
    if (c.kind === 'ssm-config') {
      for (const p of c.parameterPaths ?? []) seeds.ssmParameterPaths.push({ component: name, region, path: p });
      for (const p of c.secretPrefixes ?? []) seeds.ssmSecretPrefixes.push({ component: name, region, prefix: p });
      for (const n of c.secrets ?? []) seeds.ssmSecretPrefixes.push({ component: name, region, prefix: n });
    }
    if (c.kind === 's3-prefix' && c.drill?.bucket && !c.drill.endpoint) seeds.buckets.push(c.drill.bucket);
    if (c.kind === 's3-prefix' && !c.endpoint) seeds.s3Sources.push({ component: name, bucket: c.bucket, prefix: c.prefix ?? '', region: c.region });
    if (c.kind === 'rds-snapshot') seeds.rdsInstances.push({ component: name, id: c.instanceId, region, engine: c.engine ?? 'postgres' });
    if (c.kind === 'aurora-snapshot') seeds.rdsClusters.push({ component: name, id: c.clusterId, region, engine: c.engine ?? 'aurora-postgresql' });
  }
  // aws.databaseSecrets: secrets granted per component or per kind.
  const dbs = doc.aws?.databaseSecrets ?? {};
  for (const [comp, arn] of Object.entries((dbs.components ?? {}) as Record<string, string>)) {
    const c = components[comp];
    const use = seeds.postgres.find((p) => p.component === comp);
    seeds.secrets.push({ arn, component: comp, engine: c?.kind === 'redis' ? 'redis' : 'postgres', user: use?.user, database: use?.database });
  }
  for (const [kind, arn] of Object.entries((dbs.kinds ?? {}) as Record<string, string>)) {
    const comp = Object.entries(components).find(([, c]) => c.kind === kind)?.[0];
    const use = seeds.postgres.find((p) => p.component === comp);
    seeds.secrets.push({ arn, component: comp, engine: kind === 'redis' ? 'redis' : 'postgres', user: use?.user, database: use?.database });
  }
  // aws.databaseSecrets.restoreTargets: secrets a restore request may name; here, the loopback server's.
  for (const arn of (dbs.restoreTargets ?? []) as string[]) seeds.secrets.push({ arn, engine: 'postgres', user: 'postgres' });
  for (const t of Object.values((doc.aws?.restoreTargets ?? {}) as Record<string, { bucket?: string }>)) if (t.bucket) seeds.buckets.push(t.bucket);
  if (doc.aws && Object.keys(components).length === 0) throw new Error('the overlay left no component to rehearse');
  const uniq = <T>(xs: T[]) => [...new Map(xs.map((x) => [JSON.stringify(x), x])).values()];
  seeds.postgres = uniq(seeds.postgres);
  seeds.redisUsers = [...new Set(seeds.redisUsers)];
  seeds.buckets = [...new Set(seeds.buckets)];
  seeds.secrets = [...new Map(seeds.secrets.map((x) => [x.arn, x])).values()];
  return { doc, notRehearsed, rewrites, seeds };
}
