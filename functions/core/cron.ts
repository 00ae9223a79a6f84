// Cron expressions (5 fields: minute hour day-of-month month day-of-week), the
// same text the local scheduler runs and the CDK app turns into EventBridge
// Scheduler expressions.
import { CronExpressionParser } from 'cron-parser';
import { ConfigError } from './errors.ts';

export function parseCron(expr: string, tz = 'UTC') {
  const fields = expr.trim().split(/\s+/);
  if (fields.length !== 5) {
    throw new ConfigError(`cron "${expr}": expected 5 fields (minute hour day-of-month month day-of-week), got ${fields.length}`);
  }
  try {
    return CronExpressionParser.parse(expr, { tz, strict: false });
  } catch (err) {
    throw new ConfigError(`cron "${expr}": ${(err as Error).message}`);
  }
}

/** The next time at or after `from` (exclusive) that the expression fires. */
export function nextRun(expr: string, from: Date, tz = 'UTC'): Date {
  const it = CronExpressionParser.parse(expr, { tz, currentDate: from });
  return it.next().toDate();
}


/**
 * EventBridge Scheduler form: cron(minutes hours day-of-month month day-of-week year).
 * One of day-of-month / day-of-week must be '?'. Day-of-week numbers differ
 * (cron 0-6 Sun-Sat, EventBridge 1-7 Sun-Sat), so names are used.
 */
export function toEventBridgeCron(expr: string): string {
  parseCron(expr);
  const [min, hour, dom, mon, dow] = expr.trim().split(/\s+/);
  const names = ['SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT', 'SUN'];
  const dowEb = dow === '*' ? '?' : dow.replace(/\d/g, (d) => names[Number(d)]);
  const domEb = dow !== '*' ? '?' : dom;
  return `cron(${min} ${hour} ${domEb} ${mon} ${dowEb} *)`;
}
