// Vault locks of Lambda invocations: a lock taken during an invocation is
// dead once that invocation's deadline (+ margin) has passed, however recently
// it was refreshed, so the lock of a timed-out invocation (killed by Lambda,
// no release) stops blocking within the LockedError retry window of the state
// machines (test/statemachines/asl.test.ts checks that window). The handler
// entry point records the deadline from the Lambda context.
import { afterEach, describe, expect, it } from 'vitest';
import { makeFixture } from '../helpers/fixture.ts';
import { openVault } from '../../functions/services.ts';
import { lazyHandler } from '../../functions/handlers/deps.ts';
import { LockedError } from '../../functions/core/errors.ts';
import { LOCK_DEADLINE_MARGIN_MS, VaultLock, deadReason, scanLocks, setInvocationDeadline, type LockDoc } from '../../functions/core/lock.ts';

afterEach(() => setInvocationDeadline(undefined));

describe('vault locks of Lambda invocations', () => {
  it('the handler entry point stamps locks with the invocation deadline + margin', async () => {
    const f = await makeFixture({ docs: { kind: 'files', path: 'data/docs' } });
    const vault = await openVault(f.cfg, 'primary');
    const handler = lazyHandler(() => async () => {
      const lock = await VaultLock.acquire(vault.storage, 'backup');
      const doc = JSON.parse((await vault.storage.get(lock.key)).toString()) as LockDoc;
      await lock.release();
      return doc;
    }, { MEMVAULT_CONFIG: f.cfgFile });
    const before = Date.now();
    const doc = await handler({}, { getRemainingTimeInMillis: () => 300_000 });
    const expires = Date.parse(doc.expires!);
    expect(expires).toBeGreaterThanOrEqual(before + 300_000 + LOCK_DEADLINE_MARGIN_MS);
    expect(expires).toBeLessThanOrEqual(Date.now() + 300_000 + LOCK_DEADLINE_MARGIN_MS);
    // Outside an invocation (locally, the CLI) no deadline: the lock lives while refreshed.
    const local = await lazyHandler(() => async () => {
      const lock = await VaultLock.acquire(vault.storage, 'backup');
      const d = JSON.parse((await vault.storage.get(lock.key)).toString()) as LockDoc;
      await lock.release();
      return d;
    }, { MEMVAULT_CONFIG: f.cfgFile })({});
    expect(local.expires).toBeUndefined();
  });

  it('a timed-out invocation\'s lock blocks prune until its deadline + margin, then is dead and removed', async () => {
    const f = await makeFixture({ docs: { kind: 'files', path: 'data/docs' } });
    const vault = await openVault(f.cfg, 'primary');
    // An invocation with 2 s left takes a backup lock and is then killed: no release, no more refreshes.
    setInvocationDeadline(Date.now() + 2_000);
    const held = await VaultLock.acquire(vault.storage, 'backup', 3_600_000);
    setInvocationDeadline(undefined);
    await expect(VaultLock.acquire(vault.storage, 'prune', 3_600_000)).rejects.toBeInstanceOf(LockedError);
    const doc = JSON.parse((await vault.storage.get(held.key)).toString()) as LockDoc;
    // Refreshed a moment ago and not stale by age, yet dead once its invocation's deadline + margin passed.
    const afterDeadline = Date.parse(doc.expires!) + 1;
    expect(deadReason({ ...doc, time: new Date(afterDeadline - 1_000).toISOString() }, 3_600_000, afterDeadline)).toMatch(/invocation ended/);
    expect(deadReason(doc, 3_600_000, afterDeadline - 2)).toBeNull();
    // Written as it would be found after the margin: the next prune clears it and proceeds.
    await vault.storage.put(held.key, Buffer.from(JSON.stringify({ ...doc, expires: new Date(Date.now() - 1).toISOString() })));
    expect((await scanLocks(vault.storage, 3_600_000)).dead.map((d) => d.key)).toEqual([held.key]);
    const prune = await VaultLock.acquire(vault.storage, 'prune', 3_600_000);
    expect(await vault.storage.has(held.key)).toBe(false);
    await prune.release();
  });
});
