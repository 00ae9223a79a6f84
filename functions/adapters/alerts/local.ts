// Local alert sinks (the embedded default): a readable block on a stream
// (stdout normally; stderr when stdout carries --json output), and a JSON-lines
// file that tools and tests can read back.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Alert, AlertSink } from '../../core/ports.ts';

export class StreamAlertSink implements AlertSink {
  constructor(private readonly out: NodeJS.WritableStream = process.stdout) {}
  async send(a: Alert): Promise<void> {
    const lines = [`ALERT [${a.severity}] ${a.subject}`, `  ${a.message}`];
    if (a.component) lines.push(`  component: ${a.component}`);
    if (a.step) lines.push(`  step: ${a.step}`);
    if (a.cause) lines.push(`  cause: ${a.cause}`);
    this.out.write(`${lines.join('\n')}\n`);
  }
}

export class FileAlertSink implements AlertSink {
  constructor(readonly file: string) {}
  async send(a: Alert): Promise<void> {
    await fs.mkdir(path.dirname(this.file), { recursive: true });
    await fs.appendFile(this.file, `${JSON.stringify(a)}\n`);
  }
}

/** Sends to every sink; one failing sink does not stop the others. Throws if all fail. */
export class FanoutAlertSink implements AlertSink {
  constructor(readonly sinks: AlertSink[]) {}
  async send(a: Alert): Promise<void> {
    const results = await Promise.allSettled(this.sinks.map((s) => s.send(a)));
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed.length > 0 && failed.length === this.sinks.length) throw failed[0].reason;
  }
}

export async function readAlerts(file: string): Promise<Alert[]> {
  const text = await fs.readFile(file, 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Alert);
}
