// IAM evaluation of synthesized templates, the way AWS judges a request:
// the caller's role policies and the resource's policy (bucket, key, topic)
// evaluated together by @cloud-copilot/iam-simulate (conditions, wildcards,
// NotResource, explicit denies, KMS key-policy rules). CloudFormation
// intrinsics are resolved as a deploy would: Ref / GetAtt to physical names
// (CloudFormation's <stack>-<logical id>-<suffix> where a resource has none),
// Fn::Join, Fn::Sub and the pseudo parameters.
import { runSimulation, type EvaluationResult } from '@cloud-copilot/iam-simulate';
import type { Template } from 'aws-cdk-lib/assertions';
import { statementsOfRoleId } from './helpers.ts';

export interface StackTemplate {
  name: string;
  region: string;
  account: string;
  template: Template;
}

type Json = any;

/** The physical name CloudFormation gives a resource without one. */
const generated = (stack: string, id: string) => `${stack}-${id}-GENERATED`;

export class IamWorld {
  private readonly stacks: { s: StackTemplate; res: Record<string, Json> }[];

  constructor(stacks: StackTemplate[]) {
    this.stacks = stacks.map((s) => ({ s, res: s.template.toJSON().Resources as Record<string, Json> }));
  }

  /** Resolves intrinsics in `v` within stack `st`. */
  resolve(st: StackTemplate, v: Json): Json {
    const res = this.stacks.find((x) => x.s === st)!.res;
    const part = 'aws';
    const r = (x: Json): Json => {
      if (Array.isArray(x)) return x.map(r);
      if (!x || typeof x !== 'object') return x;
      if ('Ref' in x) return this.ref(st, res, x.Ref);
      if ('Fn::GetAtt' in x) return this.getAtt(st, res, x['Fn::GetAtt'][0], x['Fn::GetAtt'][1]);
      if ('Fn::Join' in x) return (r(x['Fn::Join'][1]) as string[]).join(x['Fn::Join'][0]);
      if ('Fn::Sub' in x) {
        const text = typeof x['Fn::Sub'] === 'string' ? x['Fn::Sub'] : x['Fn::Sub'][0];
        return text.replace(/\$\{([^}]+)\}/g, (_: string, n: string) => (n.includes('.') ? this.getAtt(st, res, n.split('.')[0], n.split('.')[1]) : this.ref(st, res, n)));
      }
      return Object.fromEntries(Object.entries(x).map(([k, y]) => [k, r(y)]));
    };
    void part;
    return r(v);
  }

  private ref(st: StackTemplate, res: Record<string, Json>, id: string): string {
    switch (id) {
      case 'AWS::Partition': return 'aws';
      case 'AWS::Region': return st.region;
      case 'AWS::AccountId': return st.account;
      case 'AWS::URLSuffix': return 'amazonaws.com';
      case 'AWS::StackName': return st.name;
    }
    const x = res[id];
    if (!x) throw new Error(`${st.name}: Ref to unknown resource ${id}`);
    const p = x.Properties ?? {};
    switch (x.Type) {
      case 'AWS::S3::Bucket': return p.BucketName ?? generated(st.name, id).toLowerCase();
      case 'AWS::SNS::Topic': return `arn:aws:sns:${st.region}:${st.account}:${p.TopicName ?? generated(st.name, id)}`;
      case 'AWS::IAM::Role': return p.RoleName ?? generated(st.name, id);
      case 'AWS::KMS::Key': return id;
      case 'AWS::StepFunctions::StateMachine': return `arn:aws:states:${st.region}:${st.account}:stateMachine:${p.StateMachineName ?? generated(st.name, id)}`;
      case 'AWS::Events::Rule': return p.Name ?? generated(st.name, id);
      case 'AWS::CloudWatch::Alarm': return p.AlarmName ?? generated(st.name, id);
      case 'AWS::Lambda::Function': return p.FunctionName ?? generated(st.name, id);
      case 'AWS::Logs::LogGroup': return p.LogGroupName ?? generated(st.name, id);
      case 'AWS::EC2::SecurityGroup': return `sg-${id.toLowerCase().slice(0, 17)}`;
      default: return generated(st.name, id);
    }
  }

  private getAtt(st: StackTemplate, res: Record<string, Json>, id: string, attr: string): string {
    const x = res[id];
    if (!x) throw new Error(`${st.name}: GetAtt of unknown resource ${id}`);
    const name = this.ref(st, res, id);
    if (attr !== 'Arn' && attr !== 'TopicArn' && attr !== 'GroupId') return `${name}.${attr}`;
    switch (x.Type) {
      case 'AWS::S3::Bucket': return `arn:aws:s3:::${name}`;
      case 'AWS::SNS::Topic': return name;
      case 'AWS::IAM::Role': return `arn:aws:iam::${st.account}:role/${name}`;
      case 'AWS::KMS::Key': return `arn:aws:kms:${st.region}:${st.account}:key/${id}`;
      case 'AWS::StepFunctions::StateMachine': return name;
      case 'AWS::Events::Rule': return `arn:aws:events:${st.region}:${st.account}:rule/${name}`;
      case 'AWS::CloudWatch::Alarm': return `arn:aws:cloudwatch:${st.region}:${st.account}:alarm:${name}`;
      case 'AWS::Lambda::Function': return `arn:aws:lambda:${st.region}:${st.account}:function:${name}`;
      case 'AWS::Logs::LogGroup': return `arn:aws:logs:${st.region}:${st.account}:log-group:${name}:*`;
      case 'AWS::EC2::SecurityGroup': return name;
      default: return `arn:aws:${x.Type.split('::')[1].toLowerCase()}:${st.region}:${st.account}:${name}`;
    }
  }

  /** The stack and logical id of the role named `roleName`. */
  role(roleName: string): { st: StackTemplate; id: string; arn: string } {
    for (const { s, res } of this.stacks) {
      for (const [id, x] of Object.entries(res)) {
        if (x.Type === 'AWS::IAM::Role' && x.Properties?.RoleName === roleName) return { st: s, id, arn: `arn:aws:iam::${s.account}:role/${roleName}` };
      }
    }
    throw new Error(`no role named ${roleName}`);
  }

  /** The role a function (by its Description "memvault <handler>") runs as, in the stack named `stack`. */
  functionRole(stack: string, handler: string): string {
    const { s, res } = this.stacks.find((x) => x.s.name === stack)!;
    const fn = Object.values(res).find((x) => x.Type === 'AWS::Lambda::Function' && x.Properties.Description === `memvault ${handler}`);
    if (!fn) throw new Error(`${stack}: no function for ${handler}`);
    return this.ref(s, res, fn.Properties.Role['Fn::GetAtt'][0]);
  }

  /** The handlers (function descriptions) of a stack. */
  handlers(stack: string): string[] {
    const { res } = this.stacks.find((x) => x.s.name === stack)!;
    return Object.values(res).filter((x) => x.Type === 'AWS::Lambda::Function').map((x) => String(x.Properties.Description).replace('memvault ', '')).sort();
  }

  /** The resource policy that governs `arn` (bucket policy, key policy, topic policy), resolved; undefined if none. */
  resourcePolicy(arn: string): Json | undefined {
    for (const { s, res } of this.stacks) {
      for (const [id, x] of Object.entries(res)) {
        if (x.Type === 'AWS::S3::BucketPolicy' && arn.startsWith('arn:aws:s3:::')) {
          const bucket = this.resolve(s, x.Properties.Bucket);
          if (arn === `arn:aws:s3:::${bucket}` || arn.startsWith(`arn:aws:s3:::${bucket}/`)) return this.resolve(s, x.Properties.PolicyDocument);
        }
        if (x.Type === 'AWS::KMS::Key' && arn === `arn:aws:kms:${s.region}:${s.account}:key/${id}`) return this.resolve(s, x.Properties.KeyPolicy);
        if (x.Type === 'AWS::SNS::TopicPolicy') {
          const topics = this.resolve(s, x.Properties.Topics) as string[];
          if (topics.includes(arn)) return this.resolve(s, x.Properties.PolicyDocument);
        }
      }
    }
    return undefined;
  }

  /** The ARN of the KMS key with alias `alias` in `region`, and its aliases. */
  keyByAlias(region: string, alias: string): { arn: string; aliases: string[] } {
    for (const { s, res } of this.stacks) {
      if (s.region !== region) continue;
      for (const x of Object.values(res)) {
        if (x.Type === 'AWS::KMS::Alias' && x.Properties.AliasName === alias) {
          return { arn: this.resolve(s, { 'Fn::GetAtt': [x.Properties.TargetKeyId['Fn::GetAtt'][0], 'Arn'] }), aliases: [alias] };
        }
      }
    }
    throw new Error(`no key with alias ${alias} in ${region}`);
  }

  /** The identity policy statements of a role, resolved. */
  identityPolicy(roleName: string): Json {
    const { st, id } = this.role(roleName);
    return { Version: '2012-10-17', Statement: this.resolve(st, statementsOfRoleId(st.template, id)) };
  }

  /**
   * What AWS decides for `principal` (a role name, or a service principal like
   * events.amazonaws.com) calling `action` on `resource` (an ARN), with its
   * role's policies and the resource's policy. `context` adds request context
   * keys (s3:prefix, kms:ViaService, aws:SourceArn...); aws:PrincipalArn,
   * aws:PrincipalAccount and aws:SecureTransport are set from the request.
   * `o.identity` / `o.principalArn` evaluate another principal (an
   * administrator with a broad policy, the account root) against the resource policies.
   */
  async decide(principal: string, action: string, resource: string, context: Record<string, string | string[]> = {}, o: { identity?: Json; principalArn?: string } = {}): Promise<EvaluationResult> {
    const service = principal.endsWith('.amazonaws.com');
    const account = this.stacks[0].s.account;
    const principalArn = o.principalArn ?? (service ? principal : this.role(principal).arn);
    // A key of another stack or account (a source's customer key): its default policy delegates to the account's IAM.
    const resourcePolicy = this.resourcePolicy(resource) ?? (/^arn:aws:kms:[^:]+:(\d{12}):key\//.test(resource)
      ? { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Principal: { AWS: `arn:aws:iam::${resource.split(':')[4]}:root` }, Action: 'kms:*', Resource: '*' }] }
      : undefined);
    const kmsAliases = resource.includes(':kms:') ? this.aliasesOf(resource) : undefined;
    const result = await runSimulation({
      request: {
        principal: principalArn,
        action,
        resource: { resource, accountId: account },
        contextVariables: {
          'aws:SecureTransport': 'true',
          ...(service ? {} : { 'aws:PrincipalArn': principalArn, 'aws:PrincipalAccount': account }),
          ...(kmsAliases ? { 'kms:ResourceAliases': kmsAliases } : {}),
          ...context,
        },
      },
      identityPolicies: o.identity ? [{ name: 'given', policy: o.identity }] : service ? [] : [{ name: 'role', policy: this.identityPolicy(principal) }],
      serviceControlPolicies: [],
      resourceControlPolicies: [],
      ...(resourcePolicy ? { resourcePolicy } : {}),
    }, {});
    if (result.resultType === 'error') throw new Error(`${principal} ${action} ${resource}: ${JSON.stringify(result.errors)}`);
    return result.overallResult;
  }

  private aliasesOf(keyArn: string): string[] {
    for (const { s, res } of this.stacks) {
      for (const x of Object.values(res)) {
        if (x.Type === 'AWS::KMS::Alias' && this.resolve(s, { 'Fn::GetAtt': [x.Properties.TargetKeyId['Fn::GetAtt'][0], 'Arn'] }) === keyArn) return [x.Properties.AliasName];
      }
    }
    return [];
  }
}
