// SSM Parameter Store fake: parameters per region, as ssm-config backs them
// up and restores them and as deploy-time configuration is read:
//   - GetParameter / GetParameters (at most 10 names; unknown ones come back
//     in InvalidParameters) / GetParametersByPath (Recursive or one level,
//     at most 10 a page, NextToken) / DescribeParameters (ParameterFilters
//     Path Recursive|OneLevel and Name Equals|BeginsWith, at most 50 a page) /
//     PutParameter (a new version; an existing name without Overwrite is
//     ParameterAlreadyExists; AllowedPattern enforced; 4 KB Standard values) /
//     DeleteParameter;
//   - an unknown name: ParameterNotFound.
// IAM: ssm:<Operation> on arn:aws:ssm:REGION:ACCOUNT:parameter/NAME (the
// path's ARN for GetParametersByPath, * for DescribeParameters). A
// SecureString under a customer key also needs kms:Decrypt (read with
// decryption) or kms:Encrypt (put) on it via ssm.REGION.amazonaws.com, with
// the PARAMETER_ARN encryption context, as Parameter Store asks KMS.
import { AwsError, paginate, str, type CallContext } from './common.ts';
import type { KmsFake } from './kms.ts';

export interface ParameterSeed {
  name: string;
  value: string;
  /** @default 'String' */
  type?: string;
  region?: string;
  keyId?: string;
}

interface Parameter {
  name: string;
  region: string;
  type: 'String' | 'StringList' | 'SecureString';
  value: string;
  version: number;
  modified: Date;
  dataType: string;
  keyId?: string;
  description?: string;
  tier: string;
  allowedPattern?: string;
}

const DEFAULT_KEY = 'alias/aws/ssm';
const TYPES = new Set(['String', 'StringList', 'SecureString']);

export class SsmFake {
  private readonly params = new Map<string, Parameter>();

  constructor(
    readonly account: string,
    seeds: ParameterSeed[],
    defaultRegion: string,
    private readonly kms: KmsFake,
  ) {
    for (const [i, s] of seeds.entries()) {
      const type = s.type ?? 'String';
      if (!TYPES.has(type)) throw new Error(`seed.parameters[${i}].type: expected String, StringList or SecureString, got ${JSON.stringify(type)}`);
      const problem = nameProblem(s.name);
      if (problem) throw new Error(`seed.parameters[${i}].name: ${problem}`);
      const region = s.region ?? defaultRegion;
      this.params.set(`${region} ${s.name}`, {
        name: s.name, region, type: type as Parameter['type'], value: s.value, version: 1, modified: new Date(), dataType: 'text',
        keyId: type === 'SecureString' ? (s.keyId ?? DEFAULT_KEY) : undefined, tier: 'Standard',
      });
    }
  }

  private arn(name: string, region: string): string {
    return `arn:aws:ssm:${region}:${this.account}:parameter${name.startsWith('/') ? name : `/${name}`}`;
  }

  private inRegion(region: string): Parameter[] {
    return [...this.params.values()].filter((p) => p.region === region).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  private kmsCheck(p: Pick<Parameter, 'type' | 'keyId' | 'name'>, ctx: CallContext, op: 'Decrypt' | 'Encrypt'): void {
    if (p.type !== 'SecureString' || !p.keyId || p.keyId === DEFAULT_KEY) return; // the AWS managed key serves every principal of the account
    const k = this.kms.find(p.keyId, ctx.region);
    if (!k) throw new AwsError('InvalidKeyId', `Invalid KeyId ${p.keyId}`);
    try {
      this.kms.authorize(ctx, op, k, { keyId: p.keyId, encryptionContext: { PARAMETER_ARN: this.arn(p.name, ctx.region) }, viaService: `ssm.${ctx.region}.amazonaws.com` });
    } catch (err) {
      if (err instanceof AwsError && err.accessDenied) {
        throw new AwsError('AccessDeniedException', `${err.message} (KMS ${op} for parameter ${p.name})`, 400, { accessDenied: true });
      }
      throw err;
    }
    if (k.state !== 'Enabled') throw new AwsError('InvalidKeyId', `${k.arn} is ${k.state}`);
  }

  private view(p: Parameter, ctx: CallContext, decrypt: boolean): Record<string, unknown> {
    if (decrypt) this.kmsCheck(p, ctx, 'Decrypt');
    return {
      Name: p.name, Type: p.type, Version: p.version, LastModifiedDate: p.modified.getTime() / 1000, ARN: this.arn(p.name, p.region), DataType: p.dataType,
      // Without decryption a SecureString comes back as its ciphertext: never the plain value.
      Value: p.type === 'SecureString' && !decrypt ? Buffer.from(`encrypted:${p.name}:${p.version}`).toString('base64') : p.value,
    };
  }

  handle(op: string, input: Record<string, unknown>, ctx: CallContext): Record<string, unknown> {
    switch (op) {
      case 'GetParameter': {
        const name = str(input, 'Name', true);
        ctx.authorize('ssm:GetParameter', this.arn(name, ctx.region));
        const p = this.params.get(`${ctx.region} ${name}`);
        if (!p) throw new AwsError('ParameterNotFound', '');
        return { Parameter: this.view(p, ctx, input.WithDecryption === true) };
      }
      case 'GetParameters': {
        const names = (input.Names ?? []) as string[];
        if (!Array.isArray(names) || names.length < 1 || names.length > 10) {
          throw new AwsError('ValidationException', "1 validation error detected: Value at 'names' failed to satisfy constraint: Member must have length less than or equal to 10");
        }
        for (const n of names) ctx.authorize('ssm:GetParameters', this.arn(n, ctx.region));
        const found = names.map((n) => this.params.get(`${ctx.region} ${n}`));
        return {
          Parameters: found.filter((p): p is Parameter => !!p).map((p) => this.view(p, ctx, input.WithDecryption === true)),
          InvalidParameters: names.filter((_n, i) => !found[i]),
        };
      }
      case 'GetParametersByPath': {
        const path = str(input, 'Path', true);
        if (!path.startsWith('/')) throw new AwsError('ValidationException', `The parameter doesn't meet the parameter name requirements. The parameter name must begin with a forward slash "/".`);
        ctx.authorize('ssm:GetParametersByPath', this.arn(path.replace(/\/+$/, '') || '/', ctx.region));
        const max = input.MaxResults === undefined ? 10 : Number(input.MaxResults);
        if (!Number.isInteger(max) || max < 1 || max > 10) {
          throw new AwsError('ValidationException', "1 validation error detected: Value at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to 10");
        }
        const matches = this.inRegion(ctx.region).filter((p) => under(p.name, path, input.Recursive === true));
        const { page, next } = paginate(matches, max, str(input, 'NextToken'), () => new AwsError('ValidationException', 'The specified NextToken is not valid.'));
        return { Parameters: page.map((p) => this.view(p, ctx, input.WithDecryption === true)), ...(next ? { NextToken: next } : {}) };
      }
      case 'DescribeParameters': {
        ctx.authorize('ssm:DescribeParameters', '*');
        const max = input.MaxResults === undefined ? 50 : Number(input.MaxResults);
        if (!Number.isInteger(max) || max < 1 || max > 50) {
          throw new AwsError('ValidationException', "1 validation error detected: Value at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to 50");
        }
        let list = this.inRegion(ctx.region);
        for (const f of (input.ParameterFilters ?? []) as { Key: string; Option?: string; Values?: string[] }[]) {
          const values = f.Values ?? [];
          if (f.Key === 'Path') {
            const recursive = (f.Option ?? 'OneLevel') === 'Recursive';
            list = list.filter((p) => values.some((v) => under(p.name, v, recursive)));
          } else if (f.Key === 'Name') {
            const begins = f.Option === 'BeginsWith';
            list = list.filter((p) => values.some((v) => (begins ? p.name.startsWith(v) : p.name === v)));
          } else if (f.Key === 'Type') {
            list = list.filter((p) => values.includes(p.type));
          } else {
            throw new AwsError('InvalidFilterKey', `the rehearsal's SSM does not filter by ${f.Key}`);
          }
        }
        const { page, next } = paginate(list, max, str(input, 'NextToken'), () => new AwsError('InvalidNextToken', 'The specified NextToken is not valid.'));
        return {
          Parameters: page.map((p) => ({
            Name: p.name, ARN: this.arn(p.name, p.region), Type: p.type, Version: p.version, LastModifiedDate: p.modified.getTime() / 1000,
            DataType: p.dataType, Tier: p.tier, ...(p.keyId ? { KeyId: p.keyId } : {}), ...(p.description !== undefined ? { Description: p.description } : {}),
            ...(p.allowedPattern !== undefined ? { AllowedPattern: p.allowedPattern } : {}),
          })),
          ...(next ? { NextToken: next } : {}),
        };
      }
      case 'PutParameter': {
        const name = str(input, 'Name', true);
        const value = str(input, 'Value', true);
        const problem = nameProblem(name);
        if (problem) throw new AwsError('ValidationException', problem);
        ctx.authorize('ssm:PutParameter', this.arn(name, ctx.region));
        const existing = this.params.get(`${ctx.region} ${name}`);
        if (existing && input.Overwrite !== true) throw new AwsError('ParameterAlreadyExists', 'The parameter already exists. To overwrite this value, set the overwrite option in the request to true.');
        const type = (str(input, 'Type') ?? existing?.type) as Parameter['type'] | undefined;
        if (!type) throw new AwsError('ValidationException', 'A parameter type is required when you create a parameter.');
        if (!TYPES.has(type)) throw new AwsError('ValidationException', `Type ${type} is not one of String, StringList, SecureString`);
        const tier = str(input, 'Tier') ?? existing?.tier ?? 'Standard';
        if (tier === 'Standard' && Buffer.byteLength(value) > 4096) {
          throw new AwsError('ValidationException', 'Standard tier parameters support a maximum parameter value of 4096 characters. To create a larger parameter value, upgrade the parameter to use the advanced-parameter tier.');
        }
        const allowedPattern = str(input, 'AllowedPattern') ?? existing?.allowedPattern;
        if (allowedPattern !== undefined && !new RegExp(`^(?:${allowedPattern})$`).test(value)) {
          throw new AwsError('ParameterPatternMismatchException', `Parameter value, cannot be validated against allowedPattern: ${allowedPattern}`);
        }
        const keyId = type === 'SecureString' ? (str(input, 'KeyId') ?? existing?.keyId ?? DEFAULT_KEY) : undefined;
        this.kmsCheck({ type, keyId, name }, ctx, 'Encrypt');
        const p: Parameter = {
          name, region: ctx.region, type, value, version: (existing?.version ?? 0) + 1, modified: new Date(),
          dataType: str(input, 'DataType') ?? existing?.dataType ?? 'text', keyId, description: str(input, 'Description') ?? existing?.description, tier, allowedPattern,
        };
        this.params.set(`${ctx.region} ${name}`, p);
        return { Version: p.version, Tier: p.tier };
      }
      case 'DeleteParameter': {
        const name = str(input, 'Name', true);
        ctx.authorize('ssm:DeleteParameter', this.arn(name, ctx.region));
        if (!this.params.delete(`${ctx.region} ${name}`)) throw new AwsError('ParameterNotFound', '');
        return {};
      }
    }
    throw new AwsError('UnknownOperationException', `the rehearsal's SSM does not implement ${op}`);
  }
}

/** Whether name is below path (every level, or only directly in it). */
function under(name: string, path: string, recursive: boolean): boolean {
  const base = path.replace(/\/+$/, '');
  if (!name.startsWith(`${base}/`)) return false;
  return recursive || !name.slice(base.length + 1).includes('/');
}

function nameProblem(name: string): string | undefined {
  if (!/^[A-Za-z0-9_./-]{1,2048}$/.test(name)) return `parameter name ${JSON.stringify(name)}: only letters, digits and _ . - / are allowed`;
  if (name.includes('/') && !name.startsWith('/')) return `parameter name ${JSON.stringify(name)}: a hierarchical name must begin with a forward slash "/"`;
  if (name.split('/').length - 1 > 15) return `parameter name ${JSON.stringify(name)}: at most 15 levels`;
  if (/^\/?(aws|ssm)/i.test(name)) return `parameter name ${JSON.stringify(name)}: names beginning with aws or ssm are reserved`;
  return undefined;
}
