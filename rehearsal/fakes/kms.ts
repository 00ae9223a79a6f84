// KMS fake: the stack's keys (from the template) with their aliases, each in
// its region, doing real authenticated encryption so that what the vault code
// relies on holds as on AWS:
//   - every key has its own 256-bit secret (HMAC-SHA256 of the gateway's seed
//     and the key ARN: the same seed gives the same keys across restarts);
//   - Encrypt / GenerateDataKey produce AES-256-GCM ciphertext under that
//     secret, with the encryption context (sorted JSON) as additional data,
//     behind a header naming the key, so Decrypt needs no KeyId;
//   - Decrypt with another context, or of a blob another key made under a
//     forged header, fails GCM authentication: InvalidCiphertextException;
//     Decrypt naming a KeyId other than the blob's key: IncorrectKeyException;
//   - a key of another region, or an unknown id or alias: NotFoundException;
//     a disabled key: DisabledException; pending deletion: KMSInvalidStateException.
// IAM: each operation is checked as kms:<Operation> on the key ARN, against
// the caller's policies and the key policy, with the context keys KMS
// supplies (kms:EncryptionContext:*, kms:RequestAlias, kms:ResourceAliases,
// kms:CallerAccount, kms:ViaService when another service calls for the caller).
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { AwsError, str, type CallContext } from './common.ts';

export interface KmsKeySpec {
  keyArn: string;
  region: string;
  /** Alias names (alias/NAME). */
  aliases: string[];
  /** @default 'Enabled' */
  state?: 'Enabled' | 'Disabled' | 'PendingDeletion';
  description?: string;
}

export interface KmsKey {
  arn: string;
  id: string;
  region: string;
  account: string;
  aliases: string[];
  state: 'Enabled' | 'Disabled' | 'PendingDeletion';
  description: string;
  created: Date;
  secret: Buffer;
}

const MAGIC = Buffer.from('MVK1');
const KEY_ARN = /^arn:(aws[a-z-]*):kms:([a-z0-9-]+):(\d{12}):key\/([A-Za-z0-9-]+)$/;
const ALIAS_ARN = /^arn:(aws[a-z-]*):kms:([a-z0-9-]+):(\d{12}):(alias\/.+)$/;

export class KmsFake {
  private readonly keys: KmsKey[] = [];

  constructor(account: string, keys: KmsKeySpec[], seed: Buffer) {
    for (const [i, k] of keys.entries()) {
      const m = KEY_ARN.exec(k.keyArn);
      if (!m) throw new Error(`kmsKeys[${i}].keyArn: expected arn:aws:kms:REGION:ACCOUNT:key/ID, got ${JSON.stringify(k.keyArn)}`);
      if (m[2] !== k.region) throw new Error(`kmsKeys[${i}]: region ${k.region} differs from the region of ${k.keyArn}`);
      if (m[3] !== account) throw new Error(`kmsKeys[${i}]: ${k.keyArn} is not in account ${account}`);
      for (const a of k.aliases) {
        if (!/^alias\/[A-Za-z0-9/_-]+$/.test(a) || a.startsWith('alias/aws/')) throw new Error(`kmsKeys[${i}].aliases: ${JSON.stringify(a)} is not a customer alias name (alias/NAME)`);
      }
      this.keys.push({
        arn: k.keyArn,
        id: m[4],
        region: k.region,
        account,
        aliases: [...k.aliases],
        state: k.state ?? 'Enabled',
        description: k.description ?? '',
        created: new Date(),
        secret: createHmac('sha256', seed).update(k.keyArn).digest(),
      });
    }
  }

  /** Changes a key's state (the rehearsal disables a key to see what a disabled key does). */
  setState(keyArn: string, state: KmsKey['state']): void {
    const k = this.keys.find((x) => x.arn === keyArn);
    if (!k) throw new Error(`no KMS key ${keyArn} in the rehearsal`);
    k.state = state;
  }

  /** The key a KeyId names (key id, key ARN, alias name or alias ARN) in region, if any. */
  find(keyId: string, region: string): KmsKey | undefined {
    const inRegion = this.keys.filter((k) => k.region === region);
    let m = KEY_ARN.exec(keyId);
    if (m) return m[2] === region ? inRegion.find((k) => k.arn === keyId) : undefined;
    m = ALIAS_ARN.exec(keyId);
    if (m) return m[2] === region ? inRegion.find((k) => k.account === m![3] && k.aliases.includes(m![4])) : undefined;
    if (keyId.startsWith('alias/')) return inRegion.find((k) => k.aliases.includes(keyId));
    return inRegion.find((k) => k.id === keyId);
  }

  /** find(), or NotFoundException as KMS words it. */
  resolve(keyId: string, region: string): KmsKey {
    const k = this.find(keyId, region);
    if (!k) {
      if (keyId.startsWith('alias/') || ALIAS_ARN.test(keyId)) throw new AwsError('NotFoundException', `Alias ${aliasArn(keyId, region, this.keys[0]?.account)} is not found.`);
      throw new AwsError('NotFoundException', `Key '${KEY_ARN.test(keyId) ? keyId : `arn:aws:kms:${region}:${this.keys[0]?.account ?? '000000000000'}:key/${keyId}`}' does not exist`);
    }
    return k;
  }

  /**
   * The IAM check of a KMS operation on key k, with KMS's context keys; also
   * used by S3, SNS, Secrets Manager and RDS fakes for the KMS calls those
   * services make on the caller's behalf (viaService set).
   */
  authorize(ctx: CallContext, op: string, k: KmsKey, o: { keyId?: string; encryptionContext?: Record<string, string>; viaService?: string } = {}): void {
    const context: Record<string, string | string[]> = {
      'kms:CallerAccount': ctx.account,
      'kms:KeyOrigin': 'AWS_KMS',
      'kms:KeySpec': 'SYMMETRIC_DEFAULT',
      'kms:KeyUsage': 'ENCRYPT_DECRYPT',
      'kms:ResourceAliases': k.aliases,
    };
    if (o.keyId && (o.keyId.startsWith('alias/') || ALIAS_ARN.test(o.keyId))) {
      context['kms:RequestAlias'] = o.keyId.startsWith('alias/') ? o.keyId : ALIAS_ARN.exec(o.keyId)![4];
    }
    if (o.encryptionContext) {
      context['kms:EncryptionContextKeys'] = Object.keys(o.encryptionContext);
      for (const [key, v] of Object.entries(o.encryptionContext)) context[`kms:EncryptionContext:${key}`] = v;
    }
    if (['Encrypt', 'Decrypt', 'GenerateDataKey', 'GenerateDataKeyWithoutPlaintext', 'ReEncryptFrom', 'ReEncryptTo'].includes(op)) {
      context['kms:EncryptionAlgorithm'] = 'SYMMETRIC_DEFAULT';
    }
    if (o.viaService) context['kms:ViaService'] = o.viaService;
    // A service (RDS, ...) creating a grant for its own resources on the caller's behalf.
    if (o.viaService && op === 'CreateGrant') context['kms:GrantIsForAWSResource'] = 'true';
    ctx.authorize(`kms:${op}`, k.arn, context);
  }

  private usable(k: KmsKey): void {
    if (k.state === 'Disabled') throw new AwsError('DisabledException', `${k.arn} is disabled.`);
    if (k.state === 'PendingDeletion') throw new AwsError('KMSInvalidStateException', `${k.arn} is pending deletion.`);
  }

  /** AES-256-GCM under the key's secret, the encryption context as additional data, behind a header naming the key. */
  seal(k: KmsKey, plaintext: Buffer, context: Record<string, string> | undefined): Buffer {
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', k.secret, iv);
    c.setAAD(aad(context));
    const body = Buffer.concat([c.update(plaintext), c.final()]);
    const arn = Buffer.from(k.arn);
    const len = Buffer.alloc(2);
    len.writeUInt16BE(arn.length);
    return Buffer.concat([MAGIC, len, arn, iv, c.getAuthTag(), body]);
  }

  /** The key ARN a ciphertext names, or InvalidCiphertextException. */
  blobKey(blob: Buffer): string {
    if (blob.length < 6 || !blob.subarray(0, 4).equals(MAGIC)) throw invalidCiphertext();
    const n = blob.readUInt16BE(4);
    if (blob.length < 6 + n + 28) throw invalidCiphertext();
    return blob.subarray(6, 6 + n).toString('utf8');
  }

  open(k: KmsKey, blob: Buffer, context: Record<string, string> | undefined): Buffer {
    const n = blob.readUInt16BE(4);
    const iv = blob.subarray(6 + n, 18 + n);
    const tag = blob.subarray(18 + n, 34 + n);
    const d = createDecipheriv('aes-256-gcm', k.secret, iv);
    d.setAAD(aad(context));
    d.setAuthTag(tag);
    try {
      return Buffer.concat([d.update(blob.subarray(34 + n)), d.final()]);
    } catch {
      throw invalidCiphertext();
    }
  }

  handle(op: string, input: Record<string, unknown>, ctx: CallContext): Record<string, unknown> {
    switch (op) {
      case 'DescribeKey': {
        const keyId = str(input, 'KeyId', true);
        const k = this.resolve(keyId, ctx.region);
        this.authorize(ctx, op, k, { keyId });
        return { KeyMetadata: metadata(k) };
      }
      case 'Encrypt': {
        const keyId = str(input, 'KeyId', true);
        const plaintext = blob(input, 'Plaintext');
        const ec = encryptionContext(input);
        const k = this.resolve(keyId, ctx.region);
        this.authorize(ctx, op, k, { keyId, encryptionContext: ec });
        this.usable(k);
        if (plaintext.length < 1 || plaintext.length > 4096) {
          throw new AwsError('ValidationException', "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: Member must have length less than or equal to 4096");
        }
        return { CiphertextBlob: this.seal(k, plaintext, ec), KeyId: k.arn, EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' };
      }
      case 'GenerateDataKey':
      case 'GenerateDataKeyWithoutPlaintext': {
        const keyId = str(input, 'KeyId', true);
        const ec = encryptionContext(input);
        const k = this.resolve(keyId, ctx.region);
        this.authorize(ctx, op, k, { keyId, encryptionContext: ec });
        this.usable(k);
        const spec = str(input, 'KeySpec');
        const nb = input.NumberOfBytes;
        let bytes: number;
        if (spec !== undefined && nb !== undefined) throw new AwsError('ValidationException', 'Please specify either number of bytes or key spec.');
        if (spec === 'AES_256') bytes = 32;
        else if (spec === 'AES_128') bytes = 16;
        else if (spec !== undefined) throw new AwsError('ValidationException', `1 validation error detected: Value '${spec}' at 'keySpec' failed to satisfy constraint: Member must satisfy enum value set: [AES_256, AES_128]`);
        else if (typeof nb === 'number' && Number.isInteger(nb) && nb >= 1 && nb <= 1024) bytes = nb;
        else if (nb !== undefined) throw new AwsError('ValidationException', "1 validation error detected: Value at 'numberOfBytes' failed to satisfy constraint: Member must have value between 1 and 1024");
        else throw new AwsError('ValidationException', 'Please specify either number of bytes or key spec.');
        const plaintext = randomBytes(bytes);
        const out: Record<string, unknown> = { CiphertextBlob: this.seal(k, plaintext, ec), KeyId: k.arn };
        if (op === 'GenerateDataKey') out.Plaintext = plaintext;
        return out;
      }
      case 'Decrypt': {
        const b = blob(input, 'CiphertextBlob');
        const ec = encryptionContext(input);
        const keyId = str(input, 'KeyId');
        const arn = this.blobKey(b);
        const k = this.find(arn, ctx.region);
        if (!k) throw invalidCiphertext();
        if (keyId !== undefined) {
          const named = this.resolve(keyId, ctx.region);
          if (named.arn !== k.arn) {
            this.authorize(ctx, op, named, { keyId, encryptionContext: ec });
            throw new AwsError('IncorrectKeyException', 'The key ID in the request does not identify a CMK that can perform this operation.');
          }
        }
        this.authorize(ctx, op, k, { keyId, encryptionContext: ec });
        this.usable(k);
        return { Plaintext: this.open(k, b, ec), KeyId: k.arn, EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' };
      }
      case 'ListAliases': {
        const keyId = str(input, 'KeyId');
        let keys = this.keys.filter((k) => k.region === ctx.region);
        if (keyId) keys = [this.resolve(keyId, ctx.region)];
        ctx.authorize('kms:ListAliases', '*');
        return {
          Aliases: keys.flatMap((k) => k.aliases.map((a) => ({ AliasName: a, AliasArn: `arn:aws:kms:${k.region}:${k.account}:${a}`, TargetKeyId: k.id }))),
          Truncated: false,
        };
      }
    }
    throw new AwsError('UnknownOperationException', `the rehearsal's KMS does not implement ${op}`);
  }
}

function aliasArn(keyId: string, region: string, account = '000000000000'): string {
  return keyId.startsWith('alias/') ? `arn:aws:kms:${region}:${account}:${keyId}` : keyId;
}

function invalidCiphertext(): AwsError {
  return new AwsError('InvalidCiphertextException', '');
}

function aad(context: Record<string, string> | undefined): Buffer {
  const entries = Object.entries(context ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return Buffer.from(JSON.stringify(entries));
}

function blob(input: Record<string, unknown>, field: string): Buffer {
  const v = str(input, field, true);
  return Buffer.from(v, 'base64');
}

function encryptionContext(input: Record<string, unknown>): Record<string, string> | undefined {
  const v = input.EncryptionContext;
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v) || Object.values(v).some((x) => typeof x !== 'string')) {
    throw new AwsError('ValidationException', 'EncryptionContext: expected a map of strings to strings');
  }
  return v as Record<string, string>;
}

function metadata(k: KmsKey): Record<string, unknown> {
  return {
    AWSAccountId: k.account,
    KeyId: k.id,
    Arn: k.arn,
    CreationDate: k.created.getTime() / 1000,
    Enabled: k.state === 'Enabled',
    Description: k.description,
    KeyUsage: 'ENCRYPT_DECRYPT',
    KeyState: k.state,
    Origin: 'AWS_KMS',
    KeyManager: 'CUSTOMER',
    CustomerMasterKeySpec: 'SYMMETRIC_DEFAULT',
    KeySpec: 'SYMMETRIC_DEFAULT',
    EncryptionAlgorithms: ['SYMMETRIC_DEFAULT'],
    MultiRegion: false,
  };
}
