// AWS values of the ASL placeholders that are not handler ARNs. Each one is
// listed with its local value in statemachines/substitutions.json (the local
// runtime's binding); this table gives the value the deployed state machines
// use, e.g. DISTRIBUTED where the local runner uses INLINE, or real waits where
// the local runner shortens them. aws.substitutions in memvault.yaml overrides
// an entry. A placeholder in neither table fails synth (infra/asl.ts).
import type { AwsConfig } from '../functions/core/aws-config.ts';

export const AWS_SUBSTITUTIONS: Readonly<Record<string, string>> = {
  // Fan-out: a DISTRIBUTED Map runs each component as a child execution, so
  // one slow export does not hold the history of the whole run.
  MapMode: 'DISTRIBUTED',
  MapExecutionType: 'STANDARD',
  MapMaxConcurrency: '8',
  // Waits between snapshot polls (seconds).
  SnapshotPollSeconds: '60',
};

export function awsSubstitutions(aws: AwsConfig): Record<string, string> {
  return { ...AWS_SUBSTITUTIONS, ...aws.substitutions };
}
