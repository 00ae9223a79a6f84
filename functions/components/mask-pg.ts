// Masking of a restored PostgreSQL database (postgres kind; sanitized restores,
// core/mask.ts), on a connection the driver opened to the restore target.
//
// Per table with rules (`schema.table`, or `table` in public): the table and
// each column must exist (else a ConfigError naming the rule; a JSON path needs
// a json, jsonb or text column). In one transaction: the table's user triggers
// are disabled (a BEFORE UPDATE trigger must not rewrite other columns), an
// order-independent digest of the columns no rule touches is taken (generated
// columns left out: they follow the masked ones), every row is read through a
// cursor as text and updated by ctid, the digest and the row count are
// checked again, and the triggers enabled. After the commit the masked tables
// are rewritten (VACUUM FULL), so their files hold no dead row with a
// production value; the server's WAL may still hold them until it recycles it
// (the restore wrote them there), which is why drills use a scratch server.
// Foreign keys over a masked column are not handled (a hashed parent key would
// break the constraint before the child is hashed): such a rule fails with the
// server's error, naming the rule.
import type pg from 'pg';
import { ConfigError, IntegrityError } from '../core/errors.ts';
import { type IndexedTableRule, type MaskedTable, type MaskRuleResult, type TableMaskRule, describeRule, maskRow, ruleName } from '../core/mask.ts';

function qi(n: string): string {
  return `"${n.replaceAll('"', '""')}"`;
}
function qname(schema: string, n: string): string {
  return `${qi(schema)}.${qi(n)}`;
}

const BATCH = 500;

interface Column { name: string; type: string; generated: boolean }

export function splitTable(t: string): { schema: string; name: string } {
  const i = t.indexOf('.');
  return i < 0 ? { schema: 'public', name: t } : { schema: t.slice(0, i), name: t.slice(i + 1) };
}

async function columnsOf(db: pg.Client, schema: string, name: string): Promise<Column[] | null> {
  const r = await db.query<{ name: string; type: string; generated: string }>(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attgenerated AS generated
     FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, [schema, name]);
  if (r.rows.length === 0) {
    const t = await db.query(`SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`, [schema, name]);
    if (t.rows.length === 0) return null;
  }
  return r.rows.map((c) => ({ name: c.name, type: c.type, generated: c.generated !== '' }));
}

/** Order-independent digest and count of `columns` of a table (the sum of md5 prefixes, as databaseFigures). */
export async function pgColumnsDigest(db: pg.Client, table: string, columns: string[]): Promise<{ rows: number; sha256: string }> {
  const { schema, name } = splitTable(table);
  const row = columns.length ? `ROW(${columns.map(qi).join(', ')})::text` : "''";
  const r = await db.query<{ rows: string; sum: string }>(
    `SELECT count(*)::text AS rows, coalesce(sum(('x' || substr(md5(${row}), 1, 16))::bit(64)::int8::numeric), 0)::text AS sum FROM ONLY ${qname(schema, name)}`);
  return { rows: Number(r.rows[0].rows), sha256: r.rows[0].sum };
}

/** The columns of `table` no rule masks (generated columns left out). */
export async function pgKeptColumns(db: pg.Client, table: string, masked: string[]): Promise<string[]> {
  const { schema, name } = splitTable(table);
  return ((await columnsOf(db, schema, name)) ?? []).filter((c) => !c.generated && !masked.includes(c.name)).map((c) => c.name);
}

async function rulesByTable(db: pg.Client, component: string, rules: TableMaskRule[]): Promise<Map<string, { rules: IndexedTableRule[]; columns: Column[] }>> {
  const out = new Map<string, { rules: IndexedTableRule[]; columns: Column[] }>();
  const problems: string[] = [];
  for (const [i, rule] of rules.entries()) {
    const { schema, name } = splitTable(rule.table);
    const key = `${schema}.${name}`;
    const cols = out.get(key)?.columns ?? await columnsOf(db, schema, name);
    const where = `${ruleName(component, i)} (${describeRule(rule)})`;
    if (!cols) { problems.push(`${where}: the restored database has no table ${key}`); continue; }
    const col = cols.find((c) => c.name === rule.column);
    if (!col) { problems.push(`${where}: table ${key} has no column "${rule.column}" (columns: ${cols.map((c) => c.name).join(', ')})`); continue; }
    if (col.generated) { problems.push(`${where}: ${key}.${rule.column} is a generated column; mask the columns it is computed from`); continue; }
    if (rule.path && !/^(json|jsonb|text|character varying.*)$/.test(col.type)) { problems.push(`${where}: ${key}.${rule.column} is ${col.type}; a JSON path needs a json, jsonb or text column`); continue; }
    const e = out.get(key) ?? { rules: [], columns: cols };
    e.rules.push({ i, rule });
    out.set(key, e);
  }
  if (problems.length) throw new ConfigError(problems);
  return out;
}

export async function maskPostgres(db: pg.Client, component: string, rules: TableMaskRule[], key: Buffer): Promise<{ rules: MaskRuleResult[]; tables: Record<string, MaskedTable> }> {
  const touched = rules.map(() => 0);
  const tables: Record<string, MaskedTable> = {};
  const byTable = await rulesByTable(db, component, rules);
  const name = (i: number) => `${ruleName(component, i)} (${describeRule(rules[i])})`;
  await db.query('BEGIN');
  try {
    for (const [table, { rules: tr, columns }] of byTable) {
      const { schema, name: rel } = splitTable(table);
      const q = qname(schema, rel);
      const masked = [...new Set(tr.map((r) => r.rule.column))];
      const kept = columns.filter((c) => !c.generated && !masked.includes(c.name)).map((c) => c.name);
      await db.query(`ALTER TABLE ${q} DISABLE TRIGGER USER`);
      const before = await pgColumnsDigest(db, table, kept);
      await db.query(`DECLARE memvault_mask_ NO SCROLL CURSOR FOR SELECT ctid::text AS memvault_ctid_, ${masked.map(qi).join(', ')} FROM ONLY ${q}`);
      const update = `UPDATE ONLY ${q} SET ${masked.map((c, n) => `${qi(c)} = $${n + 1}`).join(', ')} WHERE ctid = $${masked.length + 1}::tid`;
      for (;;) {
        const r = await db.query({ text: `FETCH ${BATCH} FROM memvault_mask_`, types: { getTypeParser: () => (v: string) => v } as never });
        if (r.rows.length === 0) break;
        for (const row of r.rows as Record<string, unknown>[]) {
          const { memvault_ctid_: ctid, ...vals } = row;
          const m = maskRow(key, tr, vals, name);
          if (!m.changed.some(Boolean)) continue;
          try {
            await db.query(update, [...masked.map((c) => toPg(m.values[c])), ctid]);
          } catch (err) {
            const which = tr.filter((_, n) => m.changed[n]).map((x) => name(x.i)).join(', ');
            throw new ConfigError(`${which}: the masked value does not fit ${table}: ${(err as Error).message}`);
          }
          m.changed.forEach((c, n) => { if (c) touched[tr[n].i]++; });
        }
      }
      await db.query('CLOSE memvault_mask_');
      const after = await pgColumnsDigest(db, table, kept);
      await db.query(`ALTER TABLE ${q} ENABLE TRIGGER USER`);
      if (after.rows !== before.rows || after.sha256 !== before.sha256) {
        throw new IntegrityError(`${component}: masking ${table} changed more than its masked columns (${before.rows} rows before, ${after.rows} after)`);
      }
      tables[table] = { columns: masked, rows: before.rows, unmaskedSha256: before.sha256 };
    }
    await db.query('COMMIT');
  } catch (err) {
    await db.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
  // No dead row versions with production values left in the table files.
  for (const table of byTable.keys()) {
    const { schema, name: rel } = splitTable(table);
    await db.query(`VACUUM FULL ${qname(schema, rel)}`);
  }
  return { rules: rules.map((r, i) => ({ rule: ruleName(component, i), describe: describeRule(r), touched: touched[i], unit: 'rows' as const })), tables };
}

function toPg(v: unknown): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v === 'string') return v;
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}
