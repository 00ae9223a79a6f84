#!/usr/bin/env node
// Launcher: registers tsx's loader and runs the TypeScript CLI.
//
// Memory: chunk buffers are freed and reallocated at a high rate from several
// threads; glibc then keeps freed arenas mapped, which inflates RSS by 40-60 MiB
// on large backups. Serving buffers of 256 KiB and up with mmap returns them to
// the system as soon as they are freed. The variable must be set before the
// process starts, so the launcher replaces itself (execve, same pid) once.
//
// V8's young generation: by default it grows to tens of MiB per semi-space on a
// backup's steady churn of short-lived objects (per-file stats, entries, worker
// messages), ~100 MiB of RSS at 50k files for no gain in speed; 4 MiB semi-spaces
// cost the same CPU (measured: 50k small files, 19.8 s vs 18.8-20.4 s user time,
// peak RSS 261 vs 350-372 MiB).
const SEMI_SPACE = '--max-semi-space-size=4';
if (process.env.MALLOC_MMAP_THRESHOLD_ === undefined && typeof process.execve === 'function' && process.platform === 'linux') {
  const v8 = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)].some((a) => a.startsWith('--max-semi-space-size')) ? [] : [SEMI_SPACE];
  process.execve(process.execPath, [process.execPath, ...v8, ...process.execArgv, ...process.argv.slice(1)], {
    ...process.env,
    MALLOC_MMAP_THRESHOLD_: '262144',
    // Two malloc arenas instead of eight per core: the worker and thread-pool threads
    // otherwise each keep freed memory of their own (~10 MiB less at peak).
    MALLOC_ARENA_MAX: process.env.MALLOC_ARENA_MAX ?? '2',
  });
}
const { register } = await import('tsx/esm/api');
register();
await import('./main.ts');
