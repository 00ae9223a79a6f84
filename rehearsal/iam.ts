// IAM decisions for the rehearsal: every AWS call a rehearsed function makes,
// and every call a service makes on the stack's behalf (a schedule starting a
// state machine, EventBridge publishing to the alert topic), is decided here
// by @cloud-copilot/iam-simulate from the template's policies, as AWS would:
//   - the caller's identity policies (a role's inline and managed policies,
//     resolved from the template), none for a service principal;
//   - the resource policy of the target: bucket policy for S3 buckets and
//     objects, key policy for KMS keys (always present on AWS: a key without
//     one in the options gets the default policy, which delegates to IAM via
//     the account root), topic policy for SNS topics, none elsewhere;
//   - the request context the real service supplies (the caller passes the
//     service-specific keys; aws:Principal*, aws:SecureTransport and the time
//     keys are added here).
// Same-account rules are the simulator's: an allow in either the identity or
// the resource policy suffices, except for KMS, where the key policy must
// allow the caller itself or delegate to the account.
//
// Policies are validated once, when the evaluator is built (a template value
// that was not resolved, an unknown condition operator...), and the error
// names the role or resource. Each decision then uses runUnsafeSimulation:
// it is synchronous (authorize() is called from synchronous emulation code)
// and it keeps every context key, whereas the validating entry point drops
// keys it cannot match to the action's list, among them
// kms:EncryptionContext:<key>, which key policies commonly test.
import { runSimulation, runUnsafeSimulation, type Simulation } from '@cloud-copilot/iam-simulate';

export interface PolicyDocument {
  Version?: string;
  Statement: unknown[] | unknown;
}

export interface Decision {
  allowed: boolean;
  /** Why: AWS's wording for a denial ("User: ... is not authorized to perform: ..."), or what allowed it. */
  reason: string;
}

export interface EvaluatorOptions {
  account: string;
  principals: { roleArn: string; policies: PolicyDocument[] }[];
  resourcePolicies: { resourceArn: string; policy: PolicyDocument }[];
}

export interface DecideRequest {
  /** A role ARN (arn:aws:iam::ACCOUNT:role/NAME) or a service principal (events.amazonaws.com). */
  principal: string;
  action: string;
  resource: string;
  context?: Record<string, string | string[]>;
  /** Session name of the role session (Lambda uses the function name). @default 'rehearsal' */
  sessionName?: string;
}

const SERVICE_PRINCIPAL = /^[a-z0-9.-]+\.amazonaws\.com(\.cn)?$/;

export function isServicePrincipal(p: string): boolean {
  return SERVICE_PRINCIPAL.test(p);
}

/** The default key policy AWS gives a key created without one: the account may delegate through IAM. */
export function defaultKeyPolicy(account: string): PolicyDocument {
  return {
    Version: '2012-10-17',
    Statement: [{ Sid: 'Enable IAM User Permissions', Effect: 'Allow', Principal: { AWS: `arn:aws:iam::${account}:root` }, Action: 'kms:*', Resource: '*' }],
  };
}

/** arn:aws:sts::ACCOUNT:assumed-role/NAME/SESSION for a role ARN (the role's path is not part of it). */
export function sessionArn(roleArn: string, sessionName = 'rehearsal'): string {
  const m = /^arn:(aws[a-z-]*):iam::(\d{12}):role\/(?:.*\/)?([^/]+)$/.exec(roleArn);
  if (!m) throw new Error(`principal: expected a role ARN (arn:aws:iam::ACCOUNT:role/NAME), got ${JSON.stringify(roleArn)}`);
  return `arn:${m[1]}:sts::${m[2]}:assumed-role/${m[3]}/${sessionName}`;
}

// iam-simulate takes pre-validated policies in this shape (ValidatedPolicy of
// @cloud-copilot/iam-policy); the unsafe entry point needs it for the
// resource policy, whose name it reads for its analysis.
interface Validated {
  __validated: true;
  policyDocument: unknown;
  metadata: { name: string };
  errors: [];
}
const validated = (policyDocument: unknown, name: string): Validated => ({ __validated: true, policyDocument, metadata: { name }, errors: [] });

export class PolicyEvaluator {
  readonly account: string;
  private readonly identity = new Map<string, { name: string; policy: unknown }[]>();
  private readonly resources = new Map<string, Validated>();

  private constructor(o: EvaluatorOptions) {
    this.account = o.account;
    for (const p of o.principals) {
      this.identity.set(p.roleArn, p.policies.map((policy, i) => ({ name: `${p.roleArn} policy ${i + 1}`, policy })));
    }
    for (const r of o.resourcePolicies) this.resources.set(r.resourceArn, validated(r.policy, `resource policy of ${r.resourceArn}`));
  }

  /** Builds an evaluator after checking every policy; a malformed one fails naming its role or resource. */
  static async create(o: EvaluatorOptions): Promise<PolicyEvaluator> {
    if (!/^\d{12}$/.test(o.account)) throw new Error(`account: expected a 12-digit AWS account id, got ${JSON.stringify(o.account)}`);
    const problems: string[] = [];
    const base = (principal: string): Simulation['request'] => ({
      principal,
      action: 'sts:GetCallerIdentity',
      resource: { resource: '*', accountId: o.account },
      contextVariables: {},
    });
    for (const p of o.principals) {
      sessionArn(p.roleArn);
      const r = await runSimulation(
        {
          request: base(p.roleArn),
          identityPolicies: p.policies.map((policy, i) => ({ name: `policy ${i + 1}`, policy })),
          serviceControlPolicies: [],
          resourceControlPolicies: [],
        },
        {},
      );
      if (r.resultType === 'error') problems.push(`principals[${p.roleArn}]: ${JSON.stringify(r.errors.identityPolicyErrors ?? r.errors.message)}`);
    }
    for (const rp of o.resourcePolicies) {
      const r = await runSimulation(
        {
          request: base(`arn:aws:iam::${o.account}:root`),
          identityPolicies: [],
          serviceControlPolicies: [],
          resourceControlPolicies: [],
          resourcePolicy: rp.policy,
        },
        {},
      );
      if (r.resultType === 'error') problems.push(`resourcePolicies[${rp.resourceArn}]: ${JSON.stringify(r.errors.resourcePolicyErrors ?? r.errors.message)}`);
      // The simulator's validation lets this through; S3, KMS and SNS refuse such a policy.
      const statements = [rp.policy.Statement].flat() as { Principal?: unknown; NotPrincipal?: unknown }[];
      statements.forEach((st, i) => {
        if (st && typeof st === 'object' && st.Principal === undefined && st.NotPrincipal === undefined) {
          problems.push(`resourcePolicies[${rp.resourceArn}]: Statement[${i}] has no Principal (a resource policy must name one)`);
        }
      });
    }
    if (problems.length > 0) throw new Error(`invalid IAM policies:\n  ${problems.join('\n  ')}`);
    return new PolicyEvaluator(o);
  }

  hasPrincipal(roleArn: string): boolean {
    return this.identity.has(roleArn);
  }

  /** The resource policy that governs an ARN: an object's is its bucket's; a KMS key always has one. */
  resourcePolicyFor(resource: string): Validated | undefined {
    const exact = this.resources.get(resource);
    if (exact) return exact;
    const s3 = /^arn:aws[a-z-]*:s3:::([^/]+)\//.exec(resource);
    if (s3) return this.resources.get(`arn:aws:s3:::${s3[1]}`);
    if (/^arn:aws[a-z-]*:kms:[^:]+:\d{12}:key\//.test(resource)) {
      return validated(defaultKeyPolicy(this.account), `default key policy of ${resource}`);
    }
    return undefined;
  }

  decide(req: DecideRequest): Decision {
    const service = isServicePrincipal(req.principal);
    if (!service && !this.identity.has(req.principal)) {
      return { allowed: false, reason: `${req.principal} is not a principal of this rehearsal (no role with that ARN in the template)` };
    }
    const principal = service ? req.principal : sessionArn(req.principal, req.sessionName);
    const now = new Date();
    const context: Record<string, string | string[]> = {
      'aws:SecureTransport': 'true',
      'aws:CurrentTime': now.toISOString().replace(/\.\d{3}Z$/, 'Z'),
      'aws:EpochTime': String(Math.floor(now.getTime() / 1000)),
      ...(service
        ? { 'aws:PrincipalServiceName': req.principal, 'aws:PrincipalIsAWSService': 'true' }
        : {
            'aws:PrincipalArn': req.principal,
            'aws:PrincipalAccount': this.account,
            'aws:PrincipalType': 'AssumedRole',
            'aws:PrincipalIsAWSService': 'false',
          }),
      ...req.context,
    };
    const identityPolicies = service ? [] : (this.identity.get(req.principal) ?? []);
    const resourcePolicy = this.resourcePolicyFor(req.resource);
    const run = (ids: typeof identityPolicies, rp: Validated | undefined) =>
      runUnsafeSimulation(
        {
          request: { principal, action: req.action, resource: { resource: req.resource, accountId: this.account }, contextVariables: context },
          identityPolicies: ids,
          serviceControlPolicies: [],
          resourceControlPolicies: [],
          resourcePolicy: rp,
        },
        {},
      );
    const result = run(identityPolicies, resourcePolicy);
    if (result === 'Allowed') return { allowed: true, reason: `${req.action} on ${req.resource} allowed for ${principal}` };
    const head = `User: ${principal} is not authorized to perform: ${req.action} on resource: ${req.resource}`;
    if (result === 'ExplicitlyDenied') {
      const inIdentity = identityPolicies.length > 0 && run(identityPolicies, undefined) === 'ExplicitlyDenied';
      return { allowed: false, reason: `${head} with an explicit deny in ${inIdentity ? 'an identity-based policy' : 'a resource-based policy'}` };
    }
    // Implicit: say which side lacks the allow. For a KMS key, judge the
    // identity side as the default (delegating) key policy would.
    const isKey = /:kms:/.test(req.resource);
    const identitySide = service
      ? false
      : run(identityPolicies, isKey ? validated(defaultKeyPolicy(this.account), 'default key policy') : undefined) === 'Allowed';
    if (identitySide && isKey) return { allowed: false, reason: `${head} because the key policy does not allow it (nor delegate to the account's IAM policies)` };
    if (identitySide) return { allowed: false, reason: `${head} because no resource-based policy allows the ${req.action} action` };
    if (service || resourcePolicy) {
      return { allowed: false, reason: `${head} because no identity-based or resource-based policy allows the ${req.action} action` };
    }
    return { allowed: false, reason: `${head} because no identity-based policy allows the ${req.action} action` };
  }
}
