// pg-schema: the driver path's schema, rebuilt from pg_catalog inside the
// backup's snapshot, as labelled SQL statements in three sections:
//   pre    before the data: schemas, extensions, then types (enum, domain,
//          composite), functions, sequences, tables (partitions attached),
//          views and materialized views (WITH NO DATA) in dependency order
//          from pg_depend (Kahn's algorithm, ties by oid, a cycle is an error
//          naming its objects), then sequence ownership;
//   post   after the data: keys and checks, indexes (partition indexes
//          attached), foreign keys, triggers, rules, policies and row-level
//          security, extended statistics;
//   final  after the sequences: materialized views refreshed (in dependency
//          order), comments, security labels and privileges (GRANT/REVOKE).
// Every statement carries a label naming its object ("view s.v", "comment on
// column s.t.c"); the description (label -> digest of its statements) is what
// a restore is validated against: the same capture run on the restored
// database must yield every label with the same digest.
// A `tables` subset closes over dependencies: an object that needs a relation
// left out (a view over an excluded table, a view over such a view, a
// function returning its row type) is left out too, with a warning; a
// selected table that needs one is an error. Partitions follow their
// partitioned table. Object kinds the driver path cannot rebuild (base
// types, aggregates, operators, casts, collations, text search
// objects, foreign tables, inheritance, typed tables,
// event triggers, publications...) fail the capture, naming each object.
// Default privileges are reproduced last (roles named as in the source).
// Owners are not reproduced (objects belong to the restoring role, as with
// pg_restore --no-owner); grants to the source owner go to the restoring role.
import { createHash } from 'node:crypto';
import type pg from 'pg';

export interface SchemaItem { label: string; sql: string }

export interface CapturedSchema {
  pre: SchemaItem[];
  post: SchemaItem[];
  final: SchemaItem[];
  /** Tables whose rows are exported, in restore order (partitioned parents have none of their own). */
  tables: { schema: string; name: string; oid: number }[];
  /** Problems that left objects out (subset closure). */
  warnings: string[];
}

export class UnsupportedObjectsError extends Error {
  constructor(readonly objects: string[]) {
    super(`the driver path cannot rebuild ${objects.length === 1 ? 'this object' : 'these objects'} (use method: pg_dump, or leave them out): ${objects.join('; ')}`);
    this.name = 'UnsupportedObjectsError';
  }
}

const USER_NS = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'";
const NOT_EXT = (cls: string, oid: string) => `NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = '${cls}'::regclass AND d.objid = ${oid} AND d.deptype = 'e')`;

function ql(s: string): string {
  return `'${s.replaceAll("'", "''")}'`;
}
function qi(s: string): string {
  return `"${s.replaceAll('"', '""')}"`;
}
/** quote_ident's rule (without the keyword list): quoted only where needed, for labels. */
function qid(s: string): string {
  return /^[a-z_][a-z0-9_$]*$/.test(s) ? s : qi(s);
}

interface Obj {
  key: string;
  oid: number;
  label: string;
  sql: string[];
  deps: Set<string>;
  /** Materialized view to refresh after the data. */
  refresh?: string;
}

/** Digest per label: what validation compares. */
export function describeSchema(s: Pick<CapturedSchema, 'pre' | 'post' | 'final'>): Record<string, string> {
  const by = new Map<string, string[]>();
  for (const it of [...s.pre, ...s.post, ...s.final]) {
    if (!by.has(it.label)) by.set(it.label, []);
    by.get(it.label)!.push(it.sql);
  }
  const out: Record<string, string> = {};
  for (const [label, sqls] of [...by.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    out[label] = createHash('sha256').update(sqls.join(';\n')).digest('hex').slice(0, 16);
  }
  return out;
}

/** Differences between a described source and a restored target: labels missing or defined differently. */
export function schemaDifferences(expected: Record<string, string>, actual: Record<string, string>): string[] {
  const out: string[] = [];
  for (const [label, digest] of Object.entries(expected)) {
    if (!(label in actual)) out.push(`missing: ${label}`);
    else if (actual[label] !== digest) out.push(`differs: ${label}`);
  }
  return out;
}

/**
 * Captures the schema (inside the caller's transaction, with search_path set
 * to pg_catalog meanwhile, so every name comes out schema-qualified).
 * `selected`: oids of the tables chosen by tables.include/exclude, or undefined for all.
 */
export async function captureSchema(db: pg.Client, selected?: Set<number>): Promise<CapturedSchema> {
  const path = (await db.query<{ p: string }>("SELECT current_setting('search_path') AS p")).rows[0].p;
  await db.query("SELECT set_config('search_path', 'pg_catalog', true)");
  try {
    return await capture(db, selected);
  } finally {
    // Row text forms (regclass values) and checksums read after this depend on the session's own path.
    await db.query("SELECT set_config('search_path', $1, true)", [path]);
  }
}

async function capture(db: pg.Client, selected?: Set<number>): Promise<CapturedSchema> {
  const q = async <T extends pg.QueryResultRow>(sql: string, params: unknown[] = []) => (await db.query<T>(sql, params)).rows;
  const unsupported: string[] = [];
  const warnings: string[] = [];
  const objs = new Map<string, Obj>();
  const add = (o: Omit<Obj, 'deps'> & { deps?: string[] }) => { objs.set(o.key, { ...o, deps: new Set(o.deps ?? []) }); return objs.get(o.key)!; };

  // ---- objects the driver path refuses (user-defined, not from an extension)
  const refuse = async (label: string, sql: string) => {
    for (const r of await q<{ name: string }>(sql)) unsupported.push(`${label} ${r.name}`);
  };
  await refuse('type', `SELECT t.oid::regtype::text || CASE t.typtype WHEN 'b' THEN ' (base type)' ELSE ' (pseudo-type)' END AS name
    FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE ${USER_NS} AND t.typtype IN ('b', 'p') AND t.typelem = 0 AND ${NOT_EXT('pg_type', 't.oid')}
      AND NOT (t.typtype = 'b' AND EXISTS (SELECT 1 FROM pg_type e WHERE e.typarray = t.oid))`);
  await refuse('aggregate', `SELECT p.oid::regprocedure::text AS name FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE ${USER_NS} AND p.prokind IN ('a', 'w') AND ${NOT_EXT('pg_proc', 'p.oid')}`);
  await refuse('operator', `SELECT o.oid::regoperator::text AS name FROM pg_operator o JOIN pg_namespace n ON n.oid = o.oprnamespace WHERE ${USER_NS} AND ${NOT_EXT('pg_operator', 'o.oid')}`);
  await refuse('operator class', `SELECT n.nspname || '.' || o.opcname AS name FROM pg_opclass o JOIN pg_namespace n ON n.oid = o.opcnamespace WHERE ${USER_NS} AND ${NOT_EXT('pg_opclass', 'o.oid')}`);
  await refuse('operator family', `SELECT n.nspname || '.' || o.opfname AS name FROM pg_opfamily o JOIN pg_namespace n ON n.oid = o.opfnamespace WHERE ${USER_NS} AND ${NOT_EXT('pg_opfamily', 'o.oid')}`);
  await refuse('collation', `SELECT n.nspname || '.' || c.collname AS name FROM pg_collation c JOIN pg_namespace n ON n.oid = c.collnamespace WHERE ${USER_NS} AND ${NOT_EXT('pg_collation', 'c.oid')}`);
  await refuse('conversion', `SELECT n.nspname || '.' || c.conname AS name FROM pg_conversion c JOIN pg_namespace n ON n.oid = c.connamespace WHERE ${USER_NS} AND ${NOT_EXT('pg_conversion', 'c.oid')}`);
  await refuse('text search configuration', `SELECT n.nspname || '.' || c.cfgname AS name FROM pg_ts_config c JOIN pg_namespace n ON n.oid = c.cfgnamespace WHERE ${USER_NS} AND ${NOT_EXT('pg_ts_config', 'c.oid')}`);
  await refuse('text search dictionary', `SELECT n.nspname || '.' || c.dictname AS name FROM pg_ts_dict c JOIN pg_namespace n ON n.oid = c.dictnamespace WHERE ${USER_NS} AND ${NOT_EXT('pg_ts_dict', 'c.oid')}`);
  await refuse('cast', `SELECT format_type(c.castsource, NULL) || ' AS ' || format_type(c.casttarget, NULL) AS name FROM pg_cast c WHERE c.oid >= 16384 AND ${NOT_EXT('pg_cast', 'c.oid')}
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_cast'::regclass AND d.objid = c.oid AND d.deptype = 'i')`);
  await refuse('foreign table', `SELECT c.oid::regclass::text AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ${USER_NS} AND c.relkind = 'f' AND ${NOT_EXT('pg_class', 'c.oid')}`);
  await refuse('foreign server', `SELECT srvname AS name FROM pg_foreign_server s WHERE ${NOT_EXT('pg_foreign_server', 's.oid')}`);
  await refuse('event trigger', 'SELECT evtname AS name FROM pg_event_trigger');
  await refuse('publication', 'SELECT pubname AS name FROM pg_publication');
  await refuse('large object', 'SELECT oid::text AS name FROM pg_largeobject_metadata');
  await refuse('inheritance', `SELECT i.inhrelid::regclass::text || ' inherits ' || i.inhparent::regclass::text AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE c.relkind IN ('r', 'p', 'f') AND NOT c.relispartition`);
  await refuse('table in a tablespace', `SELECT c.oid::regclass::text || ' (' || t.spcname || ')' AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_tablespace t ON t.oid = c.reltablespace
    WHERE ${USER_NS} AND c.reltablespace <> 0 AND c.relkind IN ('r', 'p', 'm', 'i', 'I') AND ${NOT_EXT('pg_class', 'c.oid')}`);
  await refuse('table access method', `SELECT c.oid::regclass::text || ' (' || a.amname || ')' AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_am a ON a.oid = c.relam
    WHERE ${USER_NS} AND c.relkind IN ('r', 'm') AND a.amname <> 'heap' AND ${NOT_EXT('pg_class', 'c.oid')}`);
  await refuse('view column default', `SELECT c.oid::regclass::text || '.' || quote_ident(a.attname) AS name FROM pg_attrdef d JOIN pg_class c ON c.oid = d.adrelid JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum WHERE c.relkind = 'v'`);
  await refuse('typed table', `SELECT c.oid::regclass::text AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ${USER_NS} AND c.reloftype <> 0 AND c.relkind IN ('r', 'p')`);

  // ---- schemas and extensions (created first, in oid order)
  const schemas = await q<{ oid: number; name: string }>(
    `SELECT n.oid::int8::float8 AS oid, n.nspname AS name FROM pg_namespace n WHERE ${USER_NS} AND ${NOT_EXT('pg_namespace', 'n.oid')} ORDER BY n.oid`);
  const head: SchemaItem[] = [];
  const inSet = new Set<number>(); // every object oid the capture keeps (for comments, labels, grants)
  for (const s of schemas) {
    inSet.add(s.oid);
    if (s.name !== 'public') head.push({ label: `schema ${qid(s.name)}`, sql: `CREATE SCHEMA ${qi(s.name)}` });
  }
  const exts = await q<{ name: string; schema: string }>(
    `SELECT e.extname AS name, n.nspname AS schema FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname <> 'plpgsql' ORDER BY e.oid`);
  for (const e of exts) head.push({ label: `extension ${qid(e.name)}`, sql: `CREATE EXTENSION IF NOT EXISTS ${qi(e.name)} WITH SCHEMA ${qi(e.schema)} CASCADE` });

  // ---- types: enum, domain, composite
  const enums = await q<{ oid: number; name: string; labels: string[] }>(
    `SELECT t.oid::int8::float8 AS oid, t.oid::regtype::text AS name, array_agg(e.enumlabel::text ORDER BY e.enumsortorder) AS labels
     FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace JOIN pg_enum e ON e.enumtypid = t.oid
     WHERE ${USER_NS} AND ${NOT_EXT('pg_type', 't.oid')} GROUP BY t.oid`);
  for (const e of enums) add({ key: `t:${e.oid}`, oid: e.oid, label: `type ${e.name}`, sql: [`CREATE TYPE ${e.name} AS ENUM (${e.labels.map(ql).join(', ')})`] });
  const domains = await q<{ oid: number; name: string; base: string; coll: string | null; def: string | null; notnull: boolean; checks: string[] | null }>(
    `SELECT t.oid::int8::float8 AS oid, t.oid::regtype::text AS name, format_type(t.typbasetype, t.typtypmod) AS base,
            CASE WHEN t.typcollation <> b.typcollation AND t.typcollation <> 0 THEN (SELECT quote_ident(cn.nspname) || '.' || quote_ident(co.collname) FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = t.typcollation) END AS coll,
            pg_get_expr(t.typdefaultbin, 0) AS def, t.typnotnull AS notnull,
            (SELECT array_agg('CONSTRAINT ' || quote_ident(c.conname) || ' ' || pg_get_constraintdef(c.oid) ORDER BY c.conname) FROM pg_constraint c WHERE c.contypid = t.oid AND c.contype = 'c') AS checks
     FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace JOIN pg_type b ON b.oid = t.typbasetype
     WHERE t.typtype = 'd' AND ${USER_NS} AND ${NOT_EXT('pg_type', 't.oid')}`);
  for (const d of domains) {
    let sql = `CREATE DOMAIN ${d.name} AS ${d.base}`;
    if (d.coll) sql += ` COLLATE ${d.coll}`;
    if (d.def !== null) sql += ` DEFAULT ${d.def}`;
    if (d.notnull) sql += ' NOT NULL';
    for (const c of d.checks ?? []) sql += ` ${c}`;
    add({ key: `t:${d.oid}`, oid: d.oid, label: `domain ${d.name}`, sql: [sql] });
  }
  const composites = await q<{ oid: number; relid: number; name: string; attrs: string[] }>(
    `SELECT t.oid::int8::float8 AS oid, t.typrelid::int8::float8 AS relid, t.oid::regtype::text AS name,
            array_agg(quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod)
              || CASE WHEN a.attcollation <> at.typcollation AND a.attcollation <> 0 THEN ' COLLATE ' || (SELECT quote_ident(cn.nspname) || '.' || quote_ident(co.collname) FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = a.attcollation) ELSE '' END
              ORDER BY a.attnum) FILTER (WHERE a.attnum IS NOT NULL) AS attrs
     FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace JOIN pg_class c ON c.oid = t.typrelid
     LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped LEFT JOIN pg_type at ON at.oid = a.atttypid
     WHERE t.typtype = 'c' AND c.relkind = 'c' AND ${USER_NS} AND ${NOT_EXT('pg_type', 't.oid')} GROUP BY t.oid`);
  for (const c of composites) {
    inSet.add(c.relid);
    add({ key: `t:${c.oid}`, oid: c.oid, label: `type ${c.name}`, sql: [`CREATE TYPE ${c.name} AS (${(c.attrs ?? []).join(', ')})`] });
  }

  const ranges = await q<{ oid: number; name: string; sub: string; opc: string | null; coll: string | null; canonical: string | null; diff: string | null; multi: string }>(
    `SELECT t.oid::int8::float8 AS oid, t.oid::regtype::text AS name, format_type(r.rngsubtype, NULL) AS sub,
            CASE WHEN NOT o.opcdefault THEN quote_ident(on_.nspname) || '.' || quote_ident(o.opcname) END AS opc,
            CASE WHEN r.rngcollation <> 0 AND r.rngcollation <> st.typcollation THEN (SELECT quote_ident(cn.nspname) || '.' || quote_ident(co.collname) FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = r.rngcollation) END AS coll,
            nullif(r.rngcanonical, 0)::regproc::text AS canonical, nullif(r.rngsubdiff, 0)::regproc::text AS diff, r.rngmultitypid::regtype::text AS multi
     FROM pg_range r JOIN pg_type t ON t.oid = r.rngtypid JOIN pg_namespace n ON n.oid = t.typnamespace JOIN pg_type st ON st.oid = r.rngsubtype
     JOIN pg_opclass o ON o.oid = r.rngsubopc JOIN pg_namespace on_ ON on_.oid = o.opcnamespace
     WHERE ${USER_NS} AND ${NOT_EXT('pg_type', 't.oid')}`);
  for (const r of ranges) {
    const opts = [`subtype = ${r.sub}`, ...(r.opc ? [`subtype_opclass = ${r.opc}`] : []), ...(r.coll ? [`collation = ${r.coll}`] : []),
      ...(r.canonical ? [`canonical = ${r.canonical}`] : []), ...(r.diff ? [`subtype_diff = ${r.diff}`] : []), `multirange_type_name = ${r.multi}`];
    add({ key: `t:${r.oid}`, oid: r.oid, label: `type ${r.name}`, sql: [`CREATE TYPE ${r.name} AS RANGE (${opts.join(', ')})`] });
  }

  // ---- functions and procedures
  const funcs = await q<{ oid: number; ident: string; def: string }>(
    `SELECT p.oid::int8::float8 AS oid, p.oid::regprocedure::text AS ident, pg_get_functiondef(p.oid) AS def FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE ${USER_NS} AND p.prokind IN ('f', 'p') AND ${NOT_EXT('pg_proc', 'p.oid')}
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'i')`);
  for (const f of funcs) add({ key: `p:${f.oid}`, oid: f.oid, label: `function ${f.ident}`, sql: [f.def.replace(/\s*$/, '')] });

  // ---- relations
  const rels = await q<{ oid: number; name: string; kind: string; persistence: string; ispartition: boolean; parent: number | null; bound: string | null; partkey: string | null; options: string[] | null; populated: boolean; rls: boolean; forcerls: boolean; replident: string }>(
    `SELECT c.oid::int8::float8 AS oid, c.oid::regclass::text AS name, c.relkind AS kind, c.relpersistence AS persistence, c.relispartition AS ispartition,
            (SELECT i.inhparent::int8::float8 FROM pg_inherits i WHERE i.inhrelid = c.oid AND c.relispartition) AS parent,
            CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid) END AS bound,
            CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END AS partkey,
            c.reloptions AS options, c.relispopulated AS populated, c.relrowsecurity AS rls, c.relforcerowsecurity AS forcerls, c.relreplident AS replident
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p', 'v', 'm') AND ${USER_NS} AND ${NOT_EXT('pg_class', 'c.oid')} ORDER BY c.oid`);
  const relById = new Map(rels.map((r) => [r.oid, r]));
  // Which tables are in: the selection, partitions following their root.
  const rootOf = (oid: number): number => { let r = relById.get(oid); while (r?.parent) r = relById.get(r.parent); return r?.oid ?? oid; };
  const excluded = new Set<string>(); // keys of relations left out by the selection
  for (const r of rels) {
    if (r.kind !== 'r' && r.kind !== 'p') continue;
    if (selected && !selected.has(rootOf(r.oid))) excluded.add(`c:${r.oid}`);
  }

  const cols = await q<{ rel: number; name: string; type: string; notnull: boolean; def: string | null; identity: string; generated: string; coll: string | null; seq: string | null; seqopts: string | null; seqoid: number | null; stattarget: number; storage: string; typstorage: string; compression: string; options: string[] | null }>(
    `SELECT a.attrelid::int8::float8 AS rel, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS notnull,
            pg_get_expr(ad.adbin, ad.adrelid) AS def, a.attidentity AS identity, a.attgenerated AS generated,
            a.attstattarget AS stattarget, a.attstorage AS storage, t.typstorage, a.attcompression AS compression, a.attoptions AS options,
            CASE WHEN a.attcollation <> t.typcollation AND a.attcollation <> 0 THEN (SELECT quote_ident(cn.nspname) || '.' || quote_ident(co.collname) FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = a.attcollation) END AS coll,
            sq.seqrelid::regclass::text AS seq, sq.seqoid, 
            'START WITH ' || sq.seqstart || ' INCREMENT BY ' || sq.seqincrement || ' MINVALUE ' || sq.seqmin || ' MAXVALUE ' || sq.seqmax || ' CACHE ' || sq.seqcache || CASE WHEN sq.seqcycle THEN ' CYCLE' ELSE ' NO CYCLE' END AS seqopts
     FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_type t ON t.oid = a.atttypid
     LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
     LEFT JOIN LATERAL (SELECT s.*, s.seqrelid::int8::float8 AS seqoid FROM pg_depend d JOIN pg_sequence s ON s.seqrelid = d.objid
                        WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid = a.attrelid AND d.refobjsubid = a.attnum AND d.deptype = 'i') sq ON a.attidentity <> ''
     WHERE c.relkind IN ('r', 'p') AND ${USER_NS} AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attrelid, a.attnum`);
  const colsOf = new Map<number, typeof cols>();
  for (const c of cols) { if (!colsOf.has(c.rel)) colsOf.set(c.rel, []); colsOf.get(c.rel)!.push(c); }
  const withOpts = (o: string[] | null) => (o && o.length ? ` WITH (${o.map((x) => { const i = x.indexOf('='); return `${x.slice(0, i)}=${ql(x.slice(i + 1))}`; }).join(', ')})` : '');
  const attach: SchemaItem[] = [];
  const tail: SchemaItem[] = [];
  const post: SchemaItem[] = [];
  const final: SchemaItem[] = [];
  const refreshOrder: string[] = [];
  const views = await q<{ oid: number; def: string }>(
    `SELECT c.oid::int8::float8 AS oid, pg_get_viewdef(c.oid) AS def FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('v', 'm') AND ${USER_NS} AND ${NOT_EXT('pg_class', 'c.oid')}`);
  const viewDef = new Map(views.map((v) => [v.oid, v.def.replace(/;\s*$/, '')]));
  for (const r of rels) {
    const key = `c:${r.oid}`;
    if (r.kind === 'v' || r.kind === 'm') {
      const mat = r.kind === 'm';
      const sql = mat
        ? `CREATE MATERIALIZED VIEW ${r.name}${withOpts(r.options)} AS ${viewDef.get(r.oid)} WITH NO DATA`
        : `CREATE VIEW ${r.name}${withOpts(r.options)} AS ${viewDef.get(r.oid)}`;
      add({ key, oid: r.oid, label: `${mat ? 'materialized view' : 'view'} ${r.name}`, sql: [sql], refresh: mat && r.populated ? `REFRESH MATERIALIZED VIEW ${r.name}` : undefined });
      continue;
    }
    const defs = (colsOf.get(r.oid) ?? []).map((c) => {
      let d = `${qi(c.name)} ${c.type}`;
      if (c.coll) d += ` COLLATE ${c.coll}`;
      if (c.generated === 's') d += ` GENERATED ALWAYS AS (${c.def}) STORED`;
      else if (c.identity) d += ` GENERATED ${c.identity === 'a' ? 'ALWAYS' : 'BY DEFAULT'} AS IDENTITY (SEQUENCE NAME ${c.seq} ${c.seqopts})`;
      else if (c.def !== null) d += ` DEFAULT ${c.def}`;
      if (c.notnull) d += ' NOT NULL';
      return d;
    });
    const sql = `CREATE ${r.persistence === 'u' ? 'UNLOGGED ' : ''}TABLE ${r.name} (${defs.join(', ')})${r.partkey ? ` PARTITION BY ${r.partkey}` : ''}${withOpts(r.options)}`;
    const o = add({ key, oid: r.oid, label: `table ${r.name}`, sql: [sql] });
    if (r.parent) {
      o.deps.add(`c:${r.parent}`);
      attach.push({ label: `table ${r.name}`, sql: `ALTER TABLE ONLY ${relById.get(r.parent)!.name} ATTACH PARTITION ${r.name} ${r.bound}` });
    }
    if (r.rls) post.push({ label: `row level security ${r.name}`, sql: `ALTER TABLE ${r.name} ENABLE ROW LEVEL SECURITY` });
    if (r.forcerls) post.push({ label: `row level security ${r.name}`, sql: `ALTER TABLE ${r.name} FORCE ROW LEVEL SECURITY` });
    if (r.replident === 'n' || r.replident === 'f') post.push({ label: `replica identity ${r.name}`, sql: `ALTER TABLE ONLY ${r.name} REPLICA IDENTITY ${r.replident === 'n' ? 'NOTHING' : 'FULL'}` });
    for (const c of colsOf.get(r.oid) ?? []) {
      const col = `ALTER TABLE ONLY ${r.name} ALTER COLUMN ${qi(c.name)}`;
      const label = `column options ${r.name}.${qid(c.name)}`;
      if (c.stattarget >= 0) post.push({ label, sql: `${col} SET STATISTICS ${c.stattarget}` });
      if (c.storage !== c.typstorage) post.push({ label, sql: `${col} SET STORAGE ${({ p: 'PLAIN', e: 'EXTERNAL', m: 'MAIN', x: 'EXTENDED' } as Record<string, string>)[c.storage]}` });
      if (c.compression) post.push({ label, sql: `${col} SET COMPRESSION ${c.compression === 'p' ? 'pglz' : 'lz4'}` });
      if (c.options && c.options.length) post.push({ label, sql: `${col} SET (${c.options.join(', ')})` });
    }
  }

  // ---- standalone sequences
  const seqs = await q<{ oid: number; name: string; type: string; opts: string; owner: string | null; ownerrel: number | null; persistence: string }>(
    `SELECT c.oid::int8::float8 AS oid, c.oid::regclass::text AS name, format_type(s.seqtypid, NULL) AS type, c.relpersistence AS persistence,
            'INCREMENT BY ' || s.seqincrement || ' MINVALUE ' || s.seqmin || ' MAXVALUE ' || s.seqmax || ' START WITH ' || s.seqstart || ' CACHE ' || s.seqcache || CASE WHEN s.seqcycle THEN ' CYCLE' ELSE ' NO CYCLE' END AS opts,
            (SELECT d.refobjid::regclass::text || '.' || quote_ident(a.attname) FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
              WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'a') AS owner,
            (SELECT d.refobjid::int8::float8 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'a') AS ownerrel
     FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE ${USER_NS} AND ${NOT_EXT('pg_class', 'c.oid')}
       AND NOT EXISTS (SELECT 1 FROM pg_depend di WHERE di.classid = 'pg_class'::regclass AND di.objid = c.oid AND di.deptype = 'i')`);
  for (const s of seqs) {
    if (s.ownerrel && excluded.has(`c:${s.ownerrel}`)) continue; // a serial of a table left out goes with it
    add({ key: `c:${s.oid}`, oid: s.oid, label: `sequence ${s.name}`, sql: [`CREATE ${s.persistence === 'u' ? 'UNLOGGED ' : ''}SEQUENCE ${s.name} AS ${s.type} ${s.opts}`] });
    if (s.owner) tail.push({ label: `sequence ${s.name}`, sql: `ALTER SEQUENCE ${s.name} OWNED BY ${s.owner}` });
  }

  // ---- dependencies from pg_depend (normal ones), mapped to the objects above
  const deps = await q<{ src: string | null; ref: string | null }>(
    `WITH m AS (
       SELECT d.deptype,
         CASE d.classid
           WHEN 'pg_class'::regclass THEN 'c:' || d.objid::int8
           WHEN 'pg_rewrite'::regclass THEN (SELECT 'c:' || r.ev_class::int8 FROM pg_rewrite r WHERE r.oid = d.objid)
           WHEN 'pg_attrdef'::regclass THEN (SELECT 'c:' || a.adrelid::int8 FROM pg_attrdef a WHERE a.oid = d.objid)
           WHEN 'pg_constraint'::regclass THEN (SELECT 't:' || c.contypid::int8 FROM pg_constraint c WHERE c.oid = d.objid AND c.contypid <> 0)
           WHEN 'pg_proc'::regclass THEN 'p:' || d.objid::int8
           WHEN 'pg_type'::regclass THEN 't:' || d.objid::int8
         END AS src,
         CASE d.refclassid
           WHEN 'pg_class'::regclass THEN (SELECT CASE WHEN c.relkind = 'c' THEN 't:' || c.reltype::int8 ELSE 'c:' || c.oid::int8 END FROM pg_class c WHERE c.oid = d.refobjid)
           WHEN 'pg_proc'::regclass THEN 'p:' || d.refobjid::int8
           WHEN 'pg_type'::regclass THEN (SELECT CASE WHEN e.oid IS NOT NULL THEN (CASE WHEN ec.relkind IN ('r', 'p', 'v', 'm') THEN 'c:' || ec.oid::int8 ELSE 't:' || e.oid::int8 END)
                                                      WHEN c.relkind IN ('r', 'p', 'v', 'm') THEN 'c:' || c.oid::int8
                                                      WHEN t.typtype = 'm' THEN (SELECT 't:' || rg.rngtypid::int8 FROM pg_range rg WHERE rg.rngmultitypid = t.oid)
                                                      ELSE 't:' || t.oid::int8 END
                                         FROM pg_type t LEFT JOIN pg_class c ON c.oid = t.typrelid
                                         LEFT JOIN pg_type e ON e.typarray = t.oid LEFT JOIN pg_class ec ON ec.oid = e.typrelid
                                         WHERE t.oid = d.refobjid)
         END AS ref
       FROM pg_depend d WHERE d.deptype = 'n' AND d.objid >= 16384 AND d.refobjid >= 16384)
     SELECT src, ref FROM m WHERE src IS NOT NULL AND ref IS NOT NULL AND src <> ref`);
  for (const d of deps) {
    const o = objs.get(d.src!);
    if (o && (objs.has(d.ref!) || excluded.has(d.ref!))) o.deps.add(d.ref!);
  }

  // ---- subset closure: whatever needs a relation left out is left out (a selected table needing one is an error)
  let changed = true;
  while (changed) {
    changed = false;
    for (const o of objs.values()) {
      if (excluded.has(o.key)) continue;
      const missing = [...o.deps].find((d) => excluded.has(d));
      if (!missing) continue;
      const what = objs.get(missing)?.label ?? missing;
      if (o.label.startsWith('table ')) {
        unsupported.push(`${o.label} needs ${what}, which tables.include/exclude leaves out`);
        continue;
      }
      excluded.add(o.key);
      warnings.push(`${o.label} left out: it depends on ${what}, which tables.include/exclude leaves out`);
      changed = true;
    }
  }
  if (unsupported.length > 0) throw new UnsupportedObjectsError(unsupported);
  for (const k of excluded) objs.delete(k);
  for (const o of objs.values()) inSet.add(o.oid);
  for (const c of cols) if (c.seqoid && objs.has(`c:${c.rel}`)) inSet.add(c.seqoid); // identity sequences of the tables kept

  // ---- dependency order (Kahn; ties by oid)
  const order: Obj[] = [];
  const indeg = new Map<string, number>();
  const users = new Map<string, string[]>();
  for (const o of objs.values()) {
    const ds = [...o.deps].filter((d) => objs.has(d));
    indeg.set(o.key, ds.length);
    for (const d of ds) { if (!users.has(d)) users.set(d, []); users.get(d)!.push(o.key); }
  }
  const ready = [...objs.values()].filter((o) => indeg.get(o.key) === 0).sort((a, b) => a.oid - b.oid);
  while (ready.length > 0) {
    const o = ready.shift()!;
    order.push(o);
    for (const u of users.get(o.key) ?? []) {
      const n = indeg.get(u)! - 1;
      indeg.set(u, n);
      if (n === 0) {
        const x = objs.get(u)!;
        const i = ready.findIndex((r) => r.oid > x.oid);
        ready.splice(i < 0 ? ready.length : i, 0, x);
      }
    }
  }
  if (order.length < objs.size) {
    const stuck = [...objs.values()].filter((o) => !order.includes(o)).map((o) => o.label);
    throw new UnsupportedObjectsError([`a dependency cycle among ${stuck.join(', ')}`]);
  }
  const pre: SchemaItem[] = [...head];
  for (const o of order) {
    for (const sql of o.sql) pre.push({ label: o.label, sql });
    if (o.refresh) refreshOrder.push(o.refresh);
  }
  pre.push(...attach.filter((a) => [...objs.values()].some((o) => o.label === a.label)), ...tail);
  const keptRel = (oid: number) => objs.has(`c:${oid}`);
  const keptRels = rels.filter((r) => keptRel(r.oid)).map((r) => r.oid);

  // ---- after the data: constraints, indexes, foreign keys, triggers, rules, policies, statistics
  const cons = await q<{ rel: number; relname: string; name: string; def: string; contype: string; ispart: boolean; parentidx: string | null; idx: string | null; cluster: boolean; local: boolean; parentcon: boolean; ref: number | null }>(
    `SELECT c.conrelid::int8::float8 AS rel, c.conrelid::regclass::text AS relname, c.conname AS name, pg_get_constraintdef(c.oid) AS def, c.contype,
            cl.relispartition AS ispart, c.conislocal AS local, c.conparentid <> 0 AS parentcon, nullif(c.confrelid, 0)::int8::float8 AS ref,
            c.conindid::regclass::text AS idx, coalesce((SELECT x.indisclustered FROM pg_index x WHERE x.indexrelid = c.conindid), false) AS cluster,
            (SELECT i.inhparent::regclass::text FROM pg_inherits i WHERE i.inhrelid = c.conindid AND c.contype IN ('p', 'u', 'x')) AS parentidx
     FROM pg_constraint c JOIN pg_class cl ON cl.oid = c.conrelid WHERE c.conrelid = ANY($1::oid[])
     ORDER BY CASE c.contype WHEN 'p' THEN 0 WHEN 'u' THEN 1 WHEN 'x' THEN 2 WHEN 'c' THEN 3 ELSE 4 END, c.oid`, [keptRels]);
  const idxAttach: SchemaItem[] = [];
  const fks: SchemaItem[] = [];
  for (const c of cons) {
    const label = `constraint ${qi(c.name)} on ${c.relname}`;
    if (c.contype === 'f') {
      if (c.parentcon) continue; // a partition's copy of its parent's foreign key
      if (c.ref !== null && !keptRel(c.ref)) { warnings.push(`foreign key ${c.name} on ${c.relname} left out: it references ${relById.get(c.ref)?.name ?? c.ref}, which tables.include/exclude leaves out`); continue; }
      fks.push({ label, sql: `ALTER TABLE ${c.relname} ADD CONSTRAINT ${qi(c.name)} ${c.def}` });
    } else if (c.contype === 'p' || c.contype === 'u' || c.contype === 'x') {
      post.push({ label, sql: `ALTER TABLE ONLY ${c.relname} ADD CONSTRAINT ${qi(c.name)} ${c.def}` });
      if (c.cluster) post.push({ label, sql: `ALTER TABLE ONLY ${c.relname} CLUSTER ON ${qi(c.name)}` });
      if (c.parentidx) idxAttach.push({ label: `index ${c.idx}`, sql: `ALTER INDEX ${c.parentidx} ATTACH PARTITION ${c.idx}` });
    } else if (c.contype === 'c') {
      if (!c.local) continue; // inherited from a partitioned parent
      post.push({ label, sql: `ALTER TABLE ${c.relname} ADD CONSTRAINT ${qi(c.name)} ${c.def}` });
    } else if (c.contype === 't') {
      continue; // constraint triggers come with the triggers
    }
  }
  const idx = await q<{ name: string; def: string; parent: string | null; cluster: boolean; rel: string }>(
    `SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS def, i.indisclustered AS cluster, i.indrelid::regclass::text AS rel,
            (SELECT h.inhparent::regclass::text FROM pg_inherits h WHERE h.inhrelid = i.indexrelid) AS parent
     FROM pg_index i WHERE i.indrelid = ANY($1::oid[])
       AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid AND c.contype IN ('p', 'u', 'x'))
     ORDER BY i.indexrelid`, [keptRels]);
  for (const i of idx) {
    post.push({ label: `index ${i.name}`, sql: i.def });
    if (i.cluster) post.push({ label: `index ${i.name}`, sql: `ALTER TABLE ONLY ${i.rel} CLUSTER ON ${qi(splitQualified(i.name)[1])}` });
    if (i.parent) idxAttach.push({ label: `index ${i.name}`, sql: `ALTER INDEX ${i.parent} ATTACH PARTITION ${i.name}` });
  }
  post.push(...idxAttach, ...fks);
  const trig = await q<{ name: string; rel: string; def: string; enabled: string }>(
    `SELECT quote_ident(t.tgname) AS name, t.tgrelid::regclass::text AS rel, pg_get_triggerdef(t.oid) AS def, t.tgenabled AS enabled FROM pg_trigger t
     WHERE t.tgrelid = ANY($1::oid[]) AND (NOT t.tgisinternal OR (t.tgconstraint <> 0 AND (SELECT contype FROM pg_constraint WHERE oid = t.tgconstraint) = 't')) AND t.tgparentid = 0 ORDER BY t.oid`, [keptRels]);
  for (const t of trig) {
    const label = `trigger ${t.name} on ${t.rel}`;
    post.push({ label, sql: t.def });
    if (t.enabled !== 'O') post.push({ label, sql: `ALTER TABLE ${t.rel} ${t.enabled === 'D' ? 'DISABLE' : t.enabled === 'A' ? 'ENABLE ALWAYS' : 'ENABLE REPLICA'} TRIGGER ${t.name}` });
  }
  const rules = await q<{ name: string; rel: string; def: string }>(
    `SELECT quote_ident(r.rulename) AS name, r.ev_class::regclass::text AS rel, pg_get_ruledef(r.oid) AS def FROM pg_rewrite r
     WHERE r.ev_class = ANY($1::oid[]) AND r.rulename <> '_RETURN' ORDER BY r.oid`, [keptRels]);
  for (const r of rules) post.push({ label: `rule ${r.name} on ${r.rel}`, sql: r.def.replace(/;\s*$/, '') });
  const pols = await q<{ name: string; rel: string; permissive: boolean; cmd: string; roles: string; qual: string | null; chk: string | null }>(
    `SELECT quote_ident(p.polname) AS name, p.polrelid::regclass::text AS rel, p.polpermissive AS permissive, p.polcmd AS cmd,
            (SELECT string_agg(CASE WHEN r = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r)) END, ', ' ORDER BY 1) FROM unnest(p.polroles) r) AS roles,
            pg_get_expr(p.polqual, p.polrelid) AS qual, pg_get_expr(p.polwithcheck, p.polrelid) AS chk
     FROM pg_policy p WHERE p.polrelid = ANY($1::oid[]) ORDER BY p.oid`, [keptRels]);
  const CMD: Record<string, string> = { r: 'SELECT', a: 'INSERT', w: 'UPDATE', d: 'DELETE', '*': 'ALL' };
  for (const p of pols) {
    let sql = `CREATE POLICY ${p.name} ON ${p.rel} AS ${p.permissive ? 'PERMISSIVE' : 'RESTRICTIVE'} FOR ${CMD[p.cmd]} TO ${p.roles}`;
    if (p.qual !== null) sql += ` USING (${p.qual})`;
    if (p.chk !== null) sql += ` WITH CHECK (${p.chk})`;
    post.push({ label: `policy ${p.name} on ${p.rel}`, sql });
  }
  const stats = await q<{ name: string; def: string }>(
    `SELECT quote_ident(n.nspname) || '.' || quote_ident(s.stxname) AS name, pg_get_statisticsobjdef(s.oid) AS def FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace
     WHERE s.stxrelid = ANY($1::oid[]) ORDER BY s.oid`, [keptRels]);
  for (const s of stats) post.push({ label: `statistics ${s.name}`, sql: s.def });

  // ---- final: refresh materialized views, then comments, security labels, privileges
  for (const r of refreshOrder) final.push({ label: `refresh ${r.slice('REFRESH MATERIALIZED VIEW '.length)}`, sql: r });
  const ownerOf = `CASE x.classoid
       WHEN 'pg_class'::regclass THEN coalesce((SELECT i.indrelid FROM pg_index i WHERE i.indexrelid = x.objoid), x.objoid)
       WHEN 'pg_constraint'::regclass THEN (SELECT CASE WHEN c.conrelid <> 0 THEN c.conrelid ELSE c.contypid END FROM pg_constraint c WHERE c.oid = x.objoid)
       WHEN 'pg_trigger'::regclass THEN (SELECT t.tgrelid FROM pg_trigger t WHERE t.oid = x.objoid)
       WHEN 'pg_policy'::regclass THEN (SELECT p.polrelid FROM pg_policy p WHERE p.oid = x.objoid)
       WHEN 'pg_rewrite'::regclass THEN (SELECT r.ev_class FROM pg_rewrite r WHERE r.oid = x.objoid)
       ELSE x.objoid END::int8::float8`;
  const target = (type: string, identity: string, classoid: string, objoid: number): string | undefined => {
    if (/ column$/.test(type)) return `COLUMN ${identity}`;
    if (type === 'table constraint' || type === 'domain constraint') return undefined; // built below, from pg_constraint
    if (type === 'extension') return undefined;
    if (type === 'function' || type === 'procedure' || type === 'schema' || type === 'type' || type === 'domain' || type === 'table' || type === 'view' || type === 'materialized view' ||
        type === 'sequence' || type === 'index' || type === 'trigger' || type === 'policy' || type === 'rule' || type === 'statistics object' || type === 'composite type') {
      const kw = type === 'statistics object' ? 'STATISTICS' : type === 'composite type' ? 'TYPE' : type.toUpperCase();
      return `${kw} ${identity}`;
    }
    void classoid; void objoid;
    return undefined;
  };
  const described = await q<{ classoid: string; objoid: number; type: string; identity: string; text: string; owner: number; provider: string | null; cons: string | null }>(
    `SELECT x.classoid::regclass::text AS classoid, x.objoid::int8::float8 AS objoid, o.type, o.identity, x.text, x.provider, ${ownerOf} AS owner,
            CASE WHEN x.classoid = 'pg_constraint'::regclass THEN (SELECT quote_ident(c.conname) || ' ON ' || CASE WHEN c.conrelid <> 0 THEN c.conrelid::regclass::text ELSE 'DOMAIN ' || c.contypid::regtype::text END FROM pg_constraint c WHERE c.oid = x.objoid) END AS cons
     FROM (SELECT classoid, objoid, objsubid, description AS text, NULL::text AS provider FROM pg_description
           UNION ALL SELECT classoid, objoid, objsubid, label, provider FROM pg_seclabel) x,
          pg_identify_object(x.classoid, x.objoid, x.objsubid) o
     WHERE x.objoid >= 16384 ORDER BY o.type, o.identity, x.provider NULLS FIRST`);
  for (const d of described) {
    if (!inSet.has(d.owner)) continue;
    const on = d.cons ? `CONSTRAINT ${d.cons}` : target(d.type, d.identity, d.classoid, d.objoid);
    if (!on) continue;
    if (d.provider === null) final.push({ label: `comment on ${d.type} ${d.identity}`, sql: `COMMENT ON ${on} IS ${ql(d.text)}` });
    else final.push({ label: `security label ${d.provider} on ${d.type} ${d.identity}`, sql: `SECURITY LABEL FOR ${qi(d.provider)} ON ${on} IS ${ql(d.text)}` });
  }
  final.push(...await privileges(db, inSet));
  // Default privileges last: they must not change the ACLs of the objects restored above.
  const defacl = await q<{ role: string; schema: string | null; type: string; acl: { grantee: string; priv: string; grantable: boolean }[] }>(
    `SELECT quote_ident(pg_get_userbyid(d.defaclrole)) AS role, quote_ident(n.nspname) AS schema, d.defaclobjtype AS type,
            coalesce((SELECT json_agg(json_build_object('grantee', CASE WHEN e.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(e.grantee)) END,
                                                 'priv', e.privilege_type, 'grantable', e.is_grantable) ORDER BY pg_get_userbyid(e.grantee), e.privilege_type)
                      FROM aclexplode(d.defaclacl) e), '[]'::json) AS acl
     FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace ORDER BY 1, 2 NULLS FIRST, 3`);
  const OBJTYPE: Record<string, string> = { r: 'TABLES', S: 'SEQUENCES', f: 'FUNCTIONS', T: 'TYPES', n: 'SCHEMAS' };
  for (const d of defacl) {
    const on = OBJTYPE[d.type];
    const head = `ALTER DEFAULT PRIVILEGES FOR ROLE ${d.role}${d.schema ? ` IN SCHEMA ${d.schema}` : ''}`;
    const label = `default privileges for role ${d.role}${d.schema ? ` in schema ${d.schema}` : ''} on ${on.toLowerCase()}`;
    // A database-wide entry is the whole ACL (start from nothing); a schema's adds to the database-wide one.
    if (!d.schema) for (const who of ['PUBLIC', d.role]) final.push({ label, sql: `${head} REVOKE ALL ON ${on} FROM ${who}` });
    for (const a of d.acl) final.push({ label, sql: `${head} GRANT ${a.priv} ON ${on} TO ${a.grantee}${a.grantable ? ' WITH GRANT OPTION' : ''}` });
  }
  return { pre, post, final, tables: rels.filter((r) => (r.kind === 'r' || r.kind === 'p') && keptRel(r.oid)).map((r) => {
    const [schema, name] = splitQualified(r.name);
    return { schema, name, oid: r.oid };
  }), warnings };
}

/** GRANT/REVOKE statements reproducing each object's ACL (owner's grants go to the restoring role). */
async function privileges(db: pg.Client, inSet: Set<number>): Promise<SchemaItem[]> {
  const r = await db.query<{ oid: number; kind: string; ident: string; col: string | null; acl: { grantee: string; priv: string; grantable: boolean }[] }>(
    `WITH objs AS (
       SELECT n.oid, 'SCHEMA' AS kind, quote_ident(n.nspname) AS ident, NULL::text AS col, n.nspacl AS acl, n.nspowner AS owner FROM pg_namespace n WHERE n.nspacl IS NOT NULL
       UNION ALL SELECT c.oid, CASE WHEN c.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, c.oid::regclass::text, NULL, c.relacl, c.relowner FROM pg_class c WHERE c.relacl IS NOT NULL AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
       UNION ALL SELECT c.oid, 'TABLE', c.oid::regclass::text, quote_ident(a.attname), a.attacl, c.relowner FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid WHERE a.attacl IS NOT NULL AND a.attnum > 0 AND NOT a.attisdropped
       UNION ALL SELECT p.oid, CASE WHEN p.prokind = 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, p.oid::regprocedure::text, NULL, p.proacl, p.proowner FROM pg_proc p WHERE p.proacl IS NOT NULL
       UNION ALL SELECT t.oid, 'TYPE', t.oid::regtype::text, NULL, t.typacl, t.typowner FROM pg_type t WHERE t.typacl IS NOT NULL)
     SELECT o.oid::int8::float8 AS oid, o.kind, o.ident, o.col,
            coalesce((SELECT json_agg(json_build_object('grantee', CASE WHEN e.grantee = 0 THEN 'PUBLIC' WHEN e.grantee = o.owner THEN 'CURRENT_USER' ELSE quote_ident(pg_get_userbyid(e.grantee)) END,
                                                 'priv', e.privilege_type, 'grantable', e.is_grantable) ORDER BY e.grantee = o.owner DESC, pg_get_userbyid(e.grantee), e.privilege_type)
                      FROM aclexplode(o.acl) e), '[]'::json) AS acl
     FROM objs o WHERE o.oid >= 16384 ORDER BY o.kind, o.ident, o.col NULLS FIRST`);
  const out: SchemaItem[] = [];
  for (const o of r.rows) {
    if (!inSet.has(o.oid)) continue;
    const label = `privileges on ${o.kind.toLowerCase()} ${o.ident}${o.col ? ` column ${o.col}` : ''}`;
    const on = `${o.kind} ${o.ident}`;
    const cols = o.col ? ` (${o.col})` : '';
    if (!o.col) {
      out.push({ label, sql: `REVOKE ALL ON ${on} FROM PUBLIC` });
      out.push({ label, sql: `REVOKE ALL ON ${on} FROM CURRENT_USER` });
    }
    const by = new Map<string, string[]>();
    for (const a of o.acl) {
      const k = `${a.grantee}\u0000${a.grantable}`;
      if (!by.has(k)) by.set(k, []);
      by.get(k)!.push(a.priv);
    }
    for (const [k, privs] of by) {
      const [grantee, grantable] = k.split('\u0000');
      out.push({ label, sql: `GRANT ${privs.map((p) => p + cols).join(', ')} ON ${on} TO ${grantee}${grantable === 'true' ? ' WITH GRANT OPTION' : ''}` });
    }
  }
  return out;
}

/** Splits a regclass text ("s.t", "\"My s\".\"t.x\"") into unquoted schema and name. */
export function splitQualified(s: string): [string, string] {
  const parts: string[] = [];
  let i = 0;
  while (i < s.length) {
    if (s[i] === '"') {
      let j = i + 1;
      let cur = '';
      for (;;) {
        if (s[j] === '"' && s[j + 1] === '"') { cur += '"'; j += 2; } else if (s[j] === '"') { j++; break; } else { cur += s[j]; j++; }
      }
      parts.push(cur);
      i = j;
    } else {
      let j = i;
      while (j < s.length && s[j] !== '.') j++;
      parts.push(s.slice(i, j));
      i = j;
    }
    if (s[i] === '.') i++;
  }
  return parts.length === 1 ? ['public', parts[0]] : [parts[0], parts[1]];
}

// ---------------------------------------------------------------- COPY FROM STDIN

/**
 * Runs `COPY ... FROM STDIN` feeding it a byte stream (a pg "submittable":
 * the client hands it the connection when the server asks for data).
 * Resolves with the number of rows the server reports.
 */
export function copyIn(db: pg.Client, text: string, source: AsyncIterable<Buffer>): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    let rows = 0;
    let error: Error | undefined;
    let feedError: Error | undefined;
    const sub = {
      submit(con: any) { con.query(text); },
      handleCopyInResponse(con: any) {
        void (async () => {
          try {
            const sock = con.stream as import('node:net').Socket;
            for await (const chunk of source) {
              if (error) return;
              con.sendCopyFromChunk(chunk);
              if (sock.writableNeedDrain) await new Promise<void>((r) => sock.once('drain', () => r()));
            }
            con.endCopyFrom();
          } catch (err) {
            feedError = err as Error;
            con.sendCopyFail(String((err as Error).message ?? err));
          }
        })();
      },
      handleCommandComplete(msg: { text?: string }) { const m = /(\d+)$/.exec(msg.text ?? ''); rows = m ? Number(m[1]) : 0; },
      handleError(err: Error) { error = err; },
      handleReadyForQuery() { if (feedError) reject(feedError); else if (error) reject(error); else resolve(rows); },
      handleRowDescription() {}, handleDataRow() {}, handleEmptyQuery() {}, handlePortalSuspended() {}, handleCopyData() {},
    };
    db.query(sub as never);
  });
}

/** Views and materialized views that read (directly or through other views) one of the given relations. */
export async function dependentViews(db: pg.Client, oids: number[]): Promise<{ oid: number; name: string }[]> {
  if (oids.length === 0) return [];
  const r = await db.query<{ oid: number; name: string }>(
    `WITH RECURSIVE dep(oid) AS (
       SELECT unnest($1::oid[])
       UNION
       SELECT r.ev_class FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid JOIN dep ON d.refobjid = dep.oid
       WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass AND r.ev_class <> dep.oid)
     SELECT c.oid::int8::float8 AS oid, c.oid::regclass::text AS name FROM dep JOIN pg_class c ON c.oid = dep.oid WHERE c.relkind IN ('v', 'm') ORDER BY c.oid`, [oids]);
  return r.rows;
}
