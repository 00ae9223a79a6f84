// send-alert: the Catch target of every state machine. Turns a caught error
// ({"Error": name, "Cause": ...}; on AWS the Cause of a Lambda failure is JSON
// with errorType/errorMessage, which is unwrapped here) into an alert naming
// the component, the step and the cause, and sends it to the configured sinks
// (SNS on AWS; stdout and a JSON-lines file locally). Returns the readable
// cause so a following Fail state can show it; for a failure it starts with
// ALERTED_CAUSE_PREFIX, which tells the EventBridge failure rule that this
// execution's failure was alerted already (one failure, one alert).
import { z } from 'zod';
import type { Alert, AlertSeverity } from '../core/ports.ts';
import { ALERTED_CAUSE_PREFIX } from '../core/errors.ts';
import { type HandlerDeps, invocationLog, json, lazyHandler, parseEvent, traced } from './deps.ts';

export const sendAlertInput = z.object({
  /** What ran: backup, restore, drill, retention, replicate, ... */
  event: z.string(),
  outcome: z.enum(['failed', 'incomplete', 'succeeded']).default('failed'),
  component: z.string().nullable().optional(),
  step: z.string(),
  error: z.object({ Error: z.string().optional(), Cause: z.string().optional() }).passthrough().nullable().optional(),
  /** For 'incomplete': the problems that did not stop the step. */
  warnings: z.array(z.string()).optional(),
  runId: z.string().optional(),
  details: z.record(z.string(), z.unknown()).optional(),
  ...traced,
});

export interface SentAlert {
  subject: string;
  errorName: string;
  /** The readable cause; for a failure, marked as alerted (ALERTED_CAUSE_PREFIX) for the Fail state that follows. */
  cause: string;
}

/** The readable message of a Step Functions Cause (Lambda failures carry JSON). */
export function causeMessage(cause: string | undefined): string {
  if (cause === undefined) return '';
  // A failure passed on from a state that alerted already (a Parallel branch, a Map iteration).
  if (cause.startsWith(ALERTED_CAUSE_PREFIX)) return cause.slice(ALERTED_CAUSE_PREFIX.length);
  try {
    const c = JSON.parse(cause) as { errorMessage?: unknown };
    if (c && typeof c === 'object' && typeof c.errorMessage === 'string') return c.errorMessage;
  } catch {
    // not JSON: the cause as given
  }
  return cause;
}

export function makeHandler(deps: HandlerDeps) {
  return async (event: unknown): Promise<SentAlert> => {
    const e = parseEvent(sendAlertInput, event, 'send-alert input');
    const log = invocationLog(deps, 'send-alert', { executionId: e.executionId, component: e.component ?? undefined });
    const errorName = e.error?.Error ?? '';
    const cause = e.outcome === 'incomplete' ? (e.warnings ?? []).join('; ') : causeMessage(e.error?.Cause);
    const what = e.component ? `${e.event} ${e.outcome}: ${e.component}` : `${e.event} ${e.outcome}`;
    const severity: AlertSeverity = e.outcome === 'failed' ? 'error' : e.outcome === 'incomplete' ? 'warning' : 'info';
    const message = e.outcome === 'failed'
      ? `${e.event}${e.component ? ` of ${e.component}` : ''} failed at step ${e.step}: ${errorName ? `${errorName}: ` : ''}${cause}`
      : e.outcome === 'incomplete'
        ? `${e.event}${e.component ? ` of ${e.component}` : ''} completed with problems: ${cause}`
        : `${e.event}${e.component ? ` of ${e.component}` : ''} succeeded`;
    const alert: Alert = {
      severity, subject: what, message, step: e.step, time: deps.clock.now().toISOString(),
      ...(e.component ? { component: e.component } : {}),
      ...(e.outcome === 'failed' ? { cause } : {}),
      details: { executionId: e.executionId, runId: e.runId, errorName: errorName || undefined, ...e.details },
    };
    await deps.alerts.send(alert);
    log.info('alert sent', { subject: what, step: e.step, errorName });
    return json({ subject: what, errorName, cause: e.outcome === 'failed' ? `${ALERTED_CAUSE_PREFIX}${cause}` : cause });
  };
}

export const handler = lazyHandler(makeHandler);
