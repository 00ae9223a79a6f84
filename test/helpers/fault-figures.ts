// The fault suite's figures: operations tried and how each ended, faults
// injected by kind, damage detected, and data lost (which must stay 0). Each
// test file keeps one Figures and prints it when it ends.
import { FAULT_KINDS, STORAGE_OPS, sumStats, type FaultyStorage } from './faulty-storage.ts';

export interface OpOutcome {
  ok: boolean;
  /** Error class name when it failed. */
  error?: string;
}

export class Figures {
  /** Per operation name: attempts that succeeded and failures by error name. */
  readonly ops = new Map<string, { ok: number; failed: Map<string, number> }>();
  readonly storages: FaultyStorage[] = [];
  /** Named counters (bad reads detected, kills, leftovers...). */
  readonly counters = new Map<string, number>();
  /** Each way data was lost, with what happened (must stay empty). */
  readonly dataLost: string[] = [];
  /** Findings that are not data loss but are worth a line (e.g. a stale lock left behind). */
  readonly notes: string[] = [];

  constructor(readonly title: string, readonly seed: number) {}

  track<T extends FaultyStorage>(s: T): T {
    this.storages.push(s);
    return s;
  }

  outcome(op: string, o: OpOutcome): void {
    let e = this.ops.get(op);
    if (!e) this.ops.set(op, (e = { ok: 0, failed: new Map() }));
    if (o.ok) e.ok++;
    else e.failed.set(o.error ?? 'Error', (e.failed.get(o.error ?? 'Error') ?? 0) + 1);
  }

  count(name: string, n = 1): void {
    this.counters.set(name, (this.counters.get(name) ?? 0) + n);
  }

  get(name: string): number {
    return this.counters.get(name) ?? 0;
  }

  lost(what: string): void {
    this.dataLost.push(what);
  }

  note(what: string): void {
    if (!this.notes.includes(what)) this.notes.push(what);
  }

  get trials(): number {
    let n = 0;
    for (const e of this.ops.values()) n += e.ok + [...e.failed.values()].reduce((a, b) => a + b, 0);
    return n;
  }

  render(): string {
    const lines = [`== fault suite: ${this.title} (seed ${this.seed}; replay with MEMVAULT_FAULT_SEED=${this.seed})`];
    lines.push(`operations tried: ${this.trials}`);
    for (const [op, e] of [...this.ops].sort(([a], [b]) => a.localeCompare(b))) {
      const failed = [...e.failed].map(([n, c]) => `${c} ${n}`).join(', ');
      lines.push(`  ${op.padEnd(26)} ${String(e.ok).padStart(4)} succeeded${failed ? `, failed cleanly: ${failed}` : ''}`);
    }
    if (this.storages.length > 0) {
      const s = sumStats(this.storages);
      const calls = STORAGE_OPS.map((o) => `${o} ${s.calls[o]}`).join(', ');
      const total = FAULT_KINDS.reduce((a, k) => a + s.injected[k], 0);
      lines.push(`storage calls: ${calls}`);
      lines.push(`faults injected: ${total} (${FAULT_KINDS.filter((k) => s.injected[k] > 0).map((k) => `${k} ${s.injected[k]}`).join(', ') || 'none'})`);
      for (const o of STORAGE_OPS) {
        const by = Object.entries(s.byOp[o]).map(([k, n]) => `${k} ${n}`).join(', ');
        if (by) lines.push(`  on ${o.padEnd(7)} ${by}`);
      }
    }
    for (const [k, v] of this.counters) lines.push(`${k}: ${v}`);
    for (const n of this.notes) lines.push(`note: ${n}`);
    lines.push(`data lost: ${this.dataLost.length}`);
    for (const d of this.dataLost) lines.push(`  LOST: ${d}`);
    return lines.join('\n');
  }

  print(): void {
    process.stdout.write(`\n${this.render()}\n`);
  }
}
