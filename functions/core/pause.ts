// A test seam for the race regression tests (test/integration/races.test.ts):
// with MEMVAULT_TEST_PAUSE=<point>, the process stops itself (SIGSTOP) when it
// reaches that point, so a test can run another operation against the vault
// at exactly that moment and then continue it (SIGCONT). Unset, it does nothing.
//
//   backup-listed     a backup run holds its lock and has listed the vault's chunks
//   prune-planned     prune holds its lock and has chosen the chunks to delete
//   replicate-listed  replicate holds both locks and has read the source's catalog
export type PausePoint = 'backup-listed' | 'prune-planned' | 'replicate-listed';

let paused = false;

/** Stops the process the first time it reaches the point named in MEMVAULT_TEST_PAUSE. */
export function pausePoint(point: PausePoint): void {
  if (paused || process.env.MEMVAULT_TEST_PAUSE !== point) return;
  paused = true;
  process.kill(process.pid, 'SIGSTOP');
}
