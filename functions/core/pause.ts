// A test seam for the race regression tests (test/integration/races.test.ts):
// with MEMVAULT_TEST_PAUSE=<point>, the process stops itself (SIGSTOP) when it
// reaches that point, so a test can run another operation against the vault
// at exactly that moment and then continue it (SIGCONT). Unset, it does nothing.
//
//   backup-listed     a backup run holds its lock and has listed the vault's chunks
//   prune-planned     prune holds its lock and has chosen the chunks to delete
//   replicate-listed  replicate holds both locks and has read the source's catalog
//   wal-frames-read   a sqlite shipper has read new WAL frames and not yet stored them
export type PausePoint = 'backup-listed' | 'prune-planned' | 'replicate-listed' | 'wal-frames-read';

let paused = false;
let reached = 0;

/** Stops the process the first time (or, with `<point>:<n>`, the n-th time) it reaches the point named in MEMVAULT_TEST_PAUSE. */
export function pausePoint(point: PausePoint): void {
  const [want, nth] = (process.env.MEMVAULT_TEST_PAUSE ?? '').split(':');
  if (paused || want !== point || ++reached < Number(nth ?? 1)) return;
  paused = true;
  process.kill(process.pid, 'SIGSTOP');
}
