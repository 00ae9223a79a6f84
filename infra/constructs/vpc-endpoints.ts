// The VPC endpoints the in-VPC handlers need to reach AWS without a NAT
// gateway, created when aws.vpc (or aws.drVpc) says `endpoints: true`:
//   - an S3 gateway endpoint on the given route tables (the vault, s3-prefix
//     sources and restore targets in this region);
//   - interface endpoints with private DNS in the given subnets for KMS (the
//     vault key), Secrets Manager (database credentials), SNS (alerts), STS,
//     and SSM / RDS only when an in-VPC handler calls them (ssm-config
//     components; restores of service snapshots);
//   - a security group for the interface endpoints admitting HTTPS (443) from
//     the functions' security groups only.
// Ids come from config (vpcId, subnetIds, routeTableIds): synth looks nothing
// up, so it stays offline. Endpoints are regional: a call to the other
// region (a restore in the primary reading the DR vault) still needs a NAT.
import { Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Construct } from 'constructs';
import { ConfigError } from '../../functions/core/errors.ts';
import type { MemvaultConfig } from '../../functions/core/config.ts';

/** Interface endpoint services by the short name of com.amazonaws.<region>.<name>. */
export type InterfaceService = 'kms' | 'secretsmanager' | 'sns' | 'sts' | 'ssm' | 'rds';

export interface VpcEndpointsProps {
  /** Config field of the VPC, for messages (aws.vpc or aws.drVpc). */
  readonly field: string;
  readonly vpcId: string;
  /** Subnets of the interface endpoints (at most one per Availability Zone). */
  readonly subnetIds: string[];
  /** Route tables that get the S3 gateway endpoint's routes. */
  readonly routeTableIds: string[];
  /** Security groups of the functions: the only sources admitted on 443. */
  readonly functionSecurityGroupIds: string[];
  /** Interface endpoints to create. */
  readonly services: InterfaceService[];
}

/** The interface endpoints in-VPC handlers call: KMS, Secrets Manager, SNS and STS always; SSM and RDS when a handler in the VPC uses them. */
export function vpcEndpointServices(inVpcHandlers: string[], cfg: MemvaultConfig): InterfaceService[] {
  const kinds = new Set(Object.values(cfg.components).map((c) => c.kind));
  const out: InterfaceService[] = ['kms', 'secretsmanager', 'sns', 'sts'];
  const drivers = inVpcHandlers.filter((h) => /^(export-stream|restore-component|promote-restore|validate-restore)$/.test(h));
  if (kinds.has('ssm-config') && drivers.length) out.push('ssm');
  const rdsCallers = inVpcHandlers.filter((h) => /^(restore-component|promote-restore|validate-restore|write-manifest|snapshot-start|snapshot-poll|apply-retention)$/.test(h));
  if ((kinds.has('rds-snapshot') || kinds.has('aurora-snapshot')) && rdsCallers.length) out.push('rds');
  return out;
}

export class VpcEndpoints extends Construct {
  public readonly securityGroup: ec2.CfnSecurityGroup;
  public readonly s3Gateway: ec2.CfnVPCEndpoint;
  public readonly interfaces: Map<InterfaceService, ec2.CfnVPCEndpoint> = new Map();

  constructor(scope: Construct, id: string, props: VpcEndpointsProps) {
    super(scope, id);
    if (!props.routeTableIds.length) throw new ConfigError(`${props.field}.routeTableIds: the S3 gateway endpoint needs the route tables of the functions' subnets`);
    if (!props.subnetIds.length) throw new ConfigError(`${props.field}.subnetIds: the interface endpoints need subnets`);
    const region = Stack.of(this).region;
    this.securityGroup = new ec2.CfnSecurityGroup(this, 'EndpointSecurityGroup', {
      vpcId: props.vpcId,
      groupDescription: 'memvault VPC endpoints: HTTPS from the memvault functions',
      securityGroupIngress: props.functionSecurityGroupIds.map((sg) => ({
        ipProtocol: 'tcp', fromPort: 443, toPort: 443, sourceSecurityGroupId: sg, description: `memvault functions (${sg})`,
      })),
    });
    this.s3Gateway = new ec2.CfnVPCEndpoint(this, 'S3', {
      vpcId: props.vpcId,
      serviceName: `com.amazonaws.${region}.s3`,
      vpcEndpointType: 'Gateway',
      routeTableIds: props.routeTableIds,
    });
    for (const service of [...new Set(props.services)]) {
      this.interfaces.set(service, new ec2.CfnVPCEndpoint(this, service.charAt(0).toUpperCase() + service.slice(1), {
        vpcId: props.vpcId,
        serviceName: `com.amazonaws.${region}.${service}`,
        vpcEndpointType: 'Interface',
        subnetIds: props.subnetIds,
        securityGroupIds: [this.securityGroup.attrGroupId],
        privateDnsEnabled: true,
      }));
    }
  }
}
