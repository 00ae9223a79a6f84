import { describe, expect, it } from 'vitest';
import { applyPolicy } from '../../functions/core/retention.ts';
import type { ManifestRef } from '../../functions/core/manifest.ts';

const now = new Date('2026-06-30T12:00:00Z');
function daily(n: number): ManifestRef[] {
  return Array.from({ length: n }, (_, i) => {
    const time = new Date(now.getTime() - i * 86_400_000);
    return { key: `manifests/db/${i}`, component: 'db', id: `b${i}`, type: 'incremental' as const, time };
  });
}

describe('retention policy', () => {
  it('keeps backups younger than `days`', () => {
    const d = applyPolicy(daily(60), { days: 30 }, now);
    expect(d.keep.length).toBe(30);
    expect(d.forget.map((r) => r.id)).toContain('b30');
  });

  it('always keeps the newest backup, even when every rule would drop it', () => {
    const old = daily(5).map((r) => ({ ...r, time: new Date(r.time.getTime() - 400 * 86_400_000) }));
    const d = applyPolicy(old, { days: 30 }, now);
    expect(d.keep.map((r) => r.id)).toEqual(['b0']);
    expect(d.reasons.get(d.keep[0].key)).toContain('newest');
  });

  it('keepLast, keepDaily, keepWeekly and keepMonthly', () => {
    expect(applyPolicy(daily(10), { keepLast: 3 }, now).keep.map((r) => r.id)).toEqual(['b0', 'b1', 'b2']);
    const twoPerDay = daily(10).flatMap((r) => [r, { ...r, key: `${r.key}x`, id: `${r.id}x`, time: new Date(r.time.getTime() - 3_600_000) }]);
    const dd = applyPolicy(twoPerDay, { keepDaily: 4 }, now);
    expect(dd.keep.map((r) => r.id)).toEqual(['b0', 'b1', 'b2', 'b3']);
    const w = applyPolicy(daily(60), { keepWeekly: 4 }, now);
    expect(w.keep.length).toBe(4);
    const m = applyPolicy(daily(100), { keepMonthly: 3 }, now);
    expect(m.keep.map((r) => r.time.toISOString().slice(0, 7))).toEqual(['2026-06', '2026-05', '2026-04']);
  });

  it('keeps everything when no rule is set', () => {
    expect(applyPolicy(daily(7), {}, now).forget).toEqual([]);
  });
});
