// Masking of a restored SQLite database (sanitized restores, core/mask.ts).
//
// Per table with rules: the table and every named column must exist (else a
// ConfigError naming the rule); a digest of the columns no rule touches is
// taken (order-independent), then the rows are rewritten in rowid order in
// batches inside one transaction, with secure_delete on so the old values are
// overwritten in the pages they leave, and the file is VACUUMed at the end so
// no free page or journal keeps a production value. The row count and the
// digest of the untouched columns are checked again after masking.
import { DatabaseSync } from 'node:sqlite';
import { ConfigError, IntegrityError } from '../core/errors.ts';
import { type IndexedTableRule, type MaskedTable, type MaskRuleResult, type TableMaskRule, RowDigest, describeRule, maskRow, ruleName } from '../core/mask.ts';
import type { DriverMaskContext } from './types.ts';

const BATCH = 500;

function qi(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

function rowJson(row: unknown): string {
  return JSON.stringify(row, (_k, v) => (typeof v === 'bigint' ? v.toString() : v instanceof Uint8Array ? Buffer.from(v).toString('base64') : v));
}

/** Order-independent digest and count of `columns` of a table. */
export function sqliteColumnsDigest(db: DatabaseSync, table: string, columns: string[]): { rows: number; sha256: string } {
  const d = new RowDigest();
  const sel = columns.length ? columns.map(qi).join(', ') : '1';
  for (const row of db.prepare(`SELECT ${sel} FROM ${qi(table)}`).iterate()) d.add(rowJson(row));
  return { rows: d.rows, sha256: d.hex() };
}

export function sqliteColumns(db: DatabaseSync, table: string): string[] {
  return (db.prepare(`SELECT name FROM pragma_table_info(?)`).all(table) as { name: string }[]).map((c) => c.name);
}

/** Groups rules by table, checking each table and column against the restored database. */
function rulesByTable(db: DatabaseSync, component: string, rules: TableMaskRule[]): Map<string, { rules: IndexedTableRule[]; columns: string[] }> {
  const tables = new Map<string, { rules: IndexedTableRule[]; columns: string[] }>();
  const problems: string[] = [];
  rules.forEach((rule, i) => {
    const t = db.prepare("SELECT name, sql FROM sqlite_schema WHERE type = 'table' AND name = ?").get(rule.table) as { name: string; sql: string } | undefined;
    if (!t) {
      const names = (db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").all() as { name: string }[]).map((x) => x.name);
      problems.push(`${ruleName(component, i)} (${describeRule(rule)}): the restored database has no table "${rule.table}" (tables: ${names.join(', ') || 'none'})`);
      return;
    }
    if (/WITHOUT\s+ROWID/i.test(t.sql ?? '')) {
      problems.push(`${ruleName(component, i)} (${describeRule(rule)}): table "${rule.table}" is WITHOUT ROWID, which masking does not support yet`);
      return;
    }
    const cols = sqliteColumns(db, rule.table);
    if (!cols.includes(rule.column)) {
      problems.push(`${ruleName(component, i)} (${describeRule(rule)}): table "${rule.table}" has no column "${rule.column}" (columns: ${cols.join(', ')})`);
      return;
    }
    const entry = tables.get(rule.table) ?? { rules: [], columns: cols };
    entry.rules.push({ i, rule });
    tables.set(rule.table, entry);
  });
  if (problems.length) throw new ConfigError(problems);
  return tables;
}

export async function maskSqlite(ctx: DriverMaskContext<unknown>): Promise<{ rules: MaskRuleResult[]; tables: Record<string, MaskedTable> }> {
  const rules = ctx.rules as TableMaskRule[];
  const touched = rules.map(() => 0);
  const out: Record<string, MaskedTable> = {};
  const db = new DatabaseSync(ctx.location);
  try {
    db.exec('PRAGMA secure_delete = ON');
    const tables = rulesByTable(db, ctx.component, rules);
    db.exec('BEGIN IMMEDIATE');
    try {
      for (const [table, { rules: tr, columns }] of tables) {
        const masked = [...new Set(tr.map((r) => r.rule.column))];
        const kept = columns.filter((c) => !masked.includes(c));
        const before = sqliteColumnsDigest(db, table, kept);
        const select = db.prepare(`SELECT rowid AS memvault_rowid_, ${masked.map(qi).join(', ')} FROM ${qi(table)} WHERE rowid > ? ORDER BY rowid LIMIT ${BATCH}`);
        const update = db.prepare(`UPDATE ${qi(table)} SET ${masked.map((c) => `${qi(c)} = ?`).join(', ')} WHERE rowid = ?`);
        let last: number | bigint = Number.MIN_SAFE_INTEGER;
        for (;;) {
          const rows = select.all(last) as Record<string, unknown>[];
          if (rows.length === 0) break;
          for (const row of rows) {
            const { memvault_rowid_: rowid, ...vals } = row;
            last = rowid as number;
            const m = maskRow(ctx.key, tr, vals, (i) => `${ruleName(ctx.component, i)} (${describeRule(rules[i])})`);
            if (!m.changed.some(Boolean)) continue;
            update.run(...masked.map((c) => toSqlite(m.values[c])), rowid as number);
            m.changed.forEach((c, n) => { if (c) touched[tr[n].i]++; });
          }
        }
        const after = sqliteColumnsDigest(db, table, kept);
        if (after.rows !== before.rows || after.sha256 !== before.sha256) {
          throw new IntegrityError(`${ctx.component}: masking ${table} changed more than its masked columns (${before.rows} rows before, ${after.rows} after)`);
        }
        out[table] = { columns: masked, rows: before.rows, unmaskedSha256: before.sha256 };
      }
      db.exec('COMMIT');
    } catch (err) {
      db.exec('ROLLBACK');
      throw err;
    }
    // Nothing of the old values stays in free pages, the WAL or a journal.
    db.exec('VACUUM');
    db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
  } finally {
    db.close();
  }
  return {
    rules: rules.map((r, i) => ({ rule: ruleName(ctx.component, i), describe: describeRule(r), touched: touched[i], unit: 'rows' as const })),
    tables: out,
  };
}

function toSqlite(v: unknown): string | number | bigint | null | Uint8Array {
  if (v === undefined || v === null) return null;
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (typeof v === 'string' || typeof v === 'number' || typeof v === 'bigint' || v instanceof Uint8Array) return v;
  return JSON.stringify(v);
}
