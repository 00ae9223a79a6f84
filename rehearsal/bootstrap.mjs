// The rehearsal's Lambda runtime inside one function instance (one process):
// loads the handler from the task root as the Node.js runtime does
// (_HANDLER "index.handler" -> LAMBDA_TASK_ROOT/index.mjs, export handler),
// reports how long the init phase took, then runs one invocation at a time on
// the messages of its parent (rehearsal/lambda.ts). A thrown error comes back
// as Lambda reports it: errorType is the error's name, errorMessage its
// message, trace its stack lines. Plain JavaScript: it runs with the node of
// the Lambda runtime, nothing else.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const started = performance.now();
const [moduleName, exportName] = splitHandler(process.env._HANDLER ?? 'index.handler');

function splitHandler(h) {
  const i = h.lastIndexOf('.');
  if (i <= 0) throw new Error(`_HANDLER "${h}" is not MODULE.EXPORT`);
  return [h.slice(0, i), h.slice(i + 1)];
}

function errorOf(err) {
  const e = err instanceof Error ? err : new Error(String(err));
  return { errorType: e.name || 'Error', errorMessage: e.message, trace: String(e.stack ?? '').split('\n') };
}

let handler;
try {
  const root = process.env.LAMBDA_TASK_ROOT;
  const file = ['.mjs', '.js', '.cjs'].map((ext) => path.join(root, moduleName + ext)).find((f) => existsSync(f));
  if (!file) throw Object.assign(new Error(`Cannot find module '${moduleName}' in ${root}`), { name: 'Runtime.ImportModuleError' });
  const mod = await import(pathToFileURL(file).href);
  handler = mod[exportName];
  if (typeof handler !== 'function') throw Object.assign(new Error(`${moduleName}.${exportName} is undefined or not exported`), { name: 'Runtime.HandlerNotFound' });
  process.send({ type: 'ready', initMs: performance.now() - started });
} catch (err) {
  const e = errorOf(err);
  if (!e.errorType.startsWith('Runtime.')) e.errorType = 'Runtime.ImportModuleError';
  process.send({ type: 'init-error', error: e }, () => process.exit(1));
}

process.on('message', async (m) => {
  if (m?.type !== 'invoke') return;
  const deadline = Date.now() + m.remainingMs;
  const context = {
    functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
    functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION,
    invokedFunctionArn: m.functionArn,
    memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    awsRequestId: m.requestId,
    logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME,
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
  };
  const t0 = performance.now();
  try {
    const value = await handler(m.event, context);
    // Lambda returns the JSON of the result (undefined becomes null).
    process.send({ type: 'result', id: m.id, ok: true, payload: JSON.stringify(value ?? null), ms: performance.now() - t0 });
  } catch (err) {
    process.send({ type: 'result', id: m.id, ok: false, error: errorOf(err), ms: performance.now() - t0 });
  }
});

process.on('unhandledRejection', (reason) => {
  const e = errorOf(reason);
  process.send({ type: 'crash', error: { ...e, errorType: 'Runtime.UnhandledPromiseRejection' } }, () => process.exit(128));
});
