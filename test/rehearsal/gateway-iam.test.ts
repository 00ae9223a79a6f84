// The gateway's policy checks at start: a template value the rehearsal failed
// to resolve (an intrinsic left in a policy) or a key in the wrong region is
// refused up front, naming the role or resource, rather than silently
// denying every call later.
import { describe, expect, it } from 'vitest';
import { startGateway, type GatewayOptions } from '../../rehearsal/gateway.ts';
import { PolicyEvaluator, sessionArn } from '../../rehearsal/iam.ts';

const ACCOUNT = '111122223333';
const ROLE = `arn:aws:iam::${ACCOUNT}:role/memvault-backup`;
const base: GatewayOptions = { account: ACCOUNT, s3Endpoint: 'http://127.0.0.1:9', principals: [], resourcePolicies: [], kmsKeys: [], topics: [] };

describe('gateway start-up checks', () => {
  it('refuses an unresolved intrinsic in a role policy, naming the role', async () => {
    await expect(startGateway({
      ...base,
      principals: [{ roleArn: ROLE, policies: [{ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 'kms:Decrypt', Resource: { 'Fn::GetAtt': ['Key', 'Arn'] } }] }] }],
    })).rejects.toThrow(/principals\[arn:aws:iam::111122223333:role\/memvault-backup\].*Resource/);
  });

  it('refuses a bucket policy without a principal, naming the bucket', async () => {
    await expect(startGateway({
      ...base,
      resourcePolicies: [{ resourceArn: 'arn:aws:s3:::vault', policy: { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 's3:GetObject', Resource: 'arn:aws:s3:::vault/*' }] } }],
    })).rejects.toThrow(/resourcePolicies\[arn:aws:s3:::vault\]/);
  });

  it('refuses a KMS key whose region differs from its ARN, and a bad account id', async () => {
    await expect(startGateway({ ...base, kmsKeys: [{ keyArn: `arn:aws:kms:us-east-1:${ACCOUNT}:key/k1`, region: 'us-west-2', aliases: [] }] })).rejects.toThrow(/kmsKeys\[0\]: region us-west-2/);
    await expect(startGateway({ ...base, account: '1234' })).rejects.toThrow(/account: expected a 12-digit/);
  });
});

describe('PolicyEvaluator', () => {
  it('treats a role session as the role in resource policies, and a role path is not part of the session ARN', async () => {
    expect(sessionArn(`arn:aws:iam::${ACCOUNT}:role/service/memvault-backup`, 'fn')).toBe(`arn:aws:sts::${ACCOUNT}:assumed-role/memvault-backup/fn`);
    const ev = await PolicyEvaluator.create({
      account: ACCOUNT,
      principals: [{ roleArn: ROLE, policies: [] }],
      resourcePolicies: [{
        resourceArn: 'arn:aws:s3:::vault',
        policy: { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Principal: { AWS: ROLE }, Action: 's3:GetObject', Resource: 'arn:aws:s3:::vault/*' }] },
      }],
    });
    expect(ev.decide({ principal: ROLE, action: 's3:GetObject', resource: 'arn:aws:s3:::vault/k' }).allowed).toBe(true);
    expect(ev.decide({ principal: ROLE, action: 's3:PutObject', resource: 'arn:aws:s3:::vault/k' }).allowed).toBe(false);
    // A KMS key without a policy in the template gets AWS's default one: IAM alone decides.
    expect(ev.decide({ principal: ROLE, action: 'kms:Decrypt', resource: `arn:aws:kms:us-east-1:${ACCOUNT}:key/k1` }).reason).toMatch(/no identity-based/);
    expect(ev.decide({ principal: `arn:aws:iam::${ACCOUNT}:role/other`, action: 's3:GetObject', resource: 'arn:aws:s3:::vault/k' }).reason).toMatch(/not a principal of this rehearsal/);
  });
});
