// Shared helpers of the infra tests: build the two-region app from a config
// document without bundling (inline handler code), and read IAM policies out
// of a synthesized template to ask what a role may and may not do.
import path from 'node:path';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { parse as parseYaml } from 'yaml';
import { readFileSync } from 'node:fs';
import { parseConfig } from '../../functions/core/config.ts';
import { kindSchemas } from '../../functions/components/registry.ts';
import { requireAws } from '../../infra/deploy-config.ts';
import { APP_CONTEXT, buildMemvaultApp, type MemvaultAppOptions, type MemvaultApp } from '../../infra/app.ts';

export const ROOT = path.resolve(import.meta.dirname, '..', '..');
export const EXAMPLE_CONFIG = path.join(ROOT, 'infra', 'memvault.example.yaml');

export function exampleDoc(): Record<string, any> {
  return parseYaml(readFileSync(EXAMPLE_CONFIG, 'utf8'));
}

const inline = lambda.Code.fromInline('exports.handler = async () => ({});');

/** Validates the document like memvault.yaml and builds both stacks, without esbuild. */
export function buildApp(doc: unknown, o: MemvaultAppOptions = {}): MemvaultApp {
  const cfg = requireAws(parseConfig(doc, kindSchemas, ROOT));
  const app = new App({ context: APP_CONTEXT });
  return buildMemvaultApp(app, cfg, { handlerCode: () => inline, nag: false, ...o });
}

type Statement = { Effect: 'Allow' | 'Deny'; Action: string | string[]; Resource: unknown; Condition?: unknown };

/** Every statement of the policies attached to the role whose RoleName is `roleName`. */
export function roleStatements(t: Template, roleName: string): Statement[] {
  const roles = t.findResources('AWS::IAM::Role', { Properties: { RoleName: roleName } });
  const ids = Object.keys(roles);
  if (ids.length !== 1) throw new Error(`expected one role named ${roleName}, found ${ids.length}`);
  return statementsOfRoleId(t, ids[0]);
}

export function statementsOfRoleId(t: Template, roleId: string): Statement[] {
  const out: Statement[] = [];
  const role = t.toJSON().Resources[roleId];
  for (const p of role.Properties.Policies ?? []) out.push(...p.PolicyDocument.Statement);
  // Inline policies, and the managed policies CDK splits a large role policy into (OverflowPolicyN).
  for (const p of [...Object.values(t.findResources('AWS::IAM::Policy')), ...Object.values(t.findResources('AWS::IAM::ManagedPolicy'))] as any[]) {
    if ((p.Properties.Roles ?? []).some((r: any) => r.Ref === roleId)) out.push(...p.Properties.PolicyDocument.Statement);
  }
  return out;
}

function actionMatches(pattern: string, action: string): boolean {
  const re = new RegExp(`^${pattern.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`, 'i');
  return re.test(action);
}

function resourceMatches(resource: unknown, needle: string): boolean {
  const list = Array.isArray(resource) ? resource : [resource];
  return list.some((r) => r === '*' || JSON.stringify(r).includes(needle));
}

/**
 * What the role's policies say about `action` on a resource whose ARN (or
 * CloudFormation reference) contains `needle`: 'deny' if a Deny matches,
 * else 'allow' if an Allow matches, else 'implicit-deny'.
 */
export function decision(statements: Statement[], action: string, needle: string): 'allow' | 'deny' | 'implicit-deny' {
  const matching = statements.filter((s) =>
    [s.Action].flat().some((a) => actionMatches(a, action)) && resourceMatches(s.Resource, needle));
  if (matching.some((s) => s.Effect === 'Deny')) return 'deny';
  if (matching.some((s) => s.Effect === 'Allow')) return 'allow';
  return 'implicit-deny';
}

/** Logical id of the single resource of `type` matching `props` (found by properties, never by hashed id). */
export function logicalId(t: Template, type: string, props: Record<string, unknown>): string {
  const ids = Object.keys(t.findResources(type, { Properties: props }));
  if (ids.length !== 1) throw new Error(`expected one ${type} with ${JSON.stringify(props)}, found ${ids.length}`);
  return ids[0];
}

/**
 * The config object `cdk deploy` uploads for a function, found as a deployer's
 * tools would: the function's MEMVAULT_CONFIG_S3 key looked up among the file
 * assets of its stack's asset manifest in the synthesized assembly.
 */
export function configObjectOf(assemblyDir: string, stackName: string, fnVariables: Record<string, string>): { bucket: string; key: string; body: Buffer } {
  const m = /^s3:\/\/([^/]+)\/(.+)$/.exec(fnVariables.MEMVAULT_CONFIG_S3 ?? '');
  if (!m) throw new Error(`no MEMVAULT_CONFIG_S3 in ${JSON.stringify(fnVariables)}`);
  const manifest = JSON.parse(readFileSync(path.join(assemblyDir, `${stackName}.assets.json`), 'utf8')) as {
    files: Record<string, { source: { path: string; packaging?: string }; destinations: Record<string, { bucketName: string; objectKey: string }> }>;
  };
  for (const f of Object.values(manifest.files)) {
    for (const d of Object.values(f.destinations)) {
      if (d.objectKey === m[2] && d.bucketName === m[1]) return { bucket: m[1], key: m[2], body: readFileSync(path.join(assemblyDir, f.source.path)) };
    }
  }
  throw new Error(`${stackName}: no file asset uploaded to ${fnVariables.MEMVAULT_CONFIG_S3}`);
}
