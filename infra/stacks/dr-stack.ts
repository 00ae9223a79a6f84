// The disaster-recovery region: the secondary vault (filled by the engine's
// replicate step of backup-run), its key and alert topic, and the state
// machines aws.drStateMachines names (restore by default), so a restore can
// run with `"from": "secondary"` while the primary region is down.
import type { Construct } from 'constructs';
import { RegionStack, type RegionStackProps } from './region-stack.ts';

export class DrStack extends RegionStack {
  constructor(scope: Construct, id: string, props: RegionStackProps) {
    super(scope, id, 'dr', props.config.aws.drStateMachines, props);
  }
}
