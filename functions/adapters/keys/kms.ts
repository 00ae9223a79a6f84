// AWS KMS key provider: envelope encryption of the vault master secret. The
// 32-byte secret is encrypted (Encrypt) under a KMS key with the encryption
// context { vault: <id> }, so a wrapping only opens for the vault it was made
// for. Each region wraps with its own key: the DR vault uses another
// KmsKeyProvider built with the DR key and region, so it decrypts on its own.
//
// KMS failures become memvault's named errors: throttling and transient
// service faults are ThrottledError / RetryableError (retried by the caller or
// the state machine); a missing, disabled or forbidden key is a permanent error
// that names the key, its region and the setting to fix; a ciphertext this key
// did not make is WrongKeyError.
import type { KMSClient } from '@aws-sdk/client-kms';
import type { KeyProvider, WrappedSecret } from '../../core/ports.ts';
import {
  ConfigError,
  NotFoundError,
  PermanentError,
  RetryableError,
  ThrottledError,
  WrongKeyError,
  errorMessage,
} from '../../core/errors.ts';

export interface KmsKeyProviderOptions {
  /** Key ARN, key id, alias name (alias/...) or alias ARN. Recorded as the wrapping's keyId. */
  keyId: string;
  /** AWS region of the key. @default the client's (or the environment's) region */
  region?: string;
  /** A KMS client to use (tests, custom credentials). @default new KMSClient({ region }) */
  client?: KMSClient;
  /** The configuration field that names this key, used in error messages. @default 'encryption.kms' */
  field?: string;
}

let kmsModule: Promise<typeof import('@aws-sdk/client-kms')> | undefined;
/** The KMS SDK, loaded on first use: a local-key config never pays its memory. */
const kmsSdk = () => (kmsModule ??= import('@aws-sdk/client-kms'));

type KmsOperation = 'Encrypt' | 'Decrypt' | 'GenerateDataKey';

const THROTTLING = new Set([
  'ThrottlingException',
  'Throttling',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'KMSInternalException',
  'DependencyTimeoutException',
  'LimitExceededException',
]);

export class KmsKeyProvider implements KeyProvider {
  readonly type = 'kms';
  readonly keyId: string;
  readonly region: string | undefined;
  readonly field: string;
  private client: KMSClient | undefined;

  constructor(opts: KmsKeyProviderOptions) {
    if (!opts.keyId || !opts.keyId.trim()) {
      throw new ConfigError(`${opts.field ?? 'encryption.kms'}: a KMS key id, alias or ARN is required`);
    }
    this.keyId = opts.keyId;
    this.region = opts.region ?? regionOfArn(opts.keyId);
    this.field = opts.field ?? 'encryption.kms';
    this.client = opts.client;
  }

  private async sdk(): Promise<{ sdk: typeof import('@aws-sdk/client-kms'); client: KMSClient }> {
    const sdk = await kmsSdk();
    this.client ??= new sdk.KMSClient(this.region ? { region: this.region } : {});
    return { sdk, client: this.client };
  }

  /** Creates a provider and a new vault master secret wrapped by it (GenerateDataKey, AES_256). */
  static async generate(
    opts: KmsKeyProviderOptions & { context: Record<string, string> },
  ): Promise<{ provider: KmsKeyProvider; secret: Buffer; wrapped: WrappedSecret }> {
    const provider = new KmsKeyProvider(opts);
    const { secret, wrapped } = await provider.generateSecret(opts.context);
    return { provider, secret, wrapped };
  }

  /** A new 32-byte secret from KMS together with its wrapping under this key. */
  async generateSecret(context: Record<string, string>): Promise<{ secret: Buffer; wrapped: WrappedSecret }> {
    const { sdk, client } = await this.sdk();
    const out = await this.call('GenerateDataKey', () =>
      client.send(new sdk.GenerateDataKeyCommand({ KeyId: this.keyId, KeySpec: 'AES_256', EncryptionContext: context })),
    );
    if (!out.Plaintext || !out.CiphertextBlob) {
      throw new PermanentError(`KMS GenerateDataKey with key ${this.keyId} returned no data key`);
    }
    return { secret: Buffer.from(out.Plaintext), wrapped: this.wrapping(out.CiphertextBlob) };
  }

  async wrap(secret: Buffer, context: Record<string, string>): Promise<WrappedSecret> {
    const { sdk, client } = await this.sdk();
    const out = await this.call('Encrypt', () =>
      client.send(new sdk.EncryptCommand({ KeyId: this.keyId, Plaintext: secret, EncryptionContext: context })),
    );
    if (!out.CiphertextBlob) throw new PermanentError(`KMS Encrypt with key ${this.keyId} returned no ciphertext`);
    return this.wrapping(out.CiphertextBlob);
  }

  async unwrap(w: WrappedSecret, context: Record<string, string>): Promise<Buffer> {
    if (w.type !== this.type || w.keyId !== this.keyId) {
      throw new WrongKeyError(`KMS key ${this.keyId} is not the key of this wrapping (it has ${w.type} key ${w.keyId})`);
    }
    const { sdk, client } = await this.sdk();
    const out = await this.call('Decrypt', () =>
      client.send(
        new sdk.DecryptCommand({ KeyId: this.keyId, CiphertextBlob: Buffer.from(w.blob, 'base64'), EncryptionContext: context }),
      ),
    );
    if (!out.Plaintext) throw new PermanentError(`KMS Decrypt with key ${this.keyId} returned no plaintext`);
    return Buffer.from(out.Plaintext);
  }

  private wrapping(blob: Uint8Array): WrappedSecret {
    return { type: this.type, keyId: this.keyId, blob: Buffer.from(blob).toString('base64') };
  }

  private async call<T>(op: KmsOperation, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw await this.mapError(op, err);
    }
  }

  private async describeRegion(): Promise<string> {
    if (this.region) return this.region;
    try {
      const r = (await this.sdk()).client.config.region;
      return (typeof r === 'function' ? await r() : r) || 'the default region';
    } catch {
      return 'the default region';
    }
  }

  private async mapError(op: KmsOperation, err: unknown): Promise<Error> {
    const name = (err as { name?: string } | null)?.name ?? '';
    const detail = errorMessage(err);
    const key = this.keyId;
    const region = await this.describeRegion();
    const where = `KMS key ${key} in ${region}`;
    if (THROTTLING.has(name)) {
      return new ThrottledError(`KMS ${op} with key ${key} in ${region} was throttled or timed out (${name}); retry later`, { cause: err });
    }
    switch (name) {
      case 'NotFoundException':
        return new NotFoundError(`KMS key ${key} not found in ${region}: check ${this.field} (key id, alias or ARN, and its region)`);
      case 'DisabledException':
        return new PermanentError(`${where} is disabled: enable it (aws kms enable-key) or point ${this.field} at an enabled key`, { cause: err });
      case 'KMSInvalidStateException':
        return new PermanentError(
          `${where} cannot be used in its current state (${detail}): cancel a pending deletion or finish the key import, or check ${this.field}`,
          { cause: err },
        );
      case 'AccessDeniedException':
      case 'AccessDenied':
        return new PermanentError(
          `access to ${where} denied for kms:${op} (${detail}): allow kms:Encrypt, kms:Decrypt and kms:GenerateDataKey for this role in the key policy or IAM policy`,
          { cause: err },
        );
      case 'InvalidKeyUsageException':
        return new PermanentError(`${where} cannot be used for kms:${op}: ${this.field} must name a symmetric ENCRYPT_DECRYPT key`, { cause: err });
      case 'InvalidCiphertextException':
        return new WrongKeyError(
          `${where} cannot unwrap this vault's secret: the wrapping was made by another key, for another vault, or is damaged`,
        );
      case 'IncorrectKeyException':
        return new WrongKeyError(`${where} did not wrap this vault's secret: use the key that made this wrapping`);
      case 'KeyUnavailableException':
        return new RetryableError(`${where} is temporarily unavailable (custom key store): ${detail}`, { cause: err });
    }
    const fault = (err as { $fault?: string } | null)?.$fault;
    const status = (err as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode;
    if (fault === 'server' || (status !== undefined && status >= 500)) {
      return new RetryableError(`KMS ${op} with key ${key} in ${region} failed on the service side: ${detail}`, { cause: err });
    }
    if (status === 429) {
      return new ThrottledError(`KMS ${op} with key ${key} in ${region} was throttled; retry later`, { cause: err });
    }
    return new PermanentError(`KMS ${op} with key ${key} in ${region} failed: ${name ? `${name}: ` : ''}${detail}`, { cause: err });
  }
}

/** The region of a key or alias ARN (arn:aws:kms:REGION:ACCOUNT:key/...), if keyId is one. */
function regionOfArn(keyId: string): string | undefined {
  const m = /^arn:aws[a-z-]*:kms:([a-z0-9-]+):\d{12}:/.exec(keyId);
  return m ? m[1] : undefined;
}
