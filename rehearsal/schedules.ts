// EventBridge Scheduler, as the rehearsal runs it: a schedule of the
// synthesized template fires with its own target, input and role. The
// scheduler assumes the schedule's role (its trust policy must name
// scheduler.amazonaws.com; its aws:SourceArn / aws:SourceAccount conditions are
// checked against the schedule group and account) and calls
// states:StartExecution on the target as that role: a denied call fails the
// firing (Scheduler retries, then drops it), which the rehearsal reports.
import { randomUUID } from 'node:crypto';
import type { ExecutionRecord, ServiceGateway, StepFunctions } from './machines.ts';
import type { DeployedModel, ScheduleInfo } from './template.ts';

export class ScheduleFireError extends Error {
  override name = 'ScheduleFireError';
}

type Statement = { Effect?: string; Principal?: any; Action?: string | string[]; Condition?: Record<string, Record<string, unknown>> };

/** Whether a trust policy lets `service` assume the role with this source context (the conditions the stacks use). */
export function trusts(trust: { Statement: unknown }, service: string, context: Record<string, string>): { ok: boolean; reason: string } {
  for (const s of [trust.Statement].flat() as Statement[]) {
    if (s.Effect !== 'Allow' || ![s.Action].flat().includes('sts:AssumeRole')) continue;
    if (![s.Principal?.Service].flat().includes(service)) continue;
    for (const [op, conds] of Object.entries(s.Condition ?? {})) {
      for (const [k, want] of Object.entries(conds)) {
        const have = context[k];
        const wants = [want].flat().map(String);
        const like = (w: string) => new RegExp(`^${w.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
        const ok = have !== undefined && (op.endsWith('Like') ? wants.some((w) => like(w).test(have)) : wants.includes(have));
        if (!ok) return { ok: false, reason: `trust policy condition ${op} ${k}=${wants.join('|')} does not match ${have ?? '(absent)'}` };
      }
    }
    return { ok: true, reason: 'trusted' };
  }
  return { ok: false, reason: `trust policy does not let ${service} assume the role` };
}

export class Schedules {
  constructor(readonly model: DeployedModel, readonly sfn: StepFunctions, readonly gateway: ServiceGateway) {}

  /** Schedules whose target is the state machine named `name` (e.g. memvault-backup-run). */
  targeting(name: string): ScheduleInfo[] {
    return this.model.schedules.filter((s) => s.targetArn.endsWith(`:stateMachine:${name}`));
  }

  /** Fires one schedule now and waits for the execution it starts. */
  async fire(s: ScheduleInfo): Promise<ExecutionRecord> {
    if (s.state !== 'ENABLED') throw new ScheduleFireError(`${s.name}: schedule is ${s.state}`);
    const account = s.arn.split(':')[4];
    const role = this.model.roles.find((r) => r.arn === s.roleArn);
    if (!role) throw new ScheduleFireError(`${s.name}: role ${s.roleArn} is not in the synthesized stacks`);
    const t = trusts(role.trust, 'scheduler.amazonaws.com', { 'aws:SourceArn': s.groupArn, 'aws:SourceAccount': account });
    if (!t.ok) throw new ScheduleFireError(`${s.name}: scheduler.amazonaws.com cannot assume ${s.roleArn}: ${t.reason}`);
    if (!/:states:[a-z0-9-]+:\d{12}:stateMachine:/.test(s.targetArn)) throw new ScheduleFireError(`${s.name}: target ${s.targetArn} is not rehearsed (only Step Functions StartExecution)`);
    const d = this.gateway.authorize(s.roleArn, 'states:StartExecution', s.targetArn);
    if (!d.allowed) throw new ScheduleFireError(`${s.name}: AccessDenied: ${s.roleArn} may not states:StartExecution on ${s.targetArn}: ${d.reason}`);
    let input: unknown = {};
    if (s.input !== undefined) {
      try {
        input = JSON.parse(s.input);
      } catch (err) {
        throw new ScheduleFireError(`${s.name}: Target.Input is not JSON: ${(err as Error).message}`);
      }
    }
    return this.sfn.start(s.targetArn, input, randomUUID());
  }
}
