import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redisKeys } from '@pga/redis-keys';
import { freeMarkers, idempotencyScripts, markerOf } from '../../services/ingest-edge/src/push/idempotency-scripts';
import { testEnv, uniquePrefix } from '../helpers';
import { call, EdgeWorld, type TestCollector } from './harness';

/**
 * The per-collector push quota (PUSH_QUOTA_PER_HOUR) against real edges, Redis and PostgreSQL: one
 * token cannot keep more than its quota of idempotency markers per hour in Redis, whatever the
 * number of edge processes it spreads its pushes over (authzrev F3).
 */
describe('push quota (PUSH_QUOTA_PER_HOUR)', () => {
  let world: EdgeWorld;
  let a: string;
  let b: string;
  let c: TestCollector;
  const push = (url: string, key: string, who = c) =>
    call(`${url}/api/v1/metrics/push`, {
      token: who.token,
      body: `{"metrics":[{"type":"t"}]}`,
      headers: { 'idempotency-key': key },
    });
  const markers = async (collectorId: string) => (await world.redis.keys(`${world.prefix}:idem:${collectorId}:*`)).length;

  beforeAll(async () => {
    world = await EdgeWorld.create();
    // Two edges on one Redis: the quota is the collector's, not an edge process's.
    a = (await world.startEdge({ PUSH_QUOTA_PER_HOUR: '5' })).url;
    b = (await world.startEdge({ PUSH_QUOTA_PER_HOUR: '5' })).url;
    c = await world.collector();
  });
  afterAll(async () => world?.[Symbol.asyncDispose]());

  it('past its quota a collector gets 429 + Retry-After with the quota named, on every edge process; its markers stay at the quota; replays did not count', async () => {
    for (const [url, key] of [
      [a, 'q1'],
      [b, 'q2'],
      [a, 'q3'],
      [b, 'q4'],
    ] as const)
      expect((await push(url, key)).status).toBe(200);
    // A replay answers duplicate and keeps nothing more, so it does not count.
    expect((await push(a, 'q1')).json).toMatchObject({ duplicate: true });
    expect((await push(b, 'q5')).status).toBe(200);
    expect(await markers(c.id)).toBe(5);

    for (const url of [a, b]) {
      const refused = await push(url, `over-${url}`);
      expect(refused.status).toBe(429);
      expect(refused.json.error).toEqual({
        code: 'RATE_LIMITED',
        message: expect.stringMatching(
          /^this collector used its push quota: 5 new pushes per 1 h \(PUSH_QUOTA_PER_HOUR\), across all edge processes; retry in \d+ s$/,
        ),
      });
      const retryAfter = Number(refused.headers.get('retry-after'));
      expect(retryAfter).toBeGreaterThan(3500);
      expect(retryAfter).toBeLessThanOrEqual(3600);
    }
    // Refused before the body is read, too: the process remembers until the window ends.
    expect((await push(a, 'over-again')).status).toBe(429);
    expect(await markers(c.id)).toBe(5);
    const queued = (await world.queuedPushes()).filter((p) => p.collector_id === c.id);
    expect(queued).toHaveLength(5);
    const counter = world.keys.pushQuota(c.id);
    expect(await world.redis.get(counter)).toBe('5');
    expect(await world.redis.ttl(counter)).toBeGreaterThan(3500);

    // Counted by a reason of its own.
    const metrics = await (await fetch(`${a}/metrics`)).text();
    expect(metrics).toMatch(/edge_rejections_total\{reason="PUSH_QUOTA"\} [1-9]/);
  });

  it("another collector's pushes are not refused", async () => {
    const other = await world.collector();
    for (let i = 0; i < 3; i++) expect((await push(i % 2 ? a : b, `other-${i}`, other)).status).toBe(200);
  });

  it('the window ends: the counter expires and pushes are taken again', async () => {
    const late = await world.collector();
    for (let i = 0; i < 5; i++) expect((await push(a, `late-${i}`, late)).status).toBe(200);
    expect((await push(b, 'late-over', late)).status).toBe(429);
    // The hour, shortened: the counter key expires (this edge's process still knows the old end, the other asks Redis).
    await world.redis.pexpire(world.keys.pushQuota(late.id), 1);
    await new Promise((r) => setTimeout(r, 20));
    // b refused it locally until the window it was told; a never refused this collector.
    expect((await push(a, 'late-after', late)).status).toBe(200);
  });

  it('a marker is an embedded string of at most 44 bytes (b:<batch id>:<records>), about 32 B of Redis less than with a UUID batch id', async () => {
    const small = await world.collector();
    expect((await push(a, 'size', small)).status).toBe(200);
    const [key] = await world.redis.keys(`${world.prefix}:idem:${small.id}:*`);
    const value = (await world.redis.get(key!))!;
    expect(value).toMatch(/^b:[\w-]{12}:\d+:1$/);
    expect(await world.redis.object('ENCODING', key!)).toBe('embstr');
  });
});

describe('push quota 0: no quota', () => {
  it('PUSH_QUOTA_PER_HOUR=0 never refuses, and sets no counter', async () => {
    await using world = await EdgeWorld.create();
    const url = (await world.startEdge({ PUSH_QUOTA_PER_HOUR: '0' })).url;
    const c = await world.collector();
    for (let i = 0; i < 8; i++)
      expect((await call(`${url}/api/v1/metrics/push`, { token: c.token, body: `{"i":${i}}` })).status).toBe(200);
    expect(await world.redis.exists(world.keys.pushQuota(c.id))).toBe(0);
  });
});

/**
 * The quota counts markers a collector keeps (review31 F3): a marker set once counts once, whether
 * its claim was resent or it was taken over after its edge died; freeing a refused batch's marker
 * (settleRefused after a 503) gives its count back.
 */
describe('push quota: the claim and free scripts (real Redis)', () => {
  const prefix = uniquePrefix('quota');
  const keys = redisKeys(prefix);
  let redis: Redis;
  const quota = {
    limit: 3,
    windowSeconds: 3600,
    markerPrefixLength: keys.idempotency('', '').length - 1,
    counterPrefix: keys.pushQuota(''),
  };
  const scripts = () => idempotencyScripts(redis, 'veto', keys.idempotencyBatchPrefix, `${keys.bullPrefix}:de:`);
  const batch = () => {
    const id = `b-${randomUUID()}`;
    return { id, stateKey: keys.idempotencyBatch(id), vetoKey: `${keys.bullPrefix}:de:${id}` };
  };
  const counter = async (collectorId: string) => Number((await redis.get(keys.pushQuota(collectorId))) ?? 0);

  beforeAll(() => {
    redis = new Redis(testEnv.redisUrl, { maxRetriesPerRequest: 1 });
  });
  afterAll(async () => {
    if (!redis) return;
    const left = await redis.keys(`${prefix}:*`);
    if (left.length > 0) await redis.del(...left);
    redis.disconnect();
  });

  it('a push freed after a refused add and retried many times counts once, and is not refused by a quota of 3', async () => {
    const collectorId = randomUUID();
    const marker = keys.idempotency(collectorId, 'k:retried');
    for (let attempt = 1; attempt <= 6; attempt++) {
      const b = batch();
      expect(await scripts().claim([marker], [1], b, 3600, 30, quota)).toEqual(['']);
      expect(await counter(collectorId)).toBe(1);
      if (attempt < 6) {
        // The add was refused (a 503): settleRefused frees the marker, and its count.
        await freeMarkers(redis, [marker], [markerOf(b.id, 1)], quota);
        expect(await redis.exists(marker)).toBe(0);
        expect(await counter(collectorId)).toBe(0);
      }
    }
    // The quota still holds two more new pushes, then refuses.
    for (const k of ['k:a', 'k:b'])
      expect(await scripts().claim([keys.idempotency(collectorId, k)], [1], batch(), 3600, 30, quota)).toEqual(['']);
    expect(await scripts().claim([keys.idempotency(collectorId, 'k:c')], [1], batch(), 3600, 30, quota)).toEqual([
      expect.stringMatching(/^q:\d+$/),
    ]);
    expect(await counter(collectorId)).toBe(3);
  });

  it('a claim resent by ioredis, or a marker taken over after its edge died, does not count again', async () => {
    const collectorId = randomUUID();
    const markers = [keys.idempotency(collectorId, 'k:x'), keys.idempotency(collectorId, 'k:y')];
    const first = batch();
    expect(await scripts().claim(markers, [1, 2], first, 3600, 30, quota)).toEqual(['', '']);
    expect(await scripts().claim(markers, [1, 2], first, 3600, 30, quota)).toEqual(['', '']);
    expect(await counter(collectorId)).toBe(2);
    // Its edge died: its pending state expires, and the retries' batch takes the markers over.
    await redis.del(first.stateKey);
    const second = batch();
    expect(await scripts().claim(markers, [1, 2], second, 3600, 30, quota)).toEqual(['', '']);
    expect(await counter(collectorId)).toBe(2);
  });

  it('freeing never takes the counter below 0, decrements only for the markers it deletes, and leaves it alone without a quota', async () => {
    const collectorId = randomUUID();
    const [a, b] = [keys.idempotency(collectorId, 'k:a'), keys.idempotency(collectorId, 'k:b')];
    const mine = batch();
    expect(await scripts().claim([a, b], [1, 1], mine, 3600, 30, quota)).toEqual(['', '']);
    // A later batch took b over (mine's state expired): the free deletes only a, so gives back one.
    await redis.del(mine.stateKey);
    const later = batch();
    expect(await scripts().claim([b], [1], later, 3600, 30, quota)).toEqual(['']);
    await freeMarkers(redis, [a, b], [markerOf(mine.id, 1), markerOf(mine.id, 1)], quota);
    expect(await counter(collectorId)).toBe(1);
    // Its window ended (the counter expired) before the free ran: nothing goes negative.
    await redis.del(keys.pushQuota(collectorId));
    await freeMarkers(redis, [b], [markerOf(later.id, 1)], quota);
    expect(await redis.exists(b)).toBe(0);
    expect(await redis.exists(keys.pushQuota(collectorId))).toBe(0);
    // Without a quota the free touches no counter.
    const c = keys.idempotency(collectorId, 'k:c');
    const free = batch();
    expect(await scripts().claim([c], [1], free, 3600, 30, quota)).toEqual(['']);
    await freeMarkers(redis, [c], [markerOf(free.id, 1)]);
    expect(await redis.exists(c)).toBe(0);
    expect(await counter(collectorId)).toBe(1);
  });
});
