// Runs the real memvault CLI in a child process: the bin launcher on the Node that npm runs.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '../..');
const LAUNCHER = path.join(ROOT, 'cli', 'memvault.mjs');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** `nodeArgs`: V8/Node flags for the CLI's process (those NODE_OPTIONS refuses, such as --stack-size). */
export function cli(args: string[], o: { cwd?: string; env?: Record<string, string>; uid?: number; gid?: number; nodeArgs?: string[] } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...o.nodeArgs ?? [], LAUNCHER, ...args], {
      cwd: o.cwd ?? ROOT,
      env: { ...process.env, MEMVAULT_LOG: 'silent', ...o.env },
      stdio: ['ignore', 'pipe', 'pipe'],
      uid: o.uid,
      gid: o.gid,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

export function cliSpawn(args: string[], o: { cwd?: string; env?: Record<string, string> } = {}) {
  return spawn(process.execPath, [LAUNCHER, ...args], {
    cwd: o.cwd ?? ROOT, env: { ...process.env, MEMVAULT_LOG: 'silent', ...o.env }, stdio: ['ignore', 'pipe', 'pipe'],
    // Own process group, so a kill reaches the CLI and anything it started.
    detached: true,
  });
}

/** SIGKILLs a process spawned by cliSpawn and everything it started. */
export function killTree(child: ReturnType<typeof cliSpawn>): void {
  process.kill(-child.pid!, 'SIGKILL');
}

/** Waits until process `pid` has stopped itself (SIGSTOP) at its pause point (MEMVAULT_TEST_PAUSE). */
export async function stopped(pid: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    if (stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'T') return;
    if (Date.now() > deadline) throw new Error(`process ${pid} never reached its pause point`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
