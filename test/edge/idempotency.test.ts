import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PushJob } from '@pga/contracts';
import { createLogger } from '@pga/logger';
import { redisKeys, type RedisKeys } from '@pga/redis-keys';
import { InflightBudget } from '../../services/ingest-edge/src/http/read-body';
import { createEdgeMetrics } from '../../services/ingest-edge/src/ops/edge-metrics';
import { EncodedQueue } from '../../services/ingest-edge/src/push/encoded-queue';
import { freeMarkers, idempotencyScripts, markerOf } from '../../services/ingest-edge/src/push/idempotency-scripts';
import { BLOB_PIECE_BYTES, PushPacker, type PushOutcome } from '../../services/ingest-edge/src/push/push-packer';
import { testEnv, uniquePrefix } from '../helpers';

/**
 * The push packer's idempotency markers against a real Redis: a marker names its batch, and the
 * batch's state (pending → done) decides what a replay gets.
 */
/** A push packer on these connections, as an edge process builds it (budget unbounded). */
function packerOn(
  keys: RedisKeys,
  redis: Redis,
  queue: EncodedQueue,
  name: string,
  bulk?: { redis: Redis; queue: EncodedQueue },
) {
  return new PushPacker(
    {
      redis,
      queue,
      keys,
      metrics: createEdgeMetrics({
        ready: () => true,
        inflightBytes: () => 0,
        cache: () => ({ hits: 0, verified: 0, invalid: 0, size: 0 }),
      }),
      logger: createLogger({ name, level: 'warn', pretty: false }),
      budget: new InflightBudget(Number.MAX_SAFE_INTEGER),
      ...(bulk ? { bulk } : {}),
    },
    { windowMs: 5, maxPushes: 100, maxBytes: 1024 * 1024, enqueueTimeoutMs: 5000, idempotencyTtlSeconds: 3600 },
  );
}

describe('idempotency markers (push packer, real Redis)', () => {
  let redis: Redis;
  let queue: EncodedQueue;
  let keys: RedisKeys;
  let packer: PushPacker;
  const collectorId = randomUUID();

  beforeAll(async () => {
    keys = redisKeys(uniquePrefix('idem'));
    redis = new Redis(testEnv.redisUrl, { maxRetriesPerRequest: 1 });
    queue = new EncodedQueue(keys.pushQueue, { connection: redis, prefix: keys.bullPrefix });
    await queue.waitUntilReady();
    packer = packerOn(keys, redis, queue, 'idempotency-test');
  });
  afterAll(async () => {
    await queue?.obliterate({ force: true });
    await queue?.close();
    redis?.disconnect();
  });

  const submit = (key: string, records = 4, pushId: string = randomUUID()): Promise<PushOutcome> =>
    packer.submit(
      {
        push_id: pushId,
        collector_id: collectorId,
        received_at: new Date().toISOString(),
        checksum: 'a'.repeat(64),
        body: Buffer.from(`{"k":"${key}"}`),
      },
      key,
      records,
    );

  /** Push ids in the queue's jobs, as the writer would read them. */
  async function queuedPushIds(): Promise<string[]> {
    const jobs = await queue.getJobs(['waiting']);
    return jobs.flatMap((j) => (j.data as PushJob).pushes.map((p) => p.push_id));
  }

  it('stores a fresh push once; a replay after its batch is done answers duplicate with the original records', async () => {
    const id = randomUUID();
    const first = await submit('k:fresh', 4, id);
    expect(first).toEqual({ pushId: id, records: 4, duplicate: false });
    const marker = await redis.get(keys.idempotency(collectorId, 'k:fresh'));
    expect(marker).toMatch(/^b:.+:4$/);
    const batchId = marker!.slice(2, marker!.lastIndexOf(':'));
    expect(await redis.get(keys.idempotencyBatch(batchId))).toBe('d');
    // The replay carries another body (and record count); it derives the same push id.
    const replay = await submit('k:fresh', 9, id);
    expect(replay).toEqual({ pushId: id, records: 4, duplicate: true });
    expect((await queuedPushIds()).filter((p) => p === id)).toHaveLength(1);
  });

  it('a replay while its batch is pending gets 503; once the pending state expired (edge gone) it is stored', async () => {
    const key = 'k:pending';
    const batchId = `gone-${randomUUID()}`;
    await redis.set(keys.idempotency(collectorId, key), `b:${batchId}:4`, 'EX', 3600);
    await redis.set(keys.idempotencyBatch(batchId), 'p', 'EX', 30);
    await expect(submit(key)).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    // Its edge died before Redis confirmed the batch: the pending state expires, the marker is taken over.
    await redis.del(keys.idempotencyBatch(batchId));
    const id = randomUUID();
    expect(await submit(key, 4, id)).toEqual({ pushId: id, records: 4, duplicate: false });
    expect(await queuedPushIds()).toContain(id);
    expect(await redis.get(keys.idempotency(collectorId, key))).not.toContain(batchId);
  });

  it('answers the markers an older edge wrote: d:<push id>:<records> is a duplicate, p:… is in flight', async () => {
    const oldId = randomUUID();
    await redis.set(keys.idempotency(collectorId, 'k:old-done'), `d:${oldId}:3`, 'EX', 3600);
    await redis.set(keys.idempotency(collectorId, 'k:old-pending'), `p:${randomUUID()}:3`, 'EX', 30);
    expect(await submit('k:old-done')).toEqual({ pushId: oldId, records: 3, duplicate: true });
    await expect(submit('k:old-pending')).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });

  it('a batch holding a replay stores only its fresh pushes, in a job of their own, and settles their markers', async () => {
    const done = await submit('k:mixed-done');
    const before = (await queue.getJobCounts('waiting')).waiting ?? 0;
    const ids = [randomUUID(), randomUUID()];
    const [replay, a, b] = await Promise.all([
      submit('k:mixed-done', 4, done.pushId),
      submit('k:mixed-a', 4, ids[0]),
      submit('k:mixed-b', 4, ids[1]),
    ]);
    expect(replay).toEqual({ pushId: done.pushId, records: 4, duplicate: true });
    expect([a.duplicate, b.duplicate]).toEqual([false, false]);
    expect((await queue.getJobCounts('waiting')).waiting).toBe(before + 1);
    const queued = await queuedPushIds();
    expect(queued.filter((p) => p === done.pushId)).toHaveLength(1);
    expect(queued).toEqual(expect.arrayContaining(ids));
    expect(await submit('k:mixed-a', 4, ids[0])).toMatchObject({ duplicate: true });
  });

  it('a replay that reaches Redis before its batch is settled (through another edge process) answers duplicate', async () => {
    // A second edge process whose settle has not reached Redis yet when its clients' replays come
    // back through this one: its 200 went out once the job was added.
    const slow = new Redis(testEnv.redisUrl, { maxRetriesPerRequest: 1 });
    const settles: unknown[][] = [];
    slow.set = ((...args: unknown[]) => {
      settles.push(args);
      return new Promise(() => undefined);
    }) as typeof slow.set;
    const slowQueue = new EncodedQueue(keys.pushQueue, { connection: slow, prefix: keys.bullPrefix });
    const other = packerOn(keys, slow, slowQueue, 'idempotency-test-b');
    const submitOther = (key: string, pushId: string, records = 4) =>
      other.submit(
        {
          push_id: pushId,
          collector_id: collectorId,
          received_at: new Date().toISOString(),
          checksum: 'b'.repeat(64),
          body: Buffer.from('{}'),
        },
        key,
        records,
      );
    try {
      const id = randomUUID();
      expect(await submitOther('k:unsettled', id, 6)).toEqual({ pushId: id, records: 6, duplicate: false });
      expect(settles).toHaveLength(1);
      expect(await submit('k:unsettled', 4, id)).toEqual({ pushId: id, records: 6, duplicate: true });

      // The same for the job of a batch's fresh pushes, added after a veto (under its own key).
      const done = await submit('k:unsettled-done');
      const fresh = randomUUID();
      const [replay, stored] = await Promise.all([
        submitOther('k:unsettled-done', done.pushId),
        submitOther('k:unsettled-fresh', fresh),
      ]);
      expect([replay.duplicate, stored.duplicate]).toEqual([true, false]);
      expect(settles).toHaveLength(2);
      expect(await submit('k:unsettled-fresh', 4, fresh)).toEqual({ pushId: fresh, records: 4, duplicate: true });
      const queued = await queuedPushIds();
      expect([id, fresh, done.pushId].map((p) => queued.filter((q) => q === p).length)).toEqual([1, 1, 1]);
    } finally {
      await slowQueue.close();
      slow.disconnect();
    }
  });

  it('a large push: its body goes to Redis in pieces on the bulk connection, then its small job; other batches go on the main one', async () => {
    const main = new Redis(testEnv.redisUrl, { maxRetriesPerRequest: 1 });
    const bulk = new Redis(testEnv.redisUrl, { maxRetriesPerRequest: 1 });
    const claims = { main: 0, bulk: 0 };
    for (const [name, client] of [
      ['main', main],
      ['bulk', bulk],
    ] as const) {
      const evalOriginal = client.eval.bind(client);
      client.eval = ((...args: Parameters<typeof client.eval>) => {
        if (String(args[0]).includes('vetoed')) claims[name]++; // the claim script
        return evalOriginal(...args);
      }) as typeof client.eval;
    }
    const mainQueue = new EncodedQueue(keys.pushQueue, { connection: main, prefix: keys.bullPrefix });
    const bulkQueue = new EncodedQueue(keys.pushQueue, { connection: bulk, prefix: keys.bullPrefix });
    const lanes = packerOn(keys, main, mainQueue, 'idempotency-test-lanes', { redis: bulk, queue: bulkQueue });
    const blobKeys = () => redis.keys(keys.pushBlob('*'));
    const item = (pushId: string) => ({
      push_id: pushId,
      collector_id: collectorId,
      received_at: new Date().toISOString(),
      checksum: 'c'.repeat(64),
    });
    // 2.5 pieces: the last one short.
    const largeBody = Buffer.alloc(BLOB_PIECE_BYTES * 2.5, 'abcdefgh');
    try {
      const large = randomUUID();
      const small = randomUUID();
      const answers = await Promise.all([
        lanes.submit({ ...item(large), body: Buffer.from(largeBody), large: true }, 'k:lane-large', 1),
        lanes.submit({ ...item(small), body: Buffer.from('{"small":true}') }, 'k:lane-small', 1),
      ]);
      expect(answers.map((a) => a.duplicate)).toEqual([false, false]);
      expect(claims).toEqual({ main: 1, bulk: 1 });
      const jobs = await queue.getJobs(['waiting']);
      const holding = (id: string) => jobs.filter((j) => (j.data as PushJob).pushes.some((p) => p.push_id === id));
      const [largeJob] = holding(large);
      expect(holding(large)).toHaveLength(1);
      expect(holding(small)).toHaveLength(1);
      // The large push's job is v3, small, and names its blob after itself; the body is there in pieces.
      const blobKey = keys.pushBlob(largeJob!.id!);
      expect(largeJob!.data).toEqual({
        v: 3,
        replay_window_s: 3600,
        pushes: [
          { ...item(large), received_at: expect.any(String), body_ref: { key: blobKey, bytes: largeBody.length, pieces: 3 } },
        ],
      });
      expect(JSON.stringify(largeJob!.data).length).toBeLessThan(1024);
      const pieces = await redis.hmgetBuffer(blobKey, '0', '1', '2');
      expect(pieces.map((p) => p?.length)).toEqual([BLOB_PIECE_BYTES, BLOB_PIECE_BYTES, BLOB_PIECE_BYTES / 2]);
      expect(Buffer.concat(pieces as Buffer[]).equals(largeBody)).toBe(true);
      expect(await redis.zscore(keys.pushBlobs, blobKey)).not.toBeNull();
      expect((await queuedPushIds()).filter((id) => id === large)).toHaveLength(1);

      // A replay of the large push, claimed on the bulk connection, answers duplicate, and the body
      // it wrote is dropped (no job refers to it).
      expect(await blobKeys()).toEqual([blobKey]);
      expect(await lanes.submit({ ...item(large), body: Buffer.from(largeBody), large: true }, 'k:lane-large', 1)).toMatchObject({
        duplicate: true,
      });
      expect(claims).toEqual({ main: 1, bulk: 2 });
      await expect.poll(() => redis.zrange(keys.pushBlobs, 0, -1)).toEqual([blobKey]);
      expect(await blobKeys()).toEqual([blobKey]);
    } finally {
      await Promise.all([mainQueue.close(), bulkQueue.close()]);
      main.disconnect();
      bulk.disconnect();
    }
  });

  it('a large push whose body Redis refuses is answered 503, and what was written of it is dropped', async () => {
    const bulk = new Redis(testEnv.redisUrl, { maxRetriesPerRequest: 1 });
    const bulkQueue = new EncodedQueue(keys.pushQueue, { connection: bulk, prefix: keys.bullPrefix });
    const lanes = packerOn(keys, redis, queue, 'idempotency-test-refused-blob', { redis: bulk, queue: bulkQueue });
    // Redis refuses the third piece (as it refuses writes when out of memory).
    const hset = bulk.hset.bind(bulk);
    let pieces = 0;
    bulk.hset = ((...args: Parameters<typeof bulk.hset>) =>
      ++pieces === 3
        ? Promise.reject(new Error('OOM command not allowed when used memory > maxmemory'))
        : hset(...args)) as typeof bulk.hset;
    const pushId = randomUUID();
    const before = await redis.zrange(keys.pushBlobs, 0, -1);
    const blobsBefore = await redis.keys(keys.pushBlob('*'));
    try {
      const push = {
        push_id: pushId,
        collector_id: collectorId,
        received_at: new Date().toISOString(),
        checksum: 'd'.repeat(64),
        body: Buffer.alloc(BLOB_PIECE_BYTES * 4, 'x'),
        large: true,
      };
      await expect(lanes.submit(push, 'k:refused-blob', 1)).rejects.toMatchObject({ code: 'UNAVAILABLE' });
      // The 503 comes as soon as one piece fails, before Redis ran the others (and the drop sent
      // after them): once a PING sent after them answers, all of them have run.
      await bulk.ping();
      expect(await redis.zrange(keys.pushBlobs, 0, -1)).toEqual(before);
      expect(await redis.keys(keys.pushBlob('*'))).toEqual(blobsBefore);
      expect(await queuedPushIds()).not.toContain(pushId);

      // Its pieces acknowledged but not in this Redis (a failover or crash lost them, and ioredis
      // resent the claim and the add to the new server): refused, its job not stored.
      bulk.hset = (() => Promise.resolve(1)) as unknown as typeof bulk.hset;
      await expect(
        lanes.submit({ ...push, body: Buffer.alloc(BLOB_PIECE_BYTES * 4, 'x') }, 'k:refused-blob', 1),
      ).rejects.toMatchObject({
        code: 'UNAVAILABLE',
        message: 'the push did not reach Redis whole; retry',
      });
      expect(await queuedPushIds()).not.toContain(pushId);
      await expect.poll(() => redis.zrange(keys.pushBlobs, 0, -1)).toEqual(before);

      // Nothing claimed: a retry is stored.
      bulk.hset = hset;
      expect(await lanes.submit({ ...push, body: Buffer.alloc(BLOB_PIECE_BYTES * 4, 'x') }, 'k:refused-blob', 1)).toMatchObject({
        duplicate: false,
      });
      expect(await queuedPushIds()).toContain(pushId);
    } finally {
      await bulkQueue.close();
      bulk.disconnect();
    }
  });

  it('a claim run twice (ioredis resends it after a dropped connection) still owns its batch: no veto, no replay', async () => {
    const scripts = idempotencyScripts(redis, 'veto', keys.idempotencyBatchPrefix, `${queue.keys.de}:`);
    const batch = { id: `resent-${randomUUID()}`, stateKey: '', vetoKey: `${queue.keys.de}:resent-${randomUUID()}` };
    batch.stateKey = keys.idempotencyBatch(batch.id);
    const markers = [keys.idempotency(collectorId, 'k:resent-a'), keys.idempotency(collectorId, 'k:resent-b')];
    expect(await scripts.claim(markers, [2, 3], batch, 3600, 30)).toEqual(['', '']);
    expect(await scripts.claim(markers, [2, 3], batch, 3600, 30)).toEqual(['', '']);
    expect(await redis.exists(batch.vetoKey)).toBe(0);
    // Another batch meeting these markers still sees them in flight.
    const other = { id: `other-${randomUUID()}`, stateKey: '', vetoKey: `${queue.keys.de}:other-${randomUUID()}` };
    other.stateKey = keys.idempotencyBatch(other.id);
    expect(await scripts.claim(markers, [2, 3], other, 3600, 30)).toEqual(['p:', 'p:']);
  });

  it("freeing a refused batch's markers deletes only those that still name it (a late free never deletes a later batch's)", async () => {
    const scripts = idempotencyScripts(redis, 'veto', keys.idempotencyBatchPrefix, `${queue.keys.de}:`);
    const mine = { id: `refused-${randomUUID()}`, stateKey: '', vetoKey: `${queue.keys.de}:refused-${randomUUID()}` };
    mine.stateKey = keys.idempotencyBatch(mine.id);
    const markers = [keys.idempotency(collectorId, 'k:free-a'), keys.idempotency(collectorId, 'k:free-b')];
    expect(await scripts.claim(markers, [2, 3], mine, 3600, 30)).toEqual(['', '']);
    // Its pending state expired, and a later batch took the second marker over.
    await redis.del(mine.stateKey);
    const later = { id: `later-${randomUUID()}`, stateKey: '', vetoKey: `${queue.keys.de}:later-${randomUUID()}` };
    later.stateKey = keys.idempotencyBatch(later.id);
    expect(await scripts.claim([markers[1]!], [3], later, 3600, 30)).toEqual(['']);
    await freeMarkers(redis, markers, [markerOf(mine.id, 2), markerOf(mine.id, 3)]);
    expect(await redis.get(markers[0]!)).toBeNull();
    expect(await redis.get(markers[1]!)).toBe(markerOf(later.id, 3));
  });
});
