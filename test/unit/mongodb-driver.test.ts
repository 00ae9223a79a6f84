// mongodb driver through the real backup engine and a file:// vault, against
// the in-memory MongoDB test double (test/helpers/mongodb-double.ts): no
// MongoDB server runs in this environment.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BSON, Binary, Decimal128, Double, Int32, Long, ObjectId, UUID, type Document, type MongoClient } from 'mongodb';
import { createMongodbDriver } from '../../functions/components/mongodb.ts';
import { PermanentError } from '../../functions/core/errors.ts';
import { MongoDouble } from '../helpers/mongodb-double.ts';
import { makeHarness, type Harness } from '../helpers/driver-harness.ts';

const ej = (d: unknown) => BSON.EJSON.stringify(d, { relaxed: false });

function episode(i: number): Document {
  return {
    _id: new ObjectId(),
    episodeId: `ep-${i}`,
    agent: i % 3 === 0 ? 'planner' : 'worker',
    at: new Date(1_760_000_000_000 + i * 1000),
    score: new Double(i + 0.5),
    weight: new Double(1), // a double that a promoting read would turn into an int
    tokens: new Int32(i * 7),
    seq: Long.fromString(`${9_007_199_254_740_993n + BigInt(i)}`),
    small: Long.fromNumber(i), // a Long that a promoting read would turn into an int
    cost: Decimal128.fromString(`0.${String(i).padStart(4, '0')}`),
    embedding: new Binary(Buffer.from(new Float32Array([i, i / 2, -i]).buffer), 0),
    session: new UUID(),
    tags: ['memory', { nested: [i, null, 'x'] }],
    pattern: new BSON.BSONRegExp('^ep-\\d+$', 'i'),
    text: `episode ${i} ✓ naïve`,
  };
}

async function allDocs(client: MongoClient, db: string, coll: string): Promise<string[]> {
  const out: string[] = [];
  for await (const d of client.db(db).collection(coll).find({}, { promoteValues: false, promoteLongs: false, promoteBuffers: false, bsonRegExp: true })) out.push(ej(d));
  return out.sort();
}

describe('mongodb driver (test double)', () => {
  let source: MongoDouble;
  let target: MongoDouble;
  let h: Harness;
  let originals: Document[];

  beforeEach(async () => {
    source = new MongoDouble();
    target = new MongoDouble();
    const c = source.client();
    const db = c.db('memory');
    await db.createCollection('facts', { validator: { $jsonSchema: { bsonType: 'object', required: ['subject'] } } });
    originals = Array.from({ length: 450 }, (_, i) => episode(i));
    await db.collection('episodes').insertMany(originals.map((d) => ({ ...d })));
    await db.collection('episodes').createIndexes([
      { key: { episodeId: 1 }, name: 'episodeId_1', unique: true },
      { key: { agent: 1, at: -1 }, name: 'agent_at' },
      { key: { at: 1 }, name: 'ttl_at', expireAfterSeconds: 86_400 * 30, partialFilterExpression: { at: { $gt: new Date(1_700_000_000_000) } } },
    ]);
    await db.collection('facts').insertMany(Array.from({ length: 30 }, (_, i) => ({ subject: `s${i}`, object: i })));
    await db.createCollection('empty');
    await db.createCollection('recent', { viewOn: 'episodes', pipeline: [{ $sort: { at: -1 } }, { $limit: 10 }] });
    await c.db('graph').collection('edges').insertMany([{ from: 'a', to: 'b' }, { from: 'b', to: 'c' }]);
    const driver = createMongodbDriver({ connect: async (uri) => (uri.includes('restore') ? target : source).client() });
    h = await makeHarness(driver, 'episodic', { uri: 'mongodb://source.example/', databases: ['memory', 'graph'], batchSize: 100 });
  });
  afterEach(async () => {
    await h.close();
  });

  it('restores every document with exact BSON types, indexes, options and views into a fresh database', async () => {
    const out = await h.backup('full');
    const m = await h.manifest(out.backupId);
    expect(m.entries.map((e) => e.path).sort()).toEqual(['_metadata.json', 'graph/edges.ndjson', 'memory/empty.ndjson', 'memory/episodes.ndjson', 'memory/facts.ndjson']);
    expect(m.driver.consistency).toBe('snapshot');
    expect((m.driver.collections as Record<string, { documents: number }>)['memory.episodes'].documents).toBe(450);
    expect(source.stats.getMores).toBeGreaterThanOrEqual(4); // 450 docs in batches of 100: streamed, not one read

    const r = await h.restore(out.backupId, { uri: 'mongodb://restore.example/', databaseMap: { memory: 'memory_restored' } });
    expect(r.validation.ok).toBe(true);
    const rc = target.client();
    const sc = source.client();
    expect(await allDocs(rc, 'memory_restored', 'episodes')).toEqual(originals.map(ej).sort());
    expect(await allDocs(rc, 'memory_restored', 'facts')).toEqual(await allDocs(sc, 'memory', 'facts'));
    expect(await allDocs(rc, 'graph', 'edges')).toEqual(await allDocs(sc, 'graph', 'edges'));
    // Types survive: a Double 1.0 stays a double, a small Long stays a Long.
    const line = (await allDocs(rc, 'memory_restored', 'episodes'))[0];
    expect(line).toContain('"weight":{"$numberDouble":"1.0"}');
    expect(line).toMatch(/"small":\{"\$numberLong":"\d+"\}/);
    expect(line).toContain('"$numberDecimal"');
    expect(await rc.db('memory_restored').collection('episodes').indexes()).toEqual(await sc.db('memory').collection('episodes').indexes());
    const colls = await rc.db('memory_restored').listCollections({}, { nameOnly: false }).toArray();
    const byName = Object.fromEntries(colls.map((c) => [c.name, c]));
    expect(Object.keys(byName).sort()).toEqual(['empty', 'episodes', 'facts', 'recent']);
    expect(byName.recent.type).toBe('view');
    expect(ej(byName.recent.options)).toBe(ej({ viewOn: 'episodes', pipeline: [{ $sort: { at: -1 } }, { $limit: 10 }] }));
    expect(ej(byName.facts.options)).toBe(ej({ validator: { $jsonSchema: { bsonType: 'object', required: ['subject'] } } }));
    // Restored unique index is enforced.
    await expect(rc.db('memory_restored').collection('episodes').insertMany([{ episodeId: 'ep-1' }])).rejects.toThrow(/E11000/);
  });

  it('reads all collections at one snapshot while writers are active', async () => {
    const writer = source.client();
    let writes = 0;
    source.onGetMore = async () => {
      writes++;
      await writer.db('memory').collection('facts').insertMany([{ subject: `late-${writes}` }]);
      await writer.db('memory').collection('episodes').insertMany([{ episodeId: `late-${writes}` }]);
      await writer.db('memory').collection('episodes').deleteOne({ _id: originals[writes]._id });
    };
    const out = await h.backup('full');
    expect(writes).toBeGreaterThan(0);
    const m = await h.manifest(out.backupId);
    const figs = m.driver.collections as Record<string, { documents: number }>;
    expect(figs['memory.episodes'].documents).toBe(450);
    expect(figs['memory.facts'].documents).toBe(30);
    source.onGetMore = undefined;
    const r = await h.restore(out.backupId, { uri: 'mongodb://restore.example/' });
    expect(r.validation.ok).toBe(true);
    expect(await allDocs(target.client(), 'memory', 'episodes')).toEqual(originals.map(ej).sort());

    // The same writes without a snapshot leak into the dump (what the snapshot session prevents).
    source.onGetMore = async () => {
      await writer.db('memory').collection('episodes').insertMany([{ episodeId: `later-${++writes}` }]);
    };
    const plain = await makeHarness(createMongodbDriver({ connect: async () => source.client() }), 'episodic', {
      uri: 'mongodb://source.example/', databases: ['memory'], batchSize: 100, snapshot: 'off',
    });
    try {
      const before = await source.client().db('memory').collection('episodes').countDocuments({});
      const o2 = await plain.backup('full');
      const figs2 = (await plain.manifest(o2.backupId)).driver.collections as Record<string, { documents: number }>;
      expect(figs2['memory.episodes'].documents).toBeGreaterThan(before);
      expect((await plain.manifest(o2.backupId)).driver.consistency).toBe('per-collection');
    } finally {
      source.onGetMore = undefined;
      await plain.close();
    }
  });

  it('falls back to per-collection reads without snapshot support (auto) and fails when snapshot is required', async () => {
    source.supportsSnapshot = false;
    const out = await h.backup('full');
    const m = await h.manifest(out.backupId);
    expect(m.driver.consistency).toBe('per-collection');
    expect(h.logs.some((l) => l.level === 'warn' && /snapshot reads not supported/.test(l.msg))).toBe(true);
    const r = await h.restore(out.backupId, { uri: 'mongodb://restore.example/' });
    expect(r.validation.ok).toBe(true);

    const strict = await makeHarness(createMongodbDriver({ connect: async () => source.client() }), 'episodic', {
      uri: 'mongodb://source.example/', databases: ['memory'], snapshot: 'required',
    });
    try {
      await expect(strict.backup('full')).rejects.toThrow(PermanentError);
      await expect(strict.backup('full')).rejects.toThrow(/components\.episodic\.snapshot: required/);
    } finally {
      await strict.close();
    }
  });

  it('refuses a non-empty target collection unless dropExisting, and validation catches a lost document', async () => {
    const out = await h.backup('full');
    await target.client().db('memory').collection('facts').insertMany([{ subject: 'already here' }]);
    await expect(h.restore(out.backupId, { uri: 'mongodb://restore.example/' })).rejects.toThrow(/memory\.facts already holds documents/);
    const r = await h.restore(out.backupId, { uri: 'mongodb://restore.example/', dropExisting: true });
    expect(r.validation.ok).toBe(true);
    expect(await allDocs(target.client(), 'memory', 'facts')).toEqual(await allDocs(source.client(), 'memory', 'facts'));

    await target.client().db('memory').collection('episodes').deleteOne({ _id: originals[7]._id });
    const m = await h.manifest(out.backupId);
    const v = await createMongodbDriver({ connect: async () => target.client() }).validate({
      component: 'episodic', settings: h.cfg.components.episodic as never, manifest: m, vault: h.vault, target: { dir: h.dir, options: { uri: 'mongodb://restore.example/' } },
      location: '', resolve: (p) => p, log: { info() {}, warn() {}, error() {} },
    });
    expect(v.ok).toBe(false);
    expect(v.checks.find((c) => c.name === 'memory.episodes: documents')).toMatchObject({ ok: false, expected: 450, actual: 449 });
  });

  it('without a target uri restores the dump as canonical EJSON files and validates them', async () => {
    const out = await h.backup('full');
    const r = await h.restore(out.backupId);
    expect(r.validation.ok).toBe(true);
    const text = await fs.readFile(path.join(r.location, 'memory/episodes.ndjson'), 'utf8');
    const lines = text.trim().split('\n');
    expect(lines.sort()).toEqual(originals.map(ej).sort());
    // Tampering is detected.
    await fs.writeFile(path.join(r.location, 'memory/facts.ndjson'), lines.slice(0, 3).join('\n'));
    const m = await h.manifest(out.backupId);
    const v = await createMongodbDriver().validate({
      component: 'episodic', settings: h.cfg.components.episodic as never, manifest: m, vault: h.vault, target: { dir: r.location },
      location: r.location, resolve: (p) => p, log: { info() {}, warn() {}, error() {} },
    });
    expect(v.ok).toBe(false);
  });

  it('an unchanged database adds almost nothing to the vault on the next backup', async () => {
    const first = await h.backup('full');
    const second = await h.backup('incremental');
    expect(second.stats.bytesTotal).toBe(first.stats.bytesTotal);
    expect(second.stats.newBytes).toBeLessThan(4096); // only the metadata entry (new cluster time)
  });

  it('names the missing connection string', async () => {
    const bad = await makeHarness(createMongodbDriver({ connect: async () => source.client() }), 'episodic', { databases: ['memory'] });
    try {
      await expect(bad.backup('full')).rejects.toThrow(/components\.episodic: set secretArn .*, uri or uriEnv/);
    } finally {
      await bad.close();
    }
  });
});
