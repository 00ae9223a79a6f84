// snapshot-start: asks the service to take a snapshot of one component (the
// driver's start step) and returns the progress to carry to snapshot-poll.
// The state machine then waits `pollSeconds` with a Wait state, not in a Lambda.
import { type HandlerDeps, invocationLog, json, lazyHandler, parseEvent } from './deps.ts';
import { POLL_SECONDS, snapshotContext, snapshotStepInput } from './snapshot-common.ts';

export interface SnapshotProgress {
  state: Record<string, unknown>;
  startedAt: string;
  ready: boolean;
  pollSeconds: number;
}

export function makeHandler(deps: HandlerDeps) {
  return async (event: unknown): Promise<SnapshotProgress> => {
    const e = parseEvent(snapshotStepInput, event, 'snapshot-start input');
    const log = invocationLog(deps, 'snapshot-start', e);
    const { driver, ctx } = await snapshotContext(deps, e, log);
    const startedAt = deps.clock.now().toISOString();
    const state = await driver.start(ctx);
    log.info('snapshot started', { state });
    return json({ state, startedAt, ready: false, pollSeconds: POLL_SECONDS });
  };
}

export const handler = lazyHandler(makeHandler);
