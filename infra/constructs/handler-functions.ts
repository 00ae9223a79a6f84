// The Lambda functions of one region, one per handler file the state machines
// reference (functions/handlers/<kebab>.ts exporting `handler`), all running
// as the region's backup service role. Each function: NodejsFunction bundled
// by the local esbuild (never Docker) as ESM for Node 24 on arm64, its own log
// group with retention, memory/timeout/ephemeral storage sized per job, the
// VPC subnets and security groups from config for the handlers that reach
// databases, and the validated config in MEMVAULT_CONFIG_JSON.
import path from 'node:path';
import { Duration, RemovalPolicy, Size, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import { Construct } from 'constructs';
import { acknowledge } from '../nag.ts';
import { ConfigError } from '../../functions/core/errors.ts';
import { checkEnvironmentSize, type ResolvedSizing } from '../deploy-config.ts';
import { kebabToPascal } from '../asl.ts';

export const LAMBDA_RUNTIME = lambda.Runtime.NODEJS_24_X;

export interface HandlerFunctionsProps {
  /** Directory of the handler files (functions/handlers). */
  readonly handlersDir: string;
  /** Handlers to create, as kebab-case file names without .ts. */
  readonly handlers: string[];
  /** Environment of every function (MEMVAULT_CONFIG_JSON, ...). */
  readonly environment: Record<string, string>;
  /** Memory, timeout and /tmp size of a handler. */
  readonly sizing: (handler: string) => ResolvedSizing;
  /** Subnets and security groups for the handlers `runsIn` selects. @default no VPC */
  readonly vpc?: { readonly subnetIds: string[]; readonly securityGroupIds: string[]; readonly runsIn: (handler: string) => boolean };
  /** Handlers named in config (aws.lambda.handlers, aws.vpc.handlers) that must exist, with the field naming them. @default none */
  readonly namedInConfig?: { readonly field: string; readonly handler: string }[];
  /** @default 90 days */
  readonly logRetention?: logs.RetentionDays;
  /**
   * Ready-built code per handler instead of bundling (tests, pre-built CI
   * artifacts). The deployed app bundles with esbuild.
   * @default bundle functions/handlers/<handler>.ts with esbuild
   */
  readonly code?: (handler: string) => lambda.Code;
}

export class HandlerFunctions extends Construct {
  /** The backup service role every handler runs as. */
  public readonly role: iam.Role;
  public readonly functions: Map<string, lambda.Function> = new Map();
  public readonly logGroups: Map<string, logs.LogGroup> = new Map();

  constructor(scope: Construct, id: string, props: HandlerFunctionsProps) {
    super(scope, id);
    const known = new Set(props.handlers);
    const problems = (props.namedInConfig ?? [])
      .filter((n) => !known.has(n.handler))
      .map((n) => `${n.field}: no state machine uses a handler "${n.handler}"; handlers: ${[...known].sort().join(', ')}`);
    if (problems.length) throw new ConfigError(problems);
    if (props.handlers.length === 0) throw new ConfigError(`${id}: no handlers to create`);

    this.role = new iam.Role(this, 'BackupServiceRole', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: 'memvault backup service: what the Lambda handlers need and no more',
    });

    const vpcHandlers = props.handlers.filter((h) => props.vpc?.runsIn(h));
    if (props.vpc && vpcHandlers.length) {
      // Lambda creates and removes the functions' network interfaces as this role.
      this.role.addToPrincipalPolicy(new iam.PolicyStatement({
        sid: 'LambdaVpcNetworkInterfaces',
        actions: ['ec2:CreateNetworkInterface', 'ec2:DescribeNetworkInterfaces', 'ec2:DeleteNetworkInterface', 'ec2:AssignPrivateIpAddresses', 'ec2:UnassignPrivateIpAddresses'],
        resources: ['*'],
      }));
    }

    for (const handler of [...props.handlers].sort()) {
      const pascal = kebabToPascal(handler);
      const entry = path.join(props.handlersDir, `${handler}.ts`);
      const size = props.sizing(handler);
      const environment = { NODE_OPTIONS: '--enable-source-maps', ...props.environment };
      checkEnvironmentSize(handler, environment);
      const logGroup = new logs.LogGroup(this, `${pascal}Logs`, {
        retention: props.logRetention ?? logs.RetentionDays.THREE_MONTHS,
        removalPolicy: RemovalPolicy.RETAIN,
      });
      const common = {
        runtime: LAMBDA_RUNTIME,
        architecture: lambda.Architecture.ARM_64,
        role: this.role,
        logGroup,
        loggingFormat: lambda.LoggingFormat.JSON,
        memorySize: size.memoryMb,
        timeout: Duration.seconds(size.timeoutSeconds),
        ephemeralStorageSize: Size.mebibytes(size.ephemeralStorageMb),
        reservedConcurrentExecutions: size.reservedConcurrency,
        environment,
        description: `memvault ${handler}`,
      };
      const fn = props.code
        ? new NodejsFunction(this, pascal, { ...common, code: props.code(handler), handler: 'index.handler' })
        : new NodejsFunction(this, pascal, {
            ...common,
            entry,
            handler: 'handler',
            projectRoot: path.resolve(props.handlersDir, '..', '..'),
            depsLockFilePath: path.resolve(props.handlersDir, '..', '..', 'package-lock.json'),
            bundling: {
              forceDockerBundling: false,
              format: OutputFormat.ESM,
              target: 'node24',
              mainFields: ['module', 'main'],
              minify: true,
              sourceMap: true,
              sourcesContent: false,
              // The Node 24 runtime ships AWS SDK v3; ESM bundles need a require() for CommonJS dependencies.
              externalModules: ['@aws-sdk/*'],
              banner: "import { createRequire as __mvCreateRequire } from 'node:module'; const require = __mvCreateRequire(import.meta.url);",
            },
          });
      if (props.vpc && props.vpc.runsIn(handler)) {
        const cfn = fn.node.defaultChild as lambda.CfnFunction;
        cfn.vpcConfig = { subnetIds: props.vpc.subnetIds, securityGroupIds: props.vpc.securityGroupIds };
        // The function must not be created before the role may attach network interfaces.
        fn.node.addDependency(this.role);
      }
      logGroup.grantWrite(this.role);
      this.functions.set(handler, fn);
      this.logGroups.set(handler, logGroup);
    }

    acknowledge(this.role, [{
      rule: 'AwsSolutions-IAM5',
      reason: 'Vault objects are content-addressed keys under the vault prefix (bucket/vault/*), so object actions are granted on that prefix; the vault keys are matched by alias (kms:ResourceAliases) because the other region\'s key is in another stack; the KMS GenerateDataKey* family comes from the SNS publish grant; Lambda VPC network interfaces cannot be scoped to a resource; partial secret ARNs need the 6-character suffix wildcard.',
      findings: [
        /^Resource::.*\/vault\/\*$/,
        /^Resource::arn:<AWS::Partition>:kms:[a-z0-9-]+:\d{12}:key\/\*$/,
        /^Action::kms:(GenerateDataKey|ReEncrypt)\*$/,
        /^Resource::\*$/,
        /^Resource::arn:aws[a-z-]*:secretsmanager:.*-\?\?\?\?\?\?$/,
      ],
    }]);
  }

  /** The function of a handler; throws naming it when the handler was not created. */
  fn(handler: string): lambda.Function {
    const f = this.functions.get(handler);
    if (!f) throw new ConfigError(`${this.node.id}: no function for handler "${handler}"`);
    return f;
  }

  /** Lets the handlers read the given Secrets Manager secrets (database credentials). */
  grantSecrets(arns: string[]): void {
    if (arns.length === 0) return;
    this.role.addToPrincipalPolicy(new iam.PolicyStatement({
      sid: 'ReadDatabaseSecrets',
      actions: ['secretsmanager:GetSecretValue', 'secretsmanager:DescribeSecret'],
      // A full ARN ends in a 6-character suffix; a partial one (without it) needs the wildcard.
      resources: [...new Set(arns.map((a) => (/-[A-Za-z0-9]{6}$/.test(a) ? a : `${a}-??????`)))],
    }));
  }

  get region(): string {
    return Stack.of(this).region;
  }
}
