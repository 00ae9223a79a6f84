#!/usr/bin/env node
// Launcher: registers tsx's loader and runs the TypeScript CLI.
//
// Memory: chunk buffers are freed and reallocated at a high rate from several
// threads; glibc then keeps freed arenas mapped, which inflates RSS by 40-60 MiB
// on large backups. Serving buffers of 256 KiB and up with mmap returns them to
// the system as soon as they are freed. The variable must be set before the
// process starts, so the launcher replaces itself (execve, same pid) once.
if (process.env.MALLOC_MMAP_THRESHOLD_ === undefined && typeof process.execve === 'function' && process.platform === 'linux') {
  process.execve(process.execPath, [process.execPath, ...process.execArgv, ...process.argv.slice(1)], {
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
