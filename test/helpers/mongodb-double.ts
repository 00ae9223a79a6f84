// An in-memory test double of the parts of the MongoDB Node driver (v7) that
// the mongodb driver uses, because no MongoDB server runs in this environment.
//
// What it keeps faithful to a real server + driver:
//   - documents are stored as BSON bytes (BSON.serialize on insert,
//     BSON.deserialize with the caller's promote* options on read), so types
//     round-trip exactly as they would over the wire (ObjectId, Date,
//     Decimal128, Binary, Long, Int32, Double, regexes, nested documents);
//   - insertMany adds a client-side ObjectId _id to documents without one,
//     rejects duplicate _id and unique-index violations with E11000 (ordered:
//     earlier documents stay inserted), and rejects inserts into views (166);
//   - find() returns a cursor whose first batch is fetched on the first read
//     (default 101 documents) and later batches with getMore (batchSize);
//     without a session each getMore sees the collection as it is then (a
//     collection scan sees documents added behind it), with a snapshot session
//     every read sees the state at the session's atClusterTime, fixed by the
//     first read; servers without snapshot support fail the first snapshot
//     read like a standalone mongod (code 20, IllegalOperation);
//   - listCollections / createCollection (NamespaceExists 48) / indexes /
//     createIndexes (IndexKeySpecsConflict 86 for a name reused with another
//     key) / countDocuments / drop behave as documented.
// Filters other than {} are not implemented and throw, so a driver relying on
// them fails loudly rather than passing by accident.
import { BSON, MongoServerError, ObjectId, Timestamp, type Document, type MongoClient } from 'mongodb';

interface StoredDoc { bytes: Buffer; id: string; insertedAt: number; deletedAt?: number }
interface CollState { type: 'collection' | 'view'; options: Document; docs: StoredDoc[]; indexes: Document[] }

function serverError(code: number, codeName: string, message: string): MongoServerError {
  return new MongoServerError({ message, errmsg: message, code, codeName, ok: 0 });
}

function assertEmptyFilter(filter: Document | undefined, op: string): void {
  if (filter && Object.keys(filter).length > 0) throw new Error(`mongodb double: ${op} with a non-empty filter is not implemented (${JSON.stringify(filter)})`);
}

/** A value as the server sees it: BSON-encoded and decoded (Int32 wrappers become numbers, etc.). */
function wire(d: Document): Document {
  return BSON.deserialize(BSON.serialize(d));
}

function getPath(doc: Document, p: string): unknown {
  let v: unknown = doc;
  for (const part of p.split('.')) v = v && typeof v === 'object' ? (v as Document)[part] : undefined;
  return v;
}

interface FakeSession { snapshotEnabled: boolean; snapshotTime?: Timestamp; ended: boolean; endSession(): Promise<void> }

export class MongoDouble {
  private clock = 1;
  readonly dbs = new Map<string, Map<string, CollState>>();
  /** false: behaves like a standalone mongod / DocumentDB for snapshot reads. */
  supportsSnapshot = true;
  readonly stats = { finds: 0, getMores: 0, insertManyCalls: 0, snapshotFinds: 0, connects: 0 };
  /** Called before every getMore (tests write to the server while a backup reads). */
  onGetMore?: (ns: string) => Promise<void> | void;

  /** A connected client, typed as the real one (the driver under test sees only the real API). */
  client(): MongoClient {
    this.stats.connects++;
    const server = this;
    let closed = false;
    const client = {
      async connect() { return client; },
      async close() { closed = true; },
      db(name: string) {
        if (closed) throw new Error('mongodb double: client is closed');
        return server.db(name);
      },
      startSession(o: { snapshot?: boolean } = {}): FakeSession {
        return { snapshotEnabled: !!o.snapshot, ended: false, async endSession() { this.ended = true; } };
      },
    };
    return client as unknown as MongoClient;
  }

  private colls(db: string): Map<string, CollState> {
    let m = this.dbs.get(db);
    if (!m) this.dbs.set(db, (m = new Map()));
    return m;
  }

  private ensure(db: string, name: string): CollState {
    const m = this.colls(db);
    let c = m.get(name);
    if (!c) m.set(name, (c = { type: 'collection', options: {}, docs: [], indexes: [{ v: 2, key: { _id: 1 }, name: '_id_' }] }));
    return c;
  }

  private visible(c: CollState, at?: number): StoredDoc[] {
    const t = at ?? this.clock;
    return c.docs.filter((d) => d.insertedAt <= t && (d.deletedAt === undefined || d.deletedAt > t));
  }

  private uniqueKey(doc: Document, key: Document): string {
    return BSON.EJSON.stringify(Object.keys(key).map((k) => getPath(doc, k) ?? null), { relaxed: false });
  }

  /** Keys of the live documents per unique index (_id_ included). */
  private uniqueSets(c: CollState): Map<Document, Set<string>> {
    const sets = new Map<Document, Set<string>>();
    const live = this.visible(c).map((d) => BSON.deserialize(d.bytes));
    for (const ix of c.indexes) {
      if (ix.name !== '_id_' && !ix.unique) continue;
      sets.set(ix, new Set(live.map((d) => this.uniqueKey(d, ix.key))));
    }
    return sets;
  }

  private db(dbName: string) {
    const server = this;
    return {
      databaseName: dbName,
      listCollections(filter: Document = {}, _o?: Document) {
        const names = Object.keys(filter);
        if (names.some((k) => k !== 'name')) throw new Error('mongodb double: listCollections filter other than {name} is not implemented');
        return {
          async toArray() {
            return [...server.colls(dbName).entries()]
              .filter(([n]) => filter.name === undefined || n === filter.name)
              .map(([name, c]) => ({ name, type: c.type, options: structuredClone(c.options), info: { readOnly: c.type === 'view' } }));
          },
        };
      },
      async createCollection(name: string, options: Document = {}) {
        const m = server.colls(dbName);
        if (m.has(name)) throw serverError(48, 'NamespaceExists', `Collection ${dbName}.${name} already exists.`);
        const { viewOn, pipeline, ...rest } = wire(options);
        if (viewOn !== undefined) {
          m.set(name, { type: 'view', options: { viewOn, pipeline: pipeline ?? [] }, docs: [], indexes: [] });
        } else {
          m.set(name, { type: 'collection', options: rest, docs: [], indexes: [{ v: 2, key: { _id: 1 }, name: '_id_' }] });
        }
        server.clock++;
        return this.collection(name);
      },
      collection(name: string) {
        return server.collection(dbName, name);
      },
    };
  }

  private collection(dbName: string, name: string) {
    const server = this;
    const ns = `${dbName}.${name}`;
    const current = () => server.colls(dbName).get(name);
    const writable = () => {
      const c = server.ensure(dbName, name);
      if (c.type === 'view') throw serverError(166, 'CommandNotSupportedOnView', `Namespace ${ns} is a view, not a collection`);
      return c;
    };
    const insertOne = (doc: Document, sets = server.uniqueSets(writable())) => {
      const c = writable();
      if (doc._id === undefined) doc._id = new ObjectId();
      for (const [ix, set] of sets) {
        const k = server.uniqueKey(doc, ix.key);
        if (set.has(k)) throw serverError(11000, 'DuplicateKey', `E11000 duplicate key error collection: ${ns} index: ${ix.name} dup key: ${k}`);
      }
      for (const [ix, set] of sets) set.add(server.uniqueKey(doc, ix.key));
      const bytes = Buffer.from(BSON.serialize(doc));
      c.docs.push({ bytes, id: BSON.EJSON.stringify({ v: doc._id }, { relaxed: false }), insertedAt: ++server.clock });
    };
    return {
      collectionName: name,
      async insertMany(docs: Document[], o: { ordered?: boolean } = {}) {
        server.stats.insertManyCalls++;
        if (!Array.isArray(docs) || docs.length === 0) throw new Error('Invalid BulkOperation, Batch cannot be empty');
        if (o.ordered === false) throw new Error('mongodb double: ordered: false is not implemented');
        const insertedIds: Record<number, unknown> = {};
        const sets = server.uniqueSets(writable());
        docs.forEach((d, i) => { insertOne(d, sets); insertedIds[i] = d._id; });
        return { acknowledged: true, insertedCount: docs.length, insertedIds };
      },
      async insertOne(doc: Document) {
        insertOne(doc);
        return { acknowledged: true, insertedId: doc._id };
      },
      async deleteOne(filter: Document) {
        const c = current();
        if (!c || Object.keys(filter).join() !== '_id') throw new Error('mongodb double: deleteOne supports only {_id}');
        const id = BSON.EJSON.stringify({ v: filter._id }, { relaxed: false });
        const d = server.visible(c).find((x) => x.id === id);
        if (d) d.deletedAt = ++server.clock;
        return { acknowledged: true, deletedCount: d ? 1 : 0 };
      },
      async countDocuments(filter: Document = {}, o: { session?: FakeSession } = {}) {
        assertEmptyFilter(filter, 'countDocuments');
        const c = current();
        return c ? server.visible(c, o.session?.snapshotTime?.t).length : 0;
      },
      async indexes() {
        const c = current();
        if (!c) throw serverError(26, 'NamespaceNotFound', `ns does not exist: ${ns}`);
        return structuredClone(c.indexes);
      },
      async createIndexes(specs: Document[]) {
        const c = writable();
        const names: string[] = [];
        for (const spec of specs) {
          const { key, name, ...opts } = wire(spec); // as the server sees it after BSON encoding
          const ixName = name ?? Object.entries(key).map(([k, v]) => `${k}_${v}`).join('_');
          const same = c.indexes.find((ix) => ix.name === ixName);
          if (same) {
            if (JSON.stringify(same.key) !== JSON.stringify(key)) {
              throw serverError(86, 'IndexKeySpecsConflict', `An existing index has the same name as the requested index: ${ixName}`);
            }
          } else {
            const ix: Document = { v: 2, key, name: ixName, ...opts };
            if (ix.unique) {
              const seen = new Set<string>();
              for (const d of server.visible(c)) {
                const k = server.uniqueKey(BSON.deserialize(d.bytes), key);
                if (seen.has(k)) throw serverError(11000, 'DuplicateKey', `E11000 duplicate key error collection: ${ns} index: ${ixName} dup key: ${k}`);
                seen.add(k);
              }
            }
            c.indexes.push(ix);
          }
          names.push(ixName);
        }
        server.clock++;
        return names;
      },
      async drop() {
        server.colls(dbName).delete(name);
        server.clock++;
        return true;
      },
      find(filter: Document = {}, o: Document = {}) {
        return server.cursor(ns, current, filter, o);
      },
    };
  }

  private cursor(ns: string, current: () => CollState | undefined, filter: Document, o: Document) {
    const server = this;
    const { session, batchSize, limit, promoteValues, promoteBuffers, promoteLongs, bsonRegExp, ...unknown } = o as {
      session?: FakeSession; batchSize?: number; limit?: number; promoteValues?: boolean; promoteBuffers?: boolean; promoteLongs?: boolean; bsonRegExp?: boolean;
    };
    if (Object.keys(unknown).length > 0) throw new Error(`mongodb double: find options not implemented: ${Object.keys(unknown).join(', ')}`);
    const readOpts = { promoteValues, promoteBuffers, promoteLongs, bsonRegExp };
    let started = false;
    let closed = false;
    let position = 0;
    let returned = 0;
    let at: number | undefined;
    let buffer: Document[] = [];
    let exhausted = false;
    const fetch = async (n: number) => {
      const c = current();
      const docs = c && c.type === 'collection' ? (at !== undefined ? server.visible(c, at) : c.docs) : [];
      const out: Document[] = [];
      while (position < docs.length && out.length < n) {
        const d = docs[position++];
        if (at === undefined && d.deletedAt !== undefined && d.deletedAt <= server.clock) continue;
        out.push(BSON.deserialize(d.bytes, readOpts));
      }
      if (position >= docs.length) exhausted = true;
      return out;
    };
    const nextBatch = async () => {
      const cap = limit ? limit - returned : Infinity;
      if (!started) {
        started = true;
        server.stats.finds++;
        assertEmptyFilter(filter, 'find');
        if (session) {
          if (session.ended) throw new Error('Cannot use a session that has ended');
          if (session.snapshotEnabled) {
            if (!server.supportsSnapshot) throw serverError(20, 'IllegalOperation', 'Transaction numbers are only allowed on a replica set member or mongos');
            server.stats.snapshotFinds++;
            session.snapshotTime ??= new Timestamp({ t: server.clock, i: 1 });
            at = session.snapshotTime.t;
          }
        }
        buffer = await fetch(Math.min(batchSize ?? 101, cap));
      } else {
        if (exhausted || cap <= 0) return;
        await server.onGetMore?.(ns);
        server.stats.getMores++;
        buffer = await fetch(Math.min(batchSize ?? 1000, cap));
      }
      returned += buffer.length;
    };
    const cursor = {
      async next(): Promise<Document | null> {
        if (closed) return null;
        if (buffer.length === 0) await nextBatch();
        return buffer.shift() ?? null;
      },
      async hasNext() {
        if (buffer.length === 0 && !closed) await nextBatch();
        return buffer.length > 0;
      },
      async toArray() {
        const out: Document[] = [];
        for (let d = await cursor.next(); d; d = await cursor.next()) out.push(d);
        return out;
      },
      async close() { closed = true; buffer = []; },
      async *[Symbol.asyncIterator]() {
        for (let d = await cursor.next(); d; d = await cursor.next()) yield d;
      },
    };
    return cursor;
  }
}
