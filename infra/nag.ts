// cdk-nag acknowledgements, each with its reason, in the construct that causes
// the finding. cdk-nag 3 acknowledges one finding at a time by its exact id
// (e.g. `AwsSolutions-IAM5[Resource::<VaultBucket1234.Arn>/vault/*]`), and
// those ids carry generated logical ids; so a construct declares the findings
// it accepts as patterns, and an aspect runs the rule on the construct's
// resources just before validation and acknowledges exactly the findings that
// match. Anything else the rule finds stays a violation.
import { Aspects, CfnResource, Validations, type IAspect } from 'aws-cdk-lib';
import { rules } from 'cdk-nag';
import type { IConstruct } from 'constructs';

type RuleFn = (node: CfnResource) => unknown;

/** Rules with per-finding ids, by their AwsSolutions id. */
const FINDING_RULES: Record<string, RuleFn> = {
  'AwsSolutions-IAM5': rules.iam.IAMNoWildcardPermissions as unknown as RuleFn,
};

export interface Acknowledgement {
  /** Rule id, e.g. AwsSolutions-S1 or AwsSolutions-IAM5. */
  readonly rule: string;
  readonly reason: string;
  /** For rules with findings (IAM5): the findings accepted, e.g. /^Resource::.*\/vault\/\*$/. @default the whole rule */
  readonly findings?: RegExp[];
}

class AcknowledgeFindings implements IAspect {
  constructor(private readonly acks: Acknowledgement[]) {}

  visit(node: IConstruct): void {
    if (!CfnResource.isCfnResource(node)) return;
    for (const ack of this.acks) {
      if (!ack.findings) {
        Validations.of(node).acknowledge({ id: ack.rule, reason: ack.reason });
        continue;
      }
      const rule = FINDING_RULES[ack.rule];
      if (!rule) throw new Error(`nag acknowledgement: no finding-level rule ${ack.rule}`);
      let result: unknown;
      try {
        result = rule(node);
      } catch {
        continue;
      }
      if (!Array.isArray(result)) continue;
      for (const finding of result as string[]) {
        if (ack.findings.some((re) => re.test(finding))) {
          Validations.of(node).acknowledge({ id: `${ack.rule}[${finding}]`, reason: ack.reason });
        }
      }
    }
  }
}

/** Acknowledges the given findings on the resources under scope, each with its reason. */
export function acknowledge(scope: IConstruct, acks: Acknowledgement[]): void {
  Aspects.of(scope).add(new AcknowledgeFindings(acks));
}
