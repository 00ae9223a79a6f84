import { describe, it, expect, beforeEach } from 'vitest';
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { mockClient } from 'aws-sdk-client-mock';
import {
  KMSClient,
  EncryptCommand,
  DecryptCommand,
  GenerateDataKeyCommand,
  KMSServiceException,
  NotFoundException,
  DisabledException,
  KMSInvalidStateException,
  InvalidCiphertextException,
  IncorrectKeyException,
  KMSInternalException,
  DependencyTimeoutException,
  LimitExceededException,
} from '@aws-sdk/client-kms';
import { KmsKeyProvider } from '../../functions/adapters/keys/kms.ts';
import {
  NotFoundError,
  PermanentError,
  RetryableError,
  ThrottledError,
  WrongKeyError,
} from '../../functions/core/errors.ts';

const KEY = 'arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab';
const DR_KEY = 'arn:aws:kms:us-west-2:111122223333:key/0987dcba-09fe-87dc-65ba-ab0987654321';
const meta = { $metadata: { httpStatusCode: 400 } };

/**
 * A fake KMS that really encrypts: AES-256-GCM under a per-key secret, with the
 * key id and the encryption context as additional authenticated data, as KMS
 * binds them. Decrypting with another key or context fails like KMS does.
 */
function fakeKms() {
  const keys = new Map<string, Buffer>();
  const keyFor = (id: string) => {
    if (!keys.has(id)) keys.set(id, createHash('sha256').update(`kms key ${id}`).digest());
    return keys.get(id)!;
  };
  const aad = (ctx: Record<string, string> | undefined) =>
    Buffer.from(JSON.stringify(Object.entries(ctx ?? {}).sort(([a], [b]) => a.localeCompare(b))));
  const encrypt = (keyId: string, plain: Uint8Array, ctx?: Record<string, string>) => {
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', keyFor(keyId), iv);
    c.setAAD(aad(ctx));
    const body = Buffer.concat([c.update(plain), c.final()]);
    const id = Buffer.from(keyId);
    return Buffer.concat([Buffer.from([id.length]), id, iv, c.getAuthTag(), body]);
  };
  const decrypt = (requestedKey: string | undefined, blob: Uint8Array, ctx?: Record<string, string>) => {
    const b = Buffer.from(blob);
    const idLen = b[0];
    const keyId = b.subarray(1, 1 + idLen).toString();
    if (requestedKey && requestedKey !== keyId) throw new IncorrectKeyException({ message: 'The key ID in the request does not identify a KMS key that can perform this operation.', ...meta });
    const iv = b.subarray(1 + idLen, 13 + idLen);
    const tag = b.subarray(13 + idLen, 29 + idLen);
    const d = createDecipheriv('aes-256-gcm', keyFor(keyId), iv);
    d.setAAD(aad(ctx));
    d.setAuthTag(tag);
    try {
      return { keyId, plain: Buffer.concat([d.update(b.subarray(29 + idLen)), d.final()]) };
    } catch {
      throw new InvalidCiphertextException({ message: '', ...meta });
    }
  };
  return { encrypt, decrypt };
}

describe('KmsKeyProvider', () => {
  const kms = mockClient(KMSClient);
  const fake = fakeKms();

  beforeEach(() => {
    kms.reset();
    kms.on(EncryptCommand).callsFake((input) => ({
      KeyId: input.KeyId,
      CiphertextBlob: fake.encrypt(input.KeyId, input.Plaintext, input.EncryptionContext),
      EncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
    }));
    kms.on(DecryptCommand).callsFake((input) => {
      const { keyId, plain } = fake.decrypt(input.KeyId, input.CiphertextBlob, input.EncryptionContext);
      return { KeyId: keyId, Plaintext: plain, EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' };
    });
  });

  it('wraps with Encrypt under the vault context and unwraps the same secret with Decrypt', async () => {
    const provider = new KmsKeyProvider({ keyId: KEY, region: 'us-east-1', client: new KMSClient({ region: 'us-east-1' }) });
    const secret = randomBytes(32);
    const wrapped = await provider.wrap(secret, { vault: 'v1' });

    expect(wrapped.type).toBe('kms');
    expect(wrapped.keyId).toBe(KEY);
    expect(Buffer.from(wrapped.blob, 'base64').includes(secret)).toBe(false);
    const enc = kms.commandCalls(EncryptCommand)[0].args[0].input;
    expect(enc.KeyId).toBe(KEY);
    expect(enc.EncryptionContext).toEqual({ vault: 'v1' });
    expect(Buffer.from(enc.Plaintext!).equals(secret)).toBe(true);

    const back = await provider.unwrap(wrapped, { vault: 'v1' });
    expect(back.equals(secret)).toBe(true);
    const dec = kms.commandCalls(DecryptCommand)[0].args[0].input;
    expect(dec.KeyId).toBe(KEY);
    expect(dec.EncryptionContext).toEqual({ vault: 'v1' });
    expect(Buffer.from(dec.CiphertextBlob!).toString('base64')).toBe(wrapped.blob);
  });

  it('refuses to unwrap under another vault context (WrongKeyError)', async () => {
    const provider = new KmsKeyProvider({ keyId: KEY, client: new KMSClient({ region: 'us-east-1' }) });
    const wrapped = await provider.wrap(randomBytes(32), { vault: 'v1' });
    await expect(provider.unwrap(wrapped, { vault: 'v2' })).rejects.toBeInstanceOf(WrongKeyError);
  });

  it('wraps per region: the DR key wraps and unwraps on its own, and neither key opens the other wrapping', async () => {
    const primary = new KmsKeyProvider({ keyId: KEY, region: 'us-east-1', client: new KMSClient({ region: 'us-east-1' }) });
    const dr = new KmsKeyProvider({ keyId: DR_KEY, region: 'us-west-2', client: new KMSClient({ region: 'us-west-2' }) });
    const secret = randomBytes(32);
    const [wp, wd] = [await primary.wrap(secret, { vault: 'v1' }), await dr.wrap(secret, { vault: 'v1' })];
    expect(wd.keyId).toBe(DR_KEY);
    expect(wd.blob).not.toBe(wp.blob);
    expect((await dr.unwrap(wd, { vault: 'v1' })).equals(secret)).toBe(true);
    // A wrapping recorded for another key id is refused without calling KMS.
    await expect(dr.unwrap(wp, { vault: 'v1' })).rejects.toThrow(/is not the key of this wrapping/);
    expect(kms.commandCalls(DecryptCommand)).toHaveLength(1);
    // A blob made by another key, presented as ours: KMS says IncorrectKey.
    await expect(dr.unwrap({ ...wp, keyId: DR_KEY }, { vault: 'v1' })).rejects.toBeInstanceOf(WrongKeyError);
  });

  it('takes the region from a key ARN when none is given', () => {
    expect(new KmsKeyProvider({ keyId: DR_KEY }).region).toBe('us-west-2');
    expect(new KmsKeyProvider({ keyId: 'alias/memvault', region: 'eu-west-1' }).region).toBe('eu-west-1');
  });

  it('rejects an empty key id naming the field', () => {
    expect(() => new KmsKeyProvider({ keyId: ' ', field: 'encryption.kms.secondary' })).toThrow(/encryption\.kms\.secondary: a KMS key id/);
  });

  it('generates a new secret with GenerateDataKey (AES_256) that unwraps to the same bytes', async () => {
    kms.on(GenerateDataKeyCommand).callsFake((input) => {
      const plain = randomBytes(32);
      return { KeyId: input.KeyId, Plaintext: plain, CiphertextBlob: fake.encrypt(input.KeyId, plain, input.EncryptionContext) };
    });
    const { provider, secret, wrapped } = await KmsKeyProvider.generate({
      keyId: KEY,
      region: 'us-east-1',
      client: new KMSClient({ region: 'us-east-1' }),
      context: { vault: 'v9' },
    });
    expect(secret).toHaveLength(32);
    expect(wrapped).toMatchObject({ type: 'kms', keyId: KEY });
    const input = kms.commandCalls(GenerateDataKeyCommand)[0].args[0].input;
    expect(input).toEqual({ KeyId: KEY, KeySpec: 'AES_256', EncryptionContext: { vault: 'v9' } });
    expect((await provider.unwrap(wrapped, { vault: 'v9' })).equals(secret)).toBe(true);
  });

  describe('error mapping', () => {
    const provider = () =>
      new KmsKeyProvider({ keyId: DR_KEY, region: 'us-west-2', client: new KMSClient({ region: 'us-west-2' }), field: 'encryption.kms.secondary' });
    const generic = (name: string, message = name) =>
      new KMSServiceException({ name, $fault: 'client', message, ...meta });
    const wrapped = { type: 'kms', keyId: DR_KEY, blob: Buffer.from('x').toString('base64') };

    it.each([
      ['ThrottlingException', generic('ThrottlingException', 'Rate exceeded')],
      ['KMSInternalException', new KMSInternalException({ message: 'internal', ...meta })],
      ['DependencyTimeoutException', new DependencyTimeoutException({ message: 'timeout', ...meta })],
      ['LimitExceededException', new LimitExceededException({ message: 'limit', ...meta })],
    ])('%s -> ThrottledError naming the key', async (_name, err) => {
      kms.on(EncryptCommand).rejects(err);
      const e = await provider().wrap(randomBytes(32), { vault: 'v1' }).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(ThrottledError);
      expect(e).toBeInstanceOf(RetryableError);
      expect((e as Error).name).toBe('ThrottledError');
      expect((e as Error).message).toContain(DR_KEY);
      expect((e as Error).message).toContain('us-west-2');
    });

    it('NotFoundException -> NotFoundError naming the key, region and setting', async () => {
      kms.on(EncryptCommand).rejects(new NotFoundException({ message: 'Key does not exist', ...meta }));
      const e = await provider().wrap(randomBytes(32), { vault: 'v1' }).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(NotFoundError);
      expect((e as Error).message).toBe(
        `KMS key ${DR_KEY} not found in us-west-2: check encryption.kms.secondary (key id, alias or ARN, and its region)`,
      );
    });

    it.each([
      ['DisabledException', new DisabledException({ message: 'disabled', ...meta }), /is disabled: enable it/],
      ['KMSInvalidStateException', new KMSInvalidStateException({ message: 'pending deletion', ...meta }), /cannot be used in its current state \(pending deletion\)/],
      ['AccessDeniedException', generic('AccessDeniedException', 'User: arn:aws:sts::1:assumed-role/x is not authorized'), /access to KMS key .* denied for kms:Decrypt .*assumed-role\/x/],
    ])('%s -> permanent error naming the key and the fix', async (_name, err, pattern) => {
      kms.on(DecryptCommand).rejects(err);
      const e = await provider().unwrap(wrapped, { vault: 'v1' }).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(PermanentError);
      expect(e).not.toBeInstanceOf(RetryableError);
      expect((e as Error).message).toContain(`KMS key ${DR_KEY} in us-west-2`);
      expect((e as Error).message).toMatch(pattern);
    });

    it.each([
      ['InvalidCiphertextException', new InvalidCiphertextException({ message: '', ...meta })],
      ['IncorrectKeyException', new IncorrectKeyException({ message: 'wrong key', ...meta })],
    ])('%s -> WrongKeyError', async (_name, err) => {
      kms.on(DecryptCommand).rejects(err);
      const e = await provider().unwrap(wrapped, { vault: 'v1' }).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(WrongKeyError);
      expect((e as Error).name).toBe('WrongKeyError');
      expect((e as Error).message).toContain(DR_KEY);
    });

    it('an unknown server fault is retryable, an unknown client error permanent', async () => {
      kms
        .on(EncryptCommand)
        .rejectsOnce(new KMSServiceException({ name: 'InternalFailure', $fault: 'server', message: 'boom', $metadata: { httpStatusCode: 500 } }))
        .rejectsOnce(generic('UnrecognizedClientException', 'bad token'));
      const e1 = await provider().wrap(randomBytes(32), { vault: 'v1' }).catch((x: unknown) => x);
      expect(e1).toBeInstanceOf(RetryableError);
      const e2 = await provider().wrap(randomBytes(32), { vault: 'v1' }).catch((x: unknown) => x);
      expect(e2).toBeInstanceOf(PermanentError);
      expect((e2 as Error).message).toMatch(/UnrecognizedClientException: bad token/);
    });
  });
});
