// Structured JSON logs: one line per event, carrying the run id and the
// component. Never logs secrets or data. Quiet by default on the CLI
// (MEMVAULT_LOG=info to see them, on stderr).
import type { Logger } from './components/types.ts';

export type Level = 'debug' | 'info' | 'warn' | 'error' | 'silent';
const order: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 99 };

export function jsonLogger(base: Record<string, unknown> = {}, level: Level = (process.env.MEMVAULT_LOG as Level) ?? 'warn', out: NodeJS.WritableStream = process.stderr): Logger & { child(f: Record<string, unknown>): Logger } {
  const min = order[level] ?? order.warn;
  const write = (lvl: Level, msg: string, fields?: Record<string, unknown>) => {
    if (order[lvl] < min) return;
    out.write(`${JSON.stringify({ level: lvl, time: new Date().toISOString(), msg, ...base, ...fields })}\n`);
  };
  return {
    info: (m, f) => write('info', m, f),
    warn: (m, f) => write('warn', m, f),
    error: (m, f) => write('error', m, f),
    child: (f) => jsonLogger({ ...base, ...f }, level, out),
  };
}

export const silentLogger: Logger = { info() {}, warn() {}, error() {} };
