// SSM Parameter Store fake through the gateway with the real SDK client:
// paths and pagination as ssm-config reads them, Overwrite semantics as it
// restores them, ParameterNotFound, and the IAM and KMS checks of each call.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  SSMClient, GetParameterCommand, GetParametersCommand, GetParametersByPathCommand, DescribeParametersCommand, PutParameterCommand,
  paginateGetParametersByPath,
} from '@aws-sdk/client-ssm';
import { KMSClient, EncryptCommand } from '@aws-sdk/client-kms';
import { startGateway, type Gateway } from '../../rehearsal/gateway.ts';

const ACCOUNT = '111122223333';
const REGION = 'eu-west-1';
const CONFIG_ROLE = `arn:aws:iam::${ACCOUNT}:role/memvault-ssm-config`;
const PLANNER = `arn:aws:iam::${ACCOUNT}:role/memvault-planner`;
const KEY = `arn:aws:kms:${REGION}:${ACCOUNT}:key/44444444-4444-4444-4444-444444444444`;
const param = (name: string) => `arn:aws:ssm:${REGION}:${ACCOUNT}:parameter${name}`;

let gw: Gateway;

beforeAll(async () => {
  gw = await startGateway({
    account: ACCOUNT,
    region: REGION,
    s3Endpoint: 'http://127.0.0.1:9',
    principals: [
      {
        roleArn: CONFIG_ROLE,
        policies: [{
          Version: '2012-10-17',
          Statement: [
            { Effect: 'Allow', Action: ['ssm:GetParameter', 'ssm:GetParameters', 'ssm:GetParametersByPath', 'ssm:PutParameter'], Resource: [param('/memvault/prod'), param('/memvault/prod/*'), param('/memvault/restored/*')] },
            { Effect: 'Allow', Action: 'ssm:DescribeParameters', Resource: '*' },
            // Only through Parameter Store: the role cannot call kms:Decrypt itself.
            { Effect: 'Allow', Action: ['kms:Decrypt', 'kms:Encrypt'], Resource: KEY, Condition: { StringEquals: { 'kms:ViaService': `ssm.${REGION}.amazonaws.com` } } },
          ],
        }],
      },
      {
        // Reads the path but has no kms:Decrypt on the customer key.
        roleArn: PLANNER,
        policies: [{ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: ['ssm:GetParametersByPath', 'ssm:GetParameter'], Resource: [param('/memvault/prod'), param('/memvault/prod/*')] }] }],
      },
    ],
    resourcePolicies: [],
    kmsKeys: [{ keyArn: KEY, region: REGION, aliases: ['alias/prod-config'] }],
    topics: [],
    seed: {
      parameters: [
        { name: '/memvault/prod/db/url', value: 'postgres://memory@db/memory', type: 'SecureString', keyId: 'alias/prod-config' },
        { name: '/memvault/prod/tiers', value: 'working,episodic', type: 'StringList' },
        ...Array.from({ length: 12 }, (_v, i) => ({ name: `/memvault/prod/model/p${String(i).padStart(2, '0')}`, value: String(i) })),
        { name: '/memvault/other/x', value: 'not on the path' },
      ],
    },
  });
});

afterAll(async () => {
  await gw?.close();
});

const ssm = (role: string) => new SSMClient({ endpoint: gw.url, region: REGION, credentials: gw.credentialsFor(role) });
async function nameOf(p: Promise<unknown>): Promise<string> {
  return p.then(() => 'no error', (e: Error) => e.name);
}

describe('SSM fake', () => {
  it('reads a path recursively in pages of at most 10, decrypting with the key policy and IAM allowing it', async () => {
    const names: string[] = [];
    let pages = 0;
    for await (const page of paginateGetParametersByPath({ client: ssm(CONFIG_ROLE), pageSize: 10 }, { Path: '/memvault/prod', Recursive: true, WithDecryption: true })) {
      pages++;
      for (const p of page.Parameters ?? []) names.push(p.Name!);
      if (page.Parameters?.some((p) => p.Name === '/memvault/prod/db/url')) {
        expect(page.Parameters.find((p) => p.Name === '/memvault/prod/db/url')!.Value).toBe('postgres://memory@db/memory');
      }
    }
    expect(pages).toBe(2);
    expect(names).toHaveLength(14);
    expect(names).not.toContain('/memvault/other/x');
    const oneLevel = await ssm(CONFIG_ROLE).send(new GetParametersByPathCommand({ Path: '/memvault/prod', Recursive: false }));
    expect(oneLevel.Parameters!.map((p) => p.Name)).toEqual(['/memvault/prod/tiers']);
    expect(await nameOf(ssm(CONFIG_ROLE).send(new GetParametersByPathCommand({ Path: '/memvault/prod', MaxResults: 11 })))).toBe('ValidationException');
    // The kms:ViaService condition holds only for Parameter Store's calls, not the role's own.
    const kms = new KMSClient({ endpoint: gw.url, region: REGION, credentials: gw.credentialsFor(CONFIG_ROLE) });
    expect(await nameOf(kms.send(new EncryptCommand({ KeyId: KEY, Plaintext: Buffer.from('x') })))).toBe('AccessDeniedException');
  });

  it('denies decryption to a role the customer key does not serve, and the path outside the role', async () => {
    expect(await nameOf(ssm(PLANNER).send(new GetParameterCommand({ Name: '/memvault/prod/db/url', WithDecryption: true })))).toBe('AccessDeniedException');
    const enc = await ssm(PLANNER).send(new GetParameterCommand({ Name: '/memvault/prod/db/url' }));
    expect(enc.Parameter!.Value).not.toContain('postgres');
    expect(await nameOf(ssm(PLANNER).send(new GetParameterCommand({ Name: '/memvault/other/x' })))).toBe('AccessDeniedException');
    expect(gw.calls.at(-1)!.checks[0]).toMatchObject({ action: 'ssm:GetParameter', resource: param('/memvault/other/x'), allowed: false });
  });

  it('describes a path with filters and pages of 50, as ssm-config collects key ids', async () => {
    const out = await ssm(CONFIG_ROLE).send(new DescribeParametersCommand({ ParameterFilters: [{ Key: 'Path', Option: 'Recursive', Values: ['/memvault/prod'] }], MaxResults: 5 }));
    expect(out.Parameters).toHaveLength(5);
    expect(out.NextToken).toBeTruthy();
    expect(out.Parameters![0]).toMatchObject({ Name: '/memvault/prod/db/url', Type: 'SecureString', KeyId: 'alias/prod-config' });
  });

  it('puts with Overwrite semantics and versions, and answers ParameterNotFound / InvalidParameters for unknown names', async () => {
    const c = ssm(CONFIG_ROLE);
    expect((await c.send(new PutParameterCommand({ Name: '/memvault/restored/a', Value: 'one', Type: 'String' }))).Version).toBe(1);
    expect(await nameOf(c.send(new PutParameterCommand({ Name: '/memvault/restored/a', Value: 'two', Type: 'String' })))).toBe('ParameterAlreadyExists');
    expect((await c.send(new PutParameterCommand({ Name: '/memvault/restored/a', Value: 'two', Type: 'String', Overwrite: true }))).Version).toBe(2);
    expect((await c.send(new GetParameterCommand({ Name: '/memvault/restored/a' }))).Parameter).toMatchObject({ Value: 'two', Version: 2 });
    expect(await nameOf(c.send(new GetParameterCommand({ Name: '/memvault/prod/none' })))).toBe('ParameterNotFound');
    const many = await c.send(new GetParametersCommand({ Names: ['/memvault/prod/tiers', '/memvault/prod/none'] }));
    expect(many.Parameters!.map((p) => p.Name)).toEqual(['/memvault/prod/tiers']);
    expect(many.InvalidParameters).toEqual(['/memvault/prod/none']);
    expect(await nameOf(c.send(new PutParameterCommand({ Name: '/memvault/restored/p', Value: 'abc', Type: 'String', AllowedPattern: '\\d+' })))).toBe('ParameterPatternMismatchException');
    expect(await nameOf(c.send(new PutParameterCommand({ Name: '/memvault/restored/big', Value: 'x'.repeat(4097), Type: 'String' })))).toBe('ValidationException');
  });
});
