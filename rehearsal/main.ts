// `npm run rehearse [-- CONFIG...]`: synthesizes every deployable example
// config (or the ones named), deploys each into the rehearsal and runs its
// flows, then prints: the configs rehearsed (and components not rehearsed,
// with why), each flow with its status and duration, each function's cold
// start and bundle size, and every denied call. Exit 0 when every flow passed
// and nothing was denied; 1 otherwise; 2 when a config cannot be deployed at
// all (synth fails, or Lambda would refuse a function).
import { deployableConfigs } from './configs.ts';
import { deployRehearsal, type Rehearsal } from './deploy.ts';
import { allFlows, deniedCalls, type DeniedCall, type FlowResult } from './flows.ts';
import type { FunctionStats } from './lambda.ts';

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ')).join('\n');
}

const sec = (ms: number) => (Number.isFinite(ms) ? `${(ms / 1000).toFixed(2)} s` : '—');

export function printReport(config: string, r: Rehearsal | undefined, flows: FlowResult[], stats: FunctionStats[], denied: DeniedCall[], out = process.stdout): void {
  out.write(`\n== ${config}\n`);
  if (r) {
    out.write(`synth: ${r.synth.cached ? 'cached assembly' : `${sec(r.synth.ms)}`} ${r.synth.outdir}\n`);
    for (const n of r.overlaid.notRehearsed) out.write(`not rehearsed: ${n.component} (${n.kind}): ${n.why}\n`);
    for (const n of r.sfn.notes) out.write(`note: ${n}\n`);
  }
  if (flows.length) {
    out.write('\nflows\n');
    out.write(`${table([['flow', 'status', 'duration'], ...flows.map((f) => [f.flow, f.ok ? 'PASSED' : 'FAILED', sec(f.durationMs)])])}\n`);
    for (const f of flows.filter((x) => !x.ok)) for (const p of f.problems) out.write(`  ${f.flow}: ${p}\n`);
  }
  if (stats.length) {
    out.write('\nfunctions (cold start = process start to handler ready, + first invocation)\n');
    const rows = [...stats].sort((a, b) => a.name.localeCompare(b.name)).map((s) => [
      s.name, `${(s.bundleBytes / 1024 / 1024).toFixed(2)} MB`, s.coldStarts.length ? sec(s.coldStarts[0].initMs) : '—',
      s.coldStarts.length ? sec(s.coldStarts[0].firstInvokeMs) : '—', String(s.invocations), `${s.environmentBytes} B`,
    ]);
    out.write(`${table([['function', 'bundle', 'init', 'first invoke', 'invocations', 'env'], ...rows])}\n`);
  }
  out.write(`\ndenied calls: ${denied.length}\n`);
  for (const d of denied) out.write(`  AccessDenied: ${d.principal} ${d.action} ${d.resources.join(', ')}${d.error ? ` (${d.error})` : ''}${d.reason ? `: ${d.reason}` : ''}\n`);
  if (r?.sfn.deliveryFailures.length) for (const d of r.sfn.deliveryFailures) out.write(`  delivery refused: ${d.source} as ${d.principal} to ${d.topicArn}: ${d.error}\n`);
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const configs = args.length ? args : deployableConfigs();
  process.stdout.write(`configs rehearsed: ${configs.join(', ') || '(none has an aws section)'}\n`);
  let code = 0;
  for (const config of configs) {
    let r: Rehearsal | undefined;
    try {
      r = await deployRehearsal(config);
    } catch (err) {
      printReport(config, undefined, [], [], []);
      process.stdout.write(`cannot deploy ${config}: ${(err as Error).message}\n`);
      code = 2;
      continue;
    }
    try {
      const flows = await allFlows(r);
      const denied = deniedCalls(r);
      printReport(config, r, flows, r.lambda.stats(), denied);
      if (flows.some((f) => !f.ok) || denied.length) code = Math.max(code, 1);
    } finally {
      await r.close();
    }
  }
  return code;
}

process.exitCode = await main();
