// Array helpers for lists that grow with the tree (entries of 1M files): `a.push(...b)`
// passes b's elements as call arguments, on the stack, and throws "Maximum call stack
// size exceeded" past ~120k of them (the 200k-file backup of issue 11).

/** Appends src to dst in place, one element at a time; returns dst. */
export function appendAll<T>(dst: T[], src: readonly T[]): T[] {
  for (let i = 0; i < src.length; i++) dst.push(src[i]);
  return dst;
}

/** Removes the undefined slots of xs in place, keeping order; returns xs. */
export function compactInPlace<T>(xs: (T | undefined)[]): T[] {
  let n = 0;
  for (let i = 0; i < xs.length; i++) if (xs[i] !== undefined) xs[n++] = xs[i];
  xs.length = n;
  return xs as T[];
}
