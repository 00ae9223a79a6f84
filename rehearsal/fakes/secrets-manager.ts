// Secrets Manager fake: secrets per region with versions and staging labels,
// as the functions use them (database credentials, ssm-config backups and
// restores):
//   - ARN arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-XXXXXX (six random
//     characters, as AWS adds); SecretId takes the name, the full ARN or the
//     ARN without the suffix;
//   - GetSecretValue / DescribeSecret / PutSecretValue of an unknown secret:
//     ResourceNotFoundException; CreateSecret of an existing name:
//     ResourceExistsException; PutSecretValue moves AWSCURRENT to the new
//     version and AWSPREVIOUS to the old one;
//   - ListSecrets filters by name prefix, paginated with NextToken.
// IAM: secretsmanager:<Operation> on the secret ARN (ListSecrets on *), and a
// secret under a customer KMS key also needs kms:Decrypt (reads) or
// kms:GenerateDataKey (writes) on it via secretsmanager.REGION.amazonaws.com,
// with the SecretARN encryption context, as Secrets Manager asks KMS.
import { randomUUID } from 'node:crypto';
import { AwsError, paginate, randomSuffix, str, type CallContext } from './common.ts';
import type { KmsFake } from './kms.ts';

export interface SecretSeed {
  /** A name, or a full secret ARN (its region and suffix are kept). */
  name: string;
  value: string;
  region?: string;
  kmsKeyId?: string;
}

interface Version {
  id: string;
  stages: string[];
  created: Date;
  secretString?: string;
  secretBinary?: Buffer;
}

interface Secret {
  arn: string;
  name: string;
  region: string;
  description?: string;
  kmsKeyId?: string;
  tags: { Key: string; Value: string }[];
  created: Date;
  changed: Date;
  versions: Version[];
}

const SECRET_ARN = /^arn:(aws[a-z-]*):secretsmanager:([a-z0-9-]+):(\d{12}):secret:(.+)$/;
const NAME = /^[A-Za-z0-9/_+=.@-]{1,512}$/;

export class SecretsManagerFake {
  private readonly secrets: Secret[] = [];

  constructor(
    readonly account: string,
    seeds: SecretSeed[],
    defaultRegion: string,
    private readonly kms: KmsFake,
  ) {
    for (const [i, s] of seeds.entries()) {
      const m = SECRET_ARN.exec(s.name);
      let region = s.region ?? defaultRegion;
      let name = s.name;
      let arn: string;
      if (m) {
        if (m[3] !== account) throw new Error(`seed.secrets[${i}]: ${s.name} is not in account ${account}`);
        const sm = /^(.+)-[A-Za-z0-9]{6}$/.exec(m[4]);
        if (!sm) throw new Error(`seed.secrets[${i}].name: a secret ARN ends with -XXXXXX (six characters), got ${JSON.stringify(s.name)}`);
        region = m[2];
        name = sm[1];
        arn = s.name;
      } else {
        if (!NAME.test(s.name)) throw new Error(`seed.secrets[${i}].name: ${JSON.stringify(s.name)} is not a valid secret name`);
        arn = `arn:aws:secretsmanager:${region}:${account}:secret:${name}-${randomSuffix(6)}`;
      }
      const now = new Date();
      this.secrets.push({
        arn, name, region, kmsKeyId: s.kmsKeyId, tags: [], created: now, changed: now,
        versions: [{ id: randomUUID(), stages: ['AWSCURRENT'], created: now, secretString: s.value }],
      });
    }
  }

  /** The secret SecretId names in region: name, ARN, or ARN without its suffix. */
  private find(id: string, region: string): Secret | undefined {
    const inRegion = this.secrets.filter((s) => s.region === region);
    const m = SECRET_ARN.exec(id);
    if (m) {
      if (m[2] !== region) return undefined;
      return inRegion.find((s) => s.arn === id) ?? inRegion.find((s) => `arn:aws:secretsmanager:${s.region}:${this.account}:secret:${s.name}` === id);
    }
    return inRegion.find((s) => s.name === id);
  }

  private get(id: string, ctx: CallContext, action: string): Secret {
    const s = this.find(id, ctx.region);
    // An unknown secret is authorized against the ARN it would have (AWS
    // answers AccessDenied before telling whether it exists).
    const arn = s?.arn ?? (SECRET_ARN.test(id) ? id : `arn:aws:secretsmanager:${ctx.region}:${this.account}:secret:${id}`);
    ctx.authorize(`secretsmanager:${action}`, arn, { 'secretsmanager:SecretId': arn });
    if (!s) throw new AwsError('ResourceNotFoundException', "Secrets Manager can't find the specified secret.");
    return s;
  }

  private kmsCheck(s: Secret, ctx: CallContext, op: 'Decrypt' | 'GenerateDataKey'): void {
    if (!s.kmsKeyId) return; // aws/secretsmanager: an AWS managed key every principal of the account may use through the service
    const k = this.kms.find(s.kmsKeyId, ctx.region);
    if (!k) throw new AwsError('DecryptionFailure', `Secrets Manager can't decrypt the protected secret text using the provided KMS key: key ${s.kmsKeyId} not found.`);
    try {
      this.kms.authorize(ctx, op, k, { keyId: s.kmsKeyId, encryptionContext: { SecretARN: s.arn, SecretVersionId: s.versions[0].id }, viaService: `secretsmanager.${ctx.region}.amazonaws.com` });
    } catch (err) {
      if (err instanceof AwsError && err.accessDenied) {
        throw new AwsError(op === 'Decrypt' ? 'AccessDeniedException' : 'AccessDeniedException', `Access to KMS is not allowed: ${err.message}`, 400, { accessDenied: true });
      }
      throw err;
    }
    if (k.state !== 'Enabled') {
      throw new AwsError(op === 'Decrypt' ? 'DecryptionFailure' : 'EncryptionFailure', `Secrets Manager can't ${op === 'Decrypt' ? 'decrypt' : 'encrypt'} the protected secret text using the provided KMS key: ${k.arn} is ${k.state}.`);
    }
  }

  handle(op: string, input: Record<string, unknown>, ctx: CallContext): Record<string, unknown> {
    switch (op) {
      case 'GetSecretValue': {
        const s = this.get(str(input, 'SecretId', true), ctx, op);
        const vid = str(input, 'VersionId');
        const stage = str(input, 'VersionStage') ?? (vid ? undefined : 'AWSCURRENT');
        const v = s.versions.find((x) => (vid === undefined || x.id === vid) && (stage === undefined || x.stages.includes(stage)));
        if (!v) throw new AwsError('ResourceNotFoundException', "Secrets Manager can't find the specified secret value for staging label: " + (stage ?? vid));
        this.kmsCheck(s, ctx, 'Decrypt');
        return {
          ARN: s.arn, Name: s.name, VersionId: v.id, VersionStages: v.stages, CreatedDate: v.created.getTime() / 1000,
          ...(v.secretString !== undefined ? { SecretString: v.secretString } : { SecretBinary: v.secretBinary }),
        };
      }
      case 'DescribeSecret': {
        const s = this.get(str(input, 'SecretId', true), ctx, op);
        return describe(s);
      }
      case 'ListSecrets': {
        ctx.authorize('secretsmanager:ListSecrets', '*');
        const max = input.MaxResults === undefined ? 100 : Number(input.MaxResults);
        if (!Number.isInteger(max) || max < 1 || max > 100) throw new AwsError('InvalidParameterException', 'MaxResults: expected 1 to 100');
        const filters = (input.Filters ?? []) as { Key?: string; Values?: string[] }[];
        let list = this.secrets.filter((s) => s.region === ctx.region);
        for (const f of filters) {
          if (f.Key !== 'name') throw new AwsError('InvalidParameterException', `the rehearsal's Secrets Manager filters only by name, got filter ${f.Key}`);
          list = list.filter((s) => (f.Values ?? []).some((v) => s.name.startsWith(v)));
        }
        list.sort((a, b) => (a.name < b.name ? -1 : 1));
        const { page, next } = paginate(list, max, str(input, 'NextToken'), () => new AwsError('InvalidNextTokenException', 'The NextToken value is invalid.'));
        return { SecretList: page.map(describe), ...(next ? { NextToken: next } : {}) };
      }
      case 'PutSecretValue': {
        const s = this.get(str(input, 'SecretId', true), ctx, op);
        const value = secretValue(input);
        this.kmsCheck(s, ctx, 'GenerateDataKey');
        const id = str(input, 'ClientRequestToken') ?? randomUUID();
        const existing = s.versions.find((v) => v.id === id);
        if (existing) {
          if (existing.secretString !== value.secretString || !sameBytes(existing.secretBinary, value.secretBinary)) {
            throw new AwsError('ResourceExistsException', 'You can\'t modify an existing version, you can only create a new version.');
          }
          return { ARN: s.arn, Name: s.name, VersionId: id, VersionStages: existing.stages };
        }
        for (const v of s.versions) v.stages = v.stages.filter((x) => x !== 'AWSPREVIOUS');
        for (const v of s.versions) if (v.stages.includes('AWSCURRENT')) v.stages = v.stages.map((x) => (x === 'AWSCURRENT' ? 'AWSPREVIOUS' : x));
        s.versions = s.versions.filter((v) => v.stages.length > 0);
        s.versions.unshift({ id, stages: ['AWSCURRENT'], created: new Date(), ...value });
        s.changed = new Date();
        return { ARN: s.arn, Name: s.name, VersionId: id, VersionStages: ['AWSCURRENT'] };
      }
      case 'CreateSecret': {
        const name = str(input, 'Name', true);
        if (!NAME.test(name)) throw new AwsError('ValidationException', `Invalid name. Must be a valid name containing alphanumeric characters, or any of the following: -/_+=.@!`);
        const arn = `arn:aws:secretsmanager:${ctx.region}:${this.account}:secret:${name}-${randomSuffix(6)}`;
        ctx.authorize('secretsmanager:CreateSecret', arn, { 'secretsmanager:Name': name });
        if (this.secrets.some((s) => s.region === ctx.region && s.name === name)) {
          throw new AwsError('ResourceExistsException', `The operation failed because the secret ${name} already exists.`);
        }
        const tags = ((input.Tags ?? []) as { Key: string; Value: string }[]).map((t) => ({ Key: t.Key, Value: t.Value }));
        if (tags.length > 0) ctx.authorize('secretsmanager:TagResource', arn);
        const kmsKeyId = str(input, 'KmsKeyId');
        if (kmsKeyId && !this.kms.find(kmsKeyId, ctx.region)) throw new AwsError('ResourceNotFoundException', `The KMS key ${kmsKeyId} was not found.`);
        const now = new Date();
        const s: Secret = { arn, name, region: ctx.region, description: str(input, 'Description'), kmsKeyId, tags, created: now, changed: now, versions: [] };
        const hasValue = input.SecretString !== undefined || input.SecretBinary !== undefined;
        if (hasValue) {
          this.kmsCheck({ ...s, versions: [{ id: '', stages: [], created: now }] }, ctx, 'GenerateDataKey');
          s.versions.push({ id: str(input, 'ClientRequestToken') ?? randomUUID(), stages: ['AWSCURRENT'], created: now, ...secretValue(input) });
        }
        this.secrets.push(s);
        return { ARN: s.arn, Name: s.name, ...(hasValue ? { VersionId: s.versions[0].id } : {}) };
      }
    }
    throw new AwsError('UnknownOperationException', `the rehearsal's Secrets Manager does not implement ${op}`);
  }
}

function describe(s: Secret): Record<string, unknown> {
  return {
    ARN: s.arn,
    Name: s.name,
    ...(s.description !== undefined ? { Description: s.description } : {}),
    ...(s.kmsKeyId !== undefined ? { KmsKeyId: s.kmsKeyId } : {}),
    ...(s.tags.length > 0 ? { Tags: s.tags } : {}),
    CreatedDate: s.created.getTime() / 1000,
    LastChangedDate: s.changed.getTime() / 1000,
    VersionIdsToStages: Object.fromEntries(s.versions.map((v) => [v.id, v.stages])),
  };
}

function secretValue(input: Record<string, unknown>): { secretString?: string; secretBinary?: Buffer } {
  const s = str(input, 'SecretString');
  const b = str(input, 'SecretBinary');
  if ((s === undefined) === (b === undefined)) {
    throw new AwsError('InvalidParameterException', 'You must provide either SecretString or SecretBinary, but not both.');
  }
  if (s !== undefined) {
    if (Buffer.byteLength(s) > 65536) throw new AwsError('InvalidParameterException', 'SecretString is longer than 65536 bytes.');
    return { secretString: s };
  }
  return { secretBinary: Buffer.from(b!, 'base64') };
}

function sameBytes(a: Buffer | undefined, b: Buffer | undefined): boolean {
  return a === b || (!!a && !!b && a.equals(b));
}
