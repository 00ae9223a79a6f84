import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { defineConfig } from 'vitest/config';

// This machine's memory of vaults (adapters/seen.ts) goes to a directory of the run's own.
const stateDir = mkdtempSync(path.join(os.tmpdir(), 'memvault-test-state-'));

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Two test files at a time: most wait on servers, children and disks, not the CPU (2 cores here).
    maxWorkers: 2,
    minWorkers: 1,
    env: { MEMVAULT_STATE_DIR: stateDir },
    poolOptions: { forks: { execArgv: ['--openssl-legacy-provider'] } },
  },
});
