// Structured JSON logs: one line per event, carrying the run id and the
// component. Never logs secrets or data. Quiet by default on the CLI
// (MEMVAULT_LOG=info to see them, on stderr).
//
// Callers log no credentials; as a second line of defence every line is
// redacted on the way out: the password of any URL in it becomes ***
// (postgres://u:***@h), and fields named like a credential (password,
// token, secret, ...) are written as "***".
import type { Logger } from './components/types.ts';
import { redactUrlsIn } from './adapters/secrets.ts';

const CREDENTIAL_FIELD = /^(password|passwd|pwd|pass|secret|secretString|token|authToken|auth|apiKey|privateKey)$/i;

/** A log line's JSON with credentials redacted. */
export function redactedJson(record: Record<string, unknown>): string {
  const json = JSON.stringify(record, (k, v) => (k !== '' && CREDENTIAL_FIELD.test(k) && v !== undefined && v !== null ? '***' : v));
  return redactUrlsIn(json);
}

export type Level = 'debug' | 'info' | 'warn' | 'error' | 'silent';
const order: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 99 };

export function jsonLogger(base: Record<string, unknown> = {}, level: Level = (process.env.MEMVAULT_LOG as Level) ?? 'warn', out: NodeJS.WritableStream = process.stderr): Logger & { child(f: Record<string, unknown>): Logger } {
  const min = order[level] ?? order.warn;
  const write = (lvl: Level, msg: string, fields?: Record<string, unknown>) => {
    if (order[lvl] < min) return;
    out.write(`${redactedJson({ level: lvl, time: new Date().toISOString(), msg, ...base, ...fields })}\n`);
  };
  return {
    info: (m, f) => write('info', m, f),
    warn: (m, f) => write('warn', m, f),
    error: (m, f) => write('error', m, f),
    child: (f) => jsonLogger({ ...base, ...f }, level, out),
  };
}

export const silentLogger: Logger = { info() {}, warn() {}, error() {} };
