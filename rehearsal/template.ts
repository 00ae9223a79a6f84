// Reads a synthesized cloud assembly (cdk.out) the way CloudFormation would
// deploy it, and returns what the rehearsal runs: every stack's resources with
// their CloudFormation intrinsics resolved to physical names and ARNs.
//
//   1. manifest.json names the stacks (template file, account, region) and
//      their asset manifests (which cdk.out directory or file becomes which
//      S3 object in the bootstrap bucket).
//   2. Physical ids first: a resource keeps the name its properties give
//      (FunctionName, RoleName, BucketName, ...); without one it gets a
//      generated name as CloudFormation makes them, <stack>-<logicalId>-<suffix>
//      (the suffix is random on AWS; here a hash of stack and logical id, so a
//      rehearsal is reproducible), cut to the service's length limit.
//   3. Then every property is resolved: Ref, Fn::GetAtt, Fn::Join, Fn::Sub,
//      Fn::Select, Fn::Split, Fn::If with the template's Conditions,
//      Fn::Base64, Fn::FindInMap, AWS::NoValue and the pseudo parameters.
//      Anything else (Fn::ImportValue, Fn::GetAZs, ...) fails naming the
//      resource and property: the rehearsal must not guess.
//   4. The model: functions (with their asset directory), roles with their
//      identity policies (inline, AWS::IAM::Policy, AWS::IAM::ManagedPolicy),
//      resource policies (bucket, key, topic), buckets, keys and aliases,
//      topics, state machines (definition with DefinitionSubstitutions
//      applied), schedules, event rules and alarms.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
export interface PolicyDocument { Version?: string; Statement: unknown[] | unknown }

export interface StackInfo {
  name: string;
  account: string;
  region: string;
  partition: string;
  templateFile: string;
  /** Resolved Resources: logical id -> { Type, Properties }. */
  resources: Record<string, { Type: string; Properties: Record<string, any> }>;
  outputs: Record<string, string>;
}

/** What every resolved resource of a stack has: where it is and what it is called. */
export interface ResourceInfo {
  stack: string;
  logicalId: string;
  name: string;
  arn: string;
  region: string;
}

export interface FunctionInfo extends ResourceInfo {
  roleArn: string;
  handler: string;
  runtime: string;
  /** The function's Description (memvault's: "memvault <handler>"). */
  description: string;
  /** Directory in cdk.out holding index.mjs. */
  assetDir: string;
  environment: Record<string, string>;
  memorySize: number;
  timeoutSeconds: number;
  ephemeralStorageMb: number;
  vpcConfig?: { SubnetIds?: string[]; SecurityGroupIds?: string[] };
  logGroupName?: string;
  reservedConcurrency?: number;
}

export interface RoleInfo { stack: string; logicalId: string; name: string; arn: string; trust: PolicyDocument; policies: PolicyDocument[] }
export interface ResourcePolicy { stack: string; resourceArn: string; policy: PolicyDocument; kind: 'bucket' | 'key' | 'topic' }
export interface BucketInfo extends ResourceInfo { objectLock: boolean; versioned: boolean; kmsKeyArn?: string }
export interface KeyInfo { stack: string; logicalId: string; keyId: string; arn: string; region: string; aliases: string[]; policy: PolicyDocument }
export interface TopicInfo extends ResourceInfo { kmsMasterKeyId?: string }
export interface StateMachineInfo extends ResourceInfo {
  roleArn: string;
  /** The definition as Step Functions stores it: DefinitionString / Definition with DefinitionSubstitutions applied. */
  definition: Record<string, any>;
}
export interface ScheduleInfo {
  stack: string;
  logicalId: string;
  name: string;
  group: string;
  arn: string;
  groupArn: string;
  region: string;
  expression: string;
  timezone?: string;
  state: string;
  targetArn: string;
  roleArn: string;
  input?: string;
  description?: string;
}
export interface RuleTarget { id: string; arn: string; roleArn?: string; input?: string; inputPath?: string; inputTransformer?: { InputPathsMap?: Record<string, string>; InputTemplate: string } }
export interface RuleInfo extends ResourceInfo { eventPattern: Record<string, any>; state: string; targets: RuleTarget[] }
export interface AlarmInfo {
  stack: string;
  logicalId: string;
  name: string;
  arn: string;
  region: string;
  namespace: string;
  metricName: string;
  dimensions: Record<string, string>;
  threshold: number;
  comparison: string;
  alarmActions: string[];
  description?: string;
}
export interface FileAsset { stack: string; id: string; sourcePath: string; packaging: 'file' | 'zip'; bucketName: string; objectKey: string; region: string }

export interface DeployedModel {
  outdir: string;
  stacks: StackInfo[];
  functions: FunctionInfo[];
  roles: RoleInfo[];
  resourcePolicies: ResourcePolicy[];
  buckets: BucketInfo[];
  keys: KeyInfo[];
  topics: TopicInfo[];
  stateMachines: StateMachineInfo[];
  schedules: ScheduleInfo[];
  rules: RuleInfo[];
  alarms: AlarmInfo[];
  assets: FileAsset[];
}

export class TemplateError extends Error {
  override name = 'TemplateError';
}

/** CloudFormation-style suffix: 12-13 upper-case letters and digits, here stable per stack and logical id. */
function suffix(stack: string, logicalId: string): string {
  const h = createHash('sha256').update(`${stack}/${logicalId}`).digest();
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
  return Array.from(h.subarray(0, 12), (b) => alphabet[b % alphabet.length]).join('');
}

/** A generated physical name, <stack>-<logicalId>-<suffix>, shortened like CloudFormation to `max` characters. */
export function generatedName(stack: string, logicalId: string, max: number, lower = false): string {
  const sfx = suffix(stack, logicalId);
  let head = `${stack}-${logicalId}`;
  const room = max - sfx.length - 1;
  if (head.length > room) head = head.slice(0, room);
  const n = `${head}-${sfx}`;
  return lower ? n.toLowerCase().replace(/[^a-z0-9.-]/g, '-') : n;
}

/** Where a resource type keeps its name, and the longest generated name the service takes. */
const NAME_PROP: Record<string, { prop: string; max: number; lower?: boolean }> = {
  'AWS::Lambda::Function': { prop: 'FunctionName', max: 64 },
  'AWS::IAM::Role': { prop: 'RoleName', max: 64 },
  'AWS::IAM::Policy': { prop: 'PolicyName', max: 128 },
  'AWS::IAM::ManagedPolicy': { prop: 'ManagedPolicyName', max: 128 },
  'AWS::S3::Bucket': { prop: 'BucketName', max: 63, lower: true },
  'AWS::SNS::Topic': { prop: 'TopicName', max: 256 },
  'AWS::StepFunctions::StateMachine': { prop: 'StateMachineName', max: 80 },
  'AWS::Logs::LogGroup': { prop: 'LogGroupName', max: 512 },
  'AWS::Events::Rule': { prop: 'Name', max: 64 },
  'AWS::Scheduler::Schedule': { prop: 'Name', max: 64 },
  'AWS::Scheduler::ScheduleGroup': { prop: 'Name', max: 64 },
  'AWS::CloudWatch::Alarm': { prop: 'AlarmName', max: 255 },
  'AWS::CloudWatch::Dashboard': { prop: 'DashboardName', max: 255 },
  'AWS::KMS::Alias': { prop: 'AliasName', max: 256 },
};

interface Raw { Type: string; Properties?: Record<string, any>; Condition?: string }

class StackResolver {
  readonly physical = new Map<string, string>();
  readonly keyIds = new Map<string, string>();
  private readonly conditions: Record<string, boolean> = {};

  constructor(
    readonly name: string,
    readonly account: string,
    readonly region: string,
    readonly partition: string,
    readonly template: { Resources: Record<string, Raw>; Conditions?: Record<string, any>; Parameters?: Record<string, any>; Mappings?: Record<string, any> },
  ) {
    for (const [id, r] of Object.entries(template.Resources)) {
      const np = NAME_PROP[r.Type];
      const given = np ? r.Properties?.[np.prop] : undefined;
      if (typeof given === 'string') this.physical.set(id, given);
      else if (r.Type === 'AWS::KMS::Key') {
        // Key ids are UUIDs; stable per stack and logical id like the generated names.
        const h = createHash('sha256').update(`${name}/${id}`).digest('hex');
        this.keyIds.set(id, `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`);
        this.physical.set(id, this.keyIds.get(id)!);
      } else if (np) this.physical.set(id, generatedName(name, id, np.max, np.lower));
      else this.physical.set(id, `${name}-${id}-${suffix(name, id)}`);
    }
    // A name given by an intrinsic (rare in these stacks) is resolved once the literal names are known.
    for (const [id, r] of Object.entries(template.Resources)) {
      const np = NAME_PROP[r.Type];
      const given = np ? r.Properties?.[np.prop] : undefined;
      if (given !== undefined && typeof given !== 'string') this.physical.set(id, String(this.resolve(given, `${id}.${np!.prop}`)));
    }
    for (const c of Object.keys(template.Conditions ?? {})) this.condition(c);
  }

  condition(name: string): boolean {
    if (name in this.conditions) return this.conditions[name];
    const expr = this.template.Conditions?.[name];
    if (expr === undefined) throw new TemplateError(`${this.name}: unknown condition ${name}`);
    const v = Boolean(this.resolve(expr, `Conditions.${name}`));
    this.conditions[name] = v;
    return v;
  }

  private arn(service: string, resource: string, region = this.region, account = this.account): string {
    return `arn:${this.partition}:${service}:${region}:${account}:${resource}`;
  }

  ref(id: string, where: string): Json {
    switch (id) {
      case 'AWS::Partition': return this.partition;
      case 'AWS::Region': return this.region;
      case 'AWS::AccountId': return this.account;
      case 'AWS::URLSuffix': return this.partition === 'aws-cn' ? 'amazonaws.com.cn' : 'amazonaws.com';
      case 'AWS::StackName': return this.name;
      case 'AWS::StackId': return this.arn('cloudformation', `stack/${this.name}/${randomUUIDFor(this.name)}`);
      case 'AWS::NoValue': return NO_VALUE as unknown as Json;
      default: break;
    }
    const param = this.template.Parameters?.[id];
    if (param) {
      if (id === 'BootstrapVersion') return '30';
      if (param.Default === undefined) throw new TemplateError(`${where}: parameter ${id} has no default`);
      return param.Default;
    }
    const r = this.template.Resources[id];
    if (!r) throw new TemplateError(`${where}: Ref to unknown resource ${id}`);
    const p = this.physical.get(id)!;
    switch (r.Type) {
      case 'AWS::SNS::Topic': return this.arn('sns', p);
      case 'AWS::StepFunctions::StateMachine': return this.arn('states', `stateMachine:${p}`);
      case 'AWS::IAM::ManagedPolicy': return `arn:${this.partition}:iam::${this.account}:policy/${p}`;
      case 'AWS::SNS::Subscription': return this.arn('sns', `${this.physical.get(id)}`);
      default: return p;
    }
  }

  getAtt(id: string, attr: string, where: string): Json {
    const r = this.template.Resources[id];
    if (!r) throw new TemplateError(`${where}: Fn::GetAtt of unknown resource ${id}`);
    const p = this.physical.get(id)!;
    const t = r.Type;
    const key = `${t}.${attr}`;
    switch (key) {
      case 'AWS::Lambda::Function.Arn': return this.arn('lambda', `function:${p}`);
      case 'AWS::IAM::Role.Arn': return `arn:${this.partition}:iam::${this.account}:role${r.Properties?.Path ?? '/'}${p}`;
      case 'AWS::IAM::Role.RoleId': return `AROA${suffix(this.name, id)}`;
      case 'AWS::S3::Bucket.Arn': return `arn:${this.partition}:s3:::${p}`;
      case 'AWS::S3::Bucket.DomainName': return `${p}.s3.amazonaws.com`;
      case 'AWS::S3::Bucket.RegionalDomainName': return `${p}.s3.${this.region}.amazonaws.com`;
      case 'AWS::KMS::Key.Arn': return this.arn('kms', `key/${p}`);
      case 'AWS::KMS::Key.KeyId': return p;
      case 'AWS::SNS::Topic.TopicArn': return this.arn('sns', p);
      case 'AWS::SNS::Topic.TopicName': return p;
      case 'AWS::StepFunctions::StateMachine.Arn': return this.arn('states', `stateMachine:${p}`);
      case 'AWS::StepFunctions::StateMachine.Name': return p;
      case 'AWS::Logs::LogGroup.Arn': return this.arn('logs', `log-group:${p}:*`);
      case 'AWS::Events::Rule.Arn': return this.arn('events', `rule/${p}`);
      case 'AWS::Scheduler::ScheduleGroup.Arn': return this.arn('scheduler', `schedule-group/${p}`);
      case 'AWS::Scheduler::Schedule.Arn': return this.arn('scheduler', `schedule/${r.Properties?.GroupName ?? 'default'}/${p}`);
      case 'AWS::CloudWatch::Alarm.Arn': return this.arn('cloudwatch', `alarm:${p}`);
      case 'AWS::IAM::ManagedPolicy.PolicyArn': return `arn:${this.partition}:iam::${this.account}:policy/${p}`;
      default: throw new TemplateError(`${where}: Fn::GetAtt ${id}.${attr} (${t}) is not known to the rehearsal`);
    }
  }

  /** Resolves every intrinsic in `v`; `where` names the property for errors. */
  resolve(v: unknown, where: string): Json {
    if (Array.isArray(v)) return v.map((x, i) => this.resolve(x, `${where}[${i}]`)).filter((x) => x !== (NO_VALUE as unknown));
    if (v === null || typeof v !== 'object') return v as Json;
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o);
    if (keys.length === 1) {
      const k = keys[0];
      const a = o[k];
      switch (k) {
        case 'Ref': return this.ref(String(a), where);
        case 'Fn::GetAtt': {
          const [id, ...attr] = Array.isArray(a) ? (a as string[]) : String(a).split('.');
          return this.getAtt(id, attr.join('.'), where);
        }
        case 'Fn::Join': {
          const [sep, parts] = a as [string, unknown[]];
          const list = this.resolve(parts, where) as Json[];
          return list.map((x) => String(x)).join(sep);
        }
        case 'Fn::Select': {
          const [i, list] = a as [unknown, unknown];
          const l = this.resolve(list, where) as Json[];
          const n = Number(this.resolve(i, where));
          if (!Array.isArray(l) || n < 0 || n >= l.length) throw new TemplateError(`${where}: Fn::Select index ${n} out of range`);
          return l[n];
        }
        case 'Fn::Split': {
          const [sep, s] = a as [string, unknown];
          return String(this.resolve(s, where)).split(sep);
        }
        case 'Fn::Sub': return this.sub(a, where);
        case 'Fn::Base64': return Buffer.from(String(this.resolve(a, where))).toString('base64');
        case 'Fn::If': {
          const [c, yes, no] = a as [string, unknown, unknown];
          return this.resolve(this.condition(c) ? yes : no, where);
        }
        case 'Fn::Equals': {
          const [x, y] = a as [unknown, unknown];
          return JSON.stringify(this.resolve(x, where)) === JSON.stringify(this.resolve(y, where));
        }
        case 'Fn::Not': return !this.resolve((a as unknown[])[0], where);
        case 'Fn::And': return (a as unknown[]).every((x) => this.resolve(x, where));
        case 'Fn::Or': return (a as unknown[]).some((x) => this.resolve(x, where));
        case 'Condition': return this.condition(String(a));
        case 'Fn::Contains': {
          const [list, x] = a as [unknown, unknown];
          const l = this.resolve(list, where) as Json[];
          const needle = JSON.stringify(this.resolve(x, where));
          return l.some((e) => JSON.stringify(e) === needle);
        }
        case 'Fn::FindInMap': {
          const [m, k1, k2] = (a as unknown[]).map((x) => String(this.resolve(x, where)));
          const val = this.template.Mappings?.[m]?.[k1]?.[k2];
          if (val === undefined) throw new TemplateError(`${where}: Fn::FindInMap ${m}.${k1}.${k2} is not in Mappings`);
          return val;
        }
        default:
          if (k.startsWith('Fn::')) throw new TemplateError(`${where}: ${k} is not supported by the rehearsal`);
      }
    }
    const out: Record<string, Json> = {};
    for (const [k, x] of Object.entries(o)) {
      const r = this.resolve(x, `${where}.${k}`);
      if (r !== (NO_VALUE as unknown)) out[k] = r;
    }
    return out;
  }

  private sub(a: unknown, where: string): string {
    const [text, vars] = Array.isArray(a) ? (a as [string, Record<string, unknown>]) : [String(a), {}];
    const local: Record<string, Json> = {};
    for (const [k, x] of Object.entries(vars ?? {})) local[k] = this.resolve(x, `${where}.${k}`);
    return text.replace(/\$\{(!?)([^}]*)\}/g, (whole, bang: string, name: string) => {
      if (bang) return `\${${name}}`;
      if (name in local) return String(local[name]);
      if (name.includes('.')) {
        const [id, ...attr] = name.split('.');
        return String(this.getAtt(id, attr.join('.'), where));
      }
      return String(this.ref(name, where));
    });
  }
}

const NO_VALUE = Symbol('AWS::NoValue');

function randomUUIDFor(seed: string): string {
  const h = createHash('sha256').update(seed).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

function partitionOf(region: string): string {
  return region.startsWith('cn-') ? 'aws-cn' : region.includes('-gov-') ? 'aws-us-gov' : 'aws';
}

function asList<T>(v: T | T[] | undefined): T[] {
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

/** Applies DefinitionSubstitutions as Step Functions does: every ${key} in the definition text. */
export function substituteDefinition(text: string, subs: Record<string, Json>, where: string): Record<string, any> {
  const out = text.replace(/\$\{([A-Za-z0-9_]+)\}/g, (whole, key: string) => (key in subs ? String(subs[key]) : whole));
  const left = [...out.matchAll(/\$\{([A-Za-z0-9_]+)\}/g)].map((m) => m[1]);
  if (left.length) throw new TemplateError(`${where}: definition placeholders without a DefinitionSubstitutions entry: ${[...new Set(left)].join(', ')}`);
  try {
    return JSON.parse(out);
  } catch (err) {
    throw new TemplateError(`${where}: definition is not JSON after substitution: ${(err as Error).message}`);
  }
}

/** Loads cdk.out and resolves both stacks' templates. */
export function loadDeployedModel(outdir: string): DeployedModel {
  const manifestFile = path.join(outdir, 'manifest.json');
  if (!existsSync(manifestFile)) throw new TemplateError(`${outdir}: no manifest.json (not a synthesized cloud assembly)`);
  const manifest = JSON.parse(readFileSync(manifestFile, 'utf8')) as { artifacts: Record<string, any> };
  const model: DeployedModel = {
    outdir, stacks: [], functions: [], roles: [], resourcePolicies: [], buckets: [], keys: [], topics: [],
    stateMachines: [], schedules: [], rules: [], alarms: [], assets: [],
  };
  // Asset object key -> source in cdk.out, per stack.
  const assetByKey = new Map<string, FileAsset>();
  for (const [, art] of Object.entries(manifest.artifacts)) {
    if (art.type !== 'cdk:asset-manifest') continue;
    const file = path.join(outdir, art.properties.file as string);
    const am = JSON.parse(readFileSync(file, 'utf8')) as { files?: Record<string, any> };
    const stack = path.basename(file).replace(/\.assets\.json$/, '');
    for (const [id, f] of Object.entries(am.files ?? {})) {
      if (String(f.source.path).endsWith('.template.json')) continue;
      for (const d of Object.values(f.destinations ?? {}) as any[]) {
        const a: FileAsset = {
          stack, id, sourcePath: path.join(outdir, f.source.path), packaging: f.source.packaging ?? 'file',
          bucketName: d.bucketName, objectKey: d.objectKey, region: d.region,
        };
        model.assets.push(a);
        assetByKey.set(`${d.bucketName}/${d.objectKey}`, a);
      }
    }
  }
  for (const [name, art] of Object.entries(manifest.artifacts)) {
    if (art.type !== 'aws:cloudformation:stack') continue;
    const m = /^aws:\/\/([^/]+)\/(.+)$/.exec(art.environment);
    if (!m || !/^\d{12}$/.test(m[1])) throw new TemplateError(`${name}: environment ${art.environment} is not a concrete account and region`);
    const [, account, region] = m;
    const partition = partitionOf(region);
    const templateFile = path.join(outdir, art.properties.templateFile);
    const template = JSON.parse(readFileSync(templateFile, 'utf8'));
    const r = new StackResolver(name, account, region, partition, template);
    const resources: StackInfo['resources'] = {};
    for (const [id, res] of Object.entries(template.Resources as Record<string, Raw>)) {
      if (res.Condition && !r.condition(res.Condition)) continue;
      resources[id] = { Type: res.Type, Properties: r.resolve(res.Properties ?? {}, `${name}.${id}`) as Record<string, any> };
    }
    const outputs: Record<string, string> = {};
    for (const [k, o] of Object.entries((template.Outputs ?? {}) as Record<string, any>)) outputs[k] = String(r.resolve(o.Value, `${name}.Outputs.${k}`));
    const stack: StackInfo = { name, account, region, partition, templateFile, resources, outputs };
    model.stacks.push(stack);
    collect(model, stack, r, assetByKey);
  }
  return model;
}

function collect(model: DeployedModel, s: StackInfo, r: StackResolver, assetByKey: Map<string, FileAsset>): void {
  const phys = (id: string) => r.physical.get(id)!;
  const attr = (id: string, a: string) => String(r.getAtt(id, a, `${s.name}.${id}`));
  const roles = new Map<string, RoleInfo>();
  for (const [id, res] of Object.entries(s.resources)) {
    const p = res.Properties;
    switch (res.Type) {
      case 'AWS::IAM::Role': {
        const info: RoleInfo = {
          stack: s.name, logicalId: id, name: phys(id), arn: attr(id, 'Arn'),
          trust: p.AssumeRolePolicyDocument, policies: asList(p.Policies).map((x: any) => x.PolicyDocument),
        };
        roles.set(phys(id), info);
        break;
      }
      case 'AWS::Lambda::Function': {
        const code = p.Code ?? {};
        const asset = assetByKey.get(`${code.S3Bucket}/${code.S3Key}`);
        if (!asset && code.ZipFile === undefined) throw new TemplateError(`${s.name}.${id}: Code s3://${code.S3Bucket}/${code.S3Key} is not an asset of this cloud assembly`);
        model.functions.push({
          stack: s.name, logicalId: id, name: phys(id), arn: attr(id, 'Arn'), region: s.region,
          roleArn: String(p.Role), handler: String(p.Handler ?? 'index.handler'), runtime: String(p.Runtime ?? ''), description: String(p.Description ?? ''),
          assetDir: asset ? asset.sourcePath : '',
          environment: (p.Environment?.Variables ?? {}) as Record<string, string>,
          memorySize: Number(p.MemorySize ?? 128),
          timeoutSeconds: Number(p.Timeout ?? 3),
          ephemeralStorageMb: Number(p.EphemeralStorage?.Size ?? 512),
          vpcConfig: p.VpcConfig,
          logGroupName: p.LoggingConfig?.LogGroup,
          reservedConcurrency: p.ReservedConcurrentExecutions,
        });
        break;
      }
      case 'AWS::S3::Bucket':
        model.buckets.push({
          stack: s.name, logicalId: id, name: phys(id), arn: attr(id, 'Arn'), region: s.region,
          objectLock: Boolean(p.ObjectLockEnabled), versioned: p.VersioningConfiguration?.Status === 'Enabled',
          kmsKeyArn: p.BucketEncryption?.ServerSideEncryptionConfiguration?.[0]?.ServerSideEncryptionByDefault?.KMSMasterKeyID,
        });
        break;
      case 'AWS::KMS::Key':
        model.keys.push({ stack: s.name, logicalId: id, keyId: phys(id), arn: attr(id, 'Arn'), region: s.region, aliases: [], policy: p.KeyPolicy });
        model.resourcePolicies.push({ stack: s.name, resourceArn: attr(id, 'Arn'), policy: p.KeyPolicy, kind: 'key' });
        break;
      case 'AWS::SNS::Topic':
        model.topics.push({ stack: s.name, logicalId: id, name: phys(id), arn: attr(id, 'TopicArn'), region: s.region, kmsMasterKeyId: p.KmsMasterKeyId });
        break;
      case 'AWS::StepFunctions::StateMachine': {
        const text = p.DefinitionString ?? (p.Definition !== undefined ? JSON.stringify(p.Definition) : undefined);
        if (text === undefined) throw new TemplateError(`${s.name}.${id}: state machine without DefinitionString or Definition (DefinitionS3Location is not rehearsed)`);
        model.stateMachines.push({
          stack: s.name, logicalId: id, name: phys(id), arn: attr(id, 'Arn'), region: s.region, roleArn: String(p.RoleArn),
          definition: substituteDefinition(text, p.DefinitionSubstitutions ?? {}, `${s.name}.${id}`),
        });
        break;
      }
      case 'AWS::Scheduler::Schedule': {
        const group = String(p.GroupName ?? 'default');
        model.schedules.push({
          stack: s.name, logicalId: id, name: phys(id), group, arn: attr(id, 'Arn'),
          groupArn: `arn:${s.partition}:scheduler:${s.region}:${s.account}:schedule-group/${group}`, region: s.region,
          expression: p.ScheduleExpression, timezone: p.ScheduleExpressionTimezone, state: p.State ?? 'ENABLED',
          targetArn: p.Target.Arn, roleArn: p.Target.RoleArn, input: p.Target.Input, description: p.Description,
        });
        break;
      }
      case 'AWS::Events::Rule':
        model.rules.push({
          stack: s.name, logicalId: id, name: phys(id), arn: attr(id, 'Arn'), region: s.region,
          eventPattern: typeof p.EventPattern === 'string' ? JSON.parse(p.EventPattern) : p.EventPattern, state: p.State ?? 'ENABLED',
          targets: asList(p.Targets).map((t: any) => ({ id: t.Id, arn: t.Arn, roleArn: t.RoleArn, input: t.Input, inputPath: t.InputPath, inputTransformer: t.InputTransformer })),
        });
        break;
      case 'AWS::CloudWatch::Alarm':
        model.alarms.push({
          stack: s.name, logicalId: id, name: phys(id), arn: attr(id, 'Arn'), region: s.region,
          namespace: p.Namespace, metricName: p.MetricName,
          dimensions: Object.fromEntries(asList(p.Dimensions).map((d: any) => [d.Name, String(d.Value)])),
          threshold: Number(p.Threshold), comparison: p.ComparisonOperator, alarmActions: asList(p.AlarmActions).map(String),
          description: p.AlarmDescription,
        });
        break;
      default:
        break;
    }
  }
  // Second pass: what refers to the resources above.
  for (const [id, res] of Object.entries(s.resources)) {
    const p = res.Properties;
    switch (res.Type) {
      case 'AWS::IAM::Policy':
      case 'AWS::IAM::ManagedPolicy':
        for (const roleName of asList(p.Roles).map(String)) {
          const role = roles.get(roleName);
          if (!role) throw new TemplateError(`${s.name}.${id}: attached to role ${roleName}, which this stack does not create`);
          role.policies.push(p.PolicyDocument);
        }
        break;
      case 'AWS::S3::BucketPolicy':
        model.resourcePolicies.push({ stack: s.name, resourceArn: `arn:${s.partition}:s3:::${p.Bucket}`, policy: p.PolicyDocument, kind: 'bucket' });
        break;
      case 'AWS::SNS::TopicPolicy':
        for (const t of asList(p.Topics).map(String)) model.resourcePolicies.push({ stack: s.name, resourceArn: t, policy: p.PolicyDocument, kind: 'topic' });
        break;
      case 'AWS::KMS::Alias': {
        const target = String(p.TargetKeyId);
        const key = model.keys.find((k) => k.stack === s.name && (k.arn === target || k.keyId === target));
        if (!key) throw new TemplateError(`${s.name}.${id}: alias ${p.AliasName} targets ${target}, which this stack does not create`);
        key.aliases.push(String(p.AliasName));
        break;
      }
      default:
        break;
    }
  }
  // Roles attached by ManagedPolicyArns on the role itself.
  for (const [id, res] of Object.entries(s.resources)) {
    if (res.Type !== 'AWS::IAM::Role') continue;
    for (const arn of asList(res.Properties.ManagedPolicyArns).map(String)) {
      const mp = Object.entries(s.resources).find(([mid, m]) => m.Type === 'AWS::IAM::ManagedPolicy' && String(r.ref(mid, id)) === arn);
      if (mp) roles.get(phys(id))!.policies.push(mp[1].Properties.PolicyDocument);
      // AWS managed policies (arn:aws:iam::aws:policy/...) are not in the template: the rehearsal has no copy of them.
      else if (/:iam::aws:policy\//.test(arn)) throw new TemplateError(`${s.name}.${id}: AWS managed policy ${arn} is not known to the rehearsal`);
    }
  }
  model.roles.push(...roles.values());
}

/** The function with this ARN; throws naming it. */
export function functionByArn(model: DeployedModel, arn: string): FunctionInfo {
  const f = model.functions.find((x) => x.arn === arn || `${x.arn}:$LATEST` === arn);
  if (!f) throw new TemplateError(`no function ${arn} in the synthesized stacks`);
  return f;
}

/**
 * Lambda's rule for the 4 KB limit: the JSON of the whole Variables map, in bytes.
 * Counted here on its own, not with infra/deploy-config.ts's lambdaEnvironmentSize:
 * the rehearsal checks what synth produced, so a wrong count there must not hide here.
 */
export function environmentSize(vars: Record<string, string>): number {
  return Buffer.byteLength(JSON.stringify(vars));
}

export const LAMBDA_ENV_LIMIT = 4096;

