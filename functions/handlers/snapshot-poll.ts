// snapshot-poll: one look at a running service snapshot (the driver's poll
// step). Returns ready=false while the service is still working; the state
// machine waits and polls again.
import { UsageError } from '../core/errors.ts';
import { type HandlerDeps, invocationLog, json, lazyHandler, parseEvent } from './deps.ts';
import { POLL_SECONDS, snapshotContext, snapshotStepInput } from './snapshot-common.ts';
import type { SnapshotProgress } from './snapshot-start.ts';

export function makeHandler(deps: HandlerDeps) {
  return async (event: unknown): Promise<SnapshotProgress> => {
    const e = parseEvent(snapshotStepInput, event, 'snapshot-poll input');
    if (!e.snapshot) throw new UsageError('snapshot-poll input: snapshot: required (the output of snapshot-start)');
    const log = invocationLog(deps, 'snapshot-poll', e);
    const { driver, ctx } = await snapshotContext(deps, e, log);
    const r = await driver.poll(ctx, e.snapshot.state);
    log.info('snapshot polled', { ready: r.ready });
    return json({ state: r.state, startedAt: e.snapshot.startedAt, ready: r.ready, pollSeconds: POLL_SECONDS });
  };
}

export const handler = lazyHandler(makeHandler);
