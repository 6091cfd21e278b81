import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import type { CollectorChange } from '@pga/contracts';
import type { DatabaseDenyState } from '@pga/db';
import { createLogger } from '@pga/logger';
import { redisKeys } from '@pga/redis-keys';
import { DenyList, type DenyListOptions } from './deny-list';

const keys = redisKeys('deny-list-test');

/**
 * A subscriber and a reader that stand in for Redis, so a reconnect can be placed exactly inside a
 * reload (a real Redis cannot be made to disconnect at that instant). Each read answers the state
 * as it was when the read was sent, once `open()` is called.
 */
function fakeRedis() {
  const state = { jtis: [] as string[], collectors: [] as string[], deleted: [] as string[] };
  let open!: () => void;
  let gate = new Promise<void>((resolve) => (open = resolve));
  const subscriber = Object.assign(new EventEmitter(), {
    status: 'ready',
    subscribe: async () => 1,
  });
  const reader = {
    smembers: (key: string) => {
      const snapshot = [
        ...(key === keys.deniedJtis ? state.jtis : key === keys.deniedCollectors ? state.collectors : []),
        ...(key === keys.deletedCollectors ? state.deleted : []),
      ];
      return gate.then(() => snapshot);
    },
    get: () => gate.then(() => '0'),
    sismember: async (key: string, member: string) =>
      key === keys.deniedCollectors && state.collectors.includes(member) ? 1 : 0,
  };
  return {
    state,
    subscriber,
    reader,
    open: () => open(),
    /** Later reads answer at once. */
    unblock: () => {
      gate = Promise.resolve();
    },
  };
}

/** A DenyList on the stand-ins (quiet unless given a logger). */
function denyListOn(
  redis: ReturnType<typeof fakeRedis>,
  logger = createLogger({ name: 'test', level: 'silent' }),
  options: DenyListOptions = {},
) {
  return new DenyList(redis.subscriber as never, redis.reader as never, keys, logger, options);
}

/** A logger whose warnings are kept. */
function warningLogger() {
  const warnings: string[] = [];
  const logger = createLogger({ name: 'test', level: 'silent' });
  logger.warn = ((obj: unknown, msg?: string) => void warnings.push(String(msg ?? obj))) as typeof logger.warn;
  return { logger, warnings };
}

/** The change feed delivers a message, as the admin's publishCollectorChange sends it. */
function publish(redis: ReturnType<typeof fakeRedis>, change: CollectorChange) {
  redis.subscriber.emit('message', keys.changesChannel, JSON.stringify(change));
}

const tick = () => new Promise((r) => setImmediate(r));

describe('DenyList', () => {
  it("a load before the command connection is up waits for it without a warning (a fresh edge's first load often is)", async () => {
    const redis = fakeRedis();
    redis.unblock();
    redis.open();
    // ioredis without an offline queue, not connected yet: what its first reads answer.
    const smembers = redis.reader.smembers;
    let refused = 0;
    redis.reader.smembers = (key: string) =>
      refused++ < 2 ? Promise.reject(new Error("Stream isn't writeable and enableOfflineQueue options is false")) : smembers(key);
    const { logger, warnings } = warningLogger();
    const deny = denyListOn(redis, logger);
    void deny.start();
    await new Promise((r) => setTimeout(r, 700)); // one retry, 500 ms later
    expect(deny.trusted).toBe(true);
    expect(warnings).toEqual([]);
    // Anything else that fails a load is still said.
    redis.reader.smembers = () => Promise.reject(new Error('WRONGTYPE Operation against a key holding the wrong kind of value'));
    void deny.reload();
    await new Promise((r) => setTimeout(r, 50));
    expect(warnings).toEqual(['deny state reload failed; retrying']);
    deny.stop();
  });

  it('a reconnect during a reload reads again: the older read does not restore trust with a revocation missed', async () => {
    const redis = fakeRedis();
    const deny = denyListOn(redis);
    const started = deny.start();
    await new Promise((r) => setImmediate(r)); // the first read has been sent
    // The change feed drops; a revocation is published while it is away (missed by pub/sub)…
    redis.subscriber.status = 'reconnecting';
    redis.subscriber.emit('close');
    redis.state.jtis.push('revoked-jti');
    // …and it comes back while the first read is still on its way.
    redis.subscriber.status = 'ready';
    redis.subscriber.emit('ready');
    await new Promise((r) => setImmediate(r));
    redis.unblock();
    redis.open(); // the first read answers: the state from before the revocation
    await started;
    await new Promise((r) => setTimeout(r, 10));
    expect(deny.refusal('c1', 'revoked-jti')).toBe('revoked');
    expect(deny.trusted).toBe(true);
  });

  it('a read sent before the SUBSCRIBE was confirmed does not make the state trusted; the read after it does', async () => {
    const redis = fakeRedis();
    let confirm!: () => void;
    let subscribes = 0;
    redis.subscriber.subscribe = () => {
      // The first SUBSCRIBE is confirmed at once; the one after the reconnect only when we say so.
      if (++subscribes === 1) return Promise.resolve(1);
      return new Promise<number>((resolve) => (confirm = () => resolve(1)));
    };
    redis.unblock();
    const deny = denyListOn(redis);
    await deny.start();
    expect(deny.trusted).toBe(true);
    // Every time trust is set: was the revocation known then?
    const trustSet: [boolean, string | undefined][] = [];
    let trusted = deny.trusted;
    Object.defineProperty(deny, 'trusted', {
      get: () => trusted,
      set: (value: boolean) => {
        trustSet.push([value, deny.refusal('c1', 'revoked-later')]);
        trusted = value;
      },
    });
    // The feed drops and comes back; its SUBSCRIBE is not confirmed yet when a reload reads Redis
    // (the retry of a failed load, say), and a revocation published in between is missed.
    let openRead!: () => void;
    const gate = new Promise<void>((resolve) => (openRead = resolve));
    const smembers = redis.reader.smembers;
    redis.reader.smembers = (key: string) => {
      const answer = smembers(key);
      return gate.then(() => answer);
    };
    redis.subscriber.emit('close');
    redis.subscriber.emit('ready'); // resync: SUBSCRIBE sent, not confirmed
    const early = deny.reload(); // reads the state from before the revocation
    await new Promise((r) => setImmediate(r));
    redis.reader.smembers = smembers;
    redis.state.jtis.push('revoked-later');
    confirm();
    await new Promise((r) => setImmediate(r));
    openRead();
    await early;
    await new Promise((r) => setTimeout(r, 10));
    // The early read was not trusted; the reload after the confirmation read the revocation.
    expect(trustSet.filter(([value, refusal]) => value && refusal === undefined)).toEqual([]);
    expect(deny.refusal('c1', 'revoked-later')).toBe('revoked');
    expect(deny.trusted).toBe(true);
  });

  it('is trusted only once the feed is subscribed: a SUBSCRIBE that failed is sent again on the next connect', async () => {
    const redis = fakeRedis();
    redis.unblock();
    let subscribes = 0;
    redis.subscriber.subscribe = async () => {
      if (++subscribes === 1) throw new Error('Reached the max retries per request limit');
      return 1;
    };
    redis.subscriber.status = 'reconnecting';
    const deny = denyListOn(redis);
    await expect(deny.start()).rejects.toThrow(/max retries/);
    expect(deny.trusted).toBe(false);
    redis.subscriber.status = 'ready';
    redis.subscriber.emit('ready');
    await new Promise((r) => setTimeout(r, 10));
    expect(subscribes).toBe(2);
    expect(deny.trusted).toBe(true);
  });

  it('a SUBSCRIBE refused on a live connection is retried, with one warning per 30 s', async () => {
    const redis = fakeRedis();
    redis.unblock();
    let subscribes = 0;
    redis.subscriber.subscribe = async () => {
      subscribes++;
      throw new Error('NOPERM this user has no permissions to access the channel');
    };
    const warnings: string[] = [];
    const logger = createLogger({ name: 'test', level: 'silent' });
    logger.warn = ((obj: unknown, msg?: string) => void warnings.push(String(msg ?? obj))) as typeof logger.warn;
    const deny = denyListOn(redis, logger);
    await expect(deny.start()).rejects.toThrow(/NOPERM/);
    await new Promise((r) => setTimeout(r, 1300));
    deny.stop();
    expect(subscribes).toBeGreaterThanOrEqual(3);
    expect(warnings.filter((w) => /SUBSCRIBE refused/.test(w))).toHaveLength(1);
    expect(deny.trusted).toBe(false);
  });

  describe('with PostgreSQL', () => {
    const [disabled, deleted, revokedOwner, redisOnly, markedDeleted] = [
      randomUUID(),
      randomUUID(),
      randomUUID(),
      randomUUID(),
      randomUUID(),
    ];
    const database: DatabaseDenyState = {
      tokens: [{ collector_id: revokedOwner, jtis: ['pg-jti'] }],
      collectors: [
        { id: disabled, deleted: false },
        { id: deleted, deleted: true },
        { id: markedDeleted, deleted: true },
      ],
    };

    it("unions PostgreSQL's deny state with Redis's (a Redis that lost entries still refuses them, with the same answers)", async () => {
      const redis = fakeRedis();
      redis.unblock();
      // Redis lost everything PostgreSQL refuses, except one collector it has as disabled only.
      redis.state.jtis.push('redis-jti');
      redis.state.collectors.push(redisOnly, markedDeleted);
      const deny = denyListOn(redis, undefined, { readDatabase: async () => database });
      await deny.start();
      expect(deny.trusted).toBe(true);
      expect(deny.refusal(revokedOwner, 'pg-jti')).toBe('revoked');
      expect(deny.refusal(revokedOwner, 'redis-jti')).toBe('revoked');
      expect(deny.refusal(disabled, 'x')).toBe('disabled');
      expect(deny.refusal(deleted, 'x')).toBe('deleted');
      expect(deny.refusal(markedDeleted, 'x')).toBe('deleted');
      expect(deny.refusal(redisOnly, 'x')).toBe('disabled');
      expect(deny.refusal(randomUUID(), 'other-jti')).toBeUndefined();
    });

    it('reloads by itself: revocations pruned from Redis and PostgreSQL (long expired) leave its set then, but not at a load without PostgreSQL', async () => {
      const redis = fakeRedis();
      redis.unblock();
      redis.state.jtis.push('expired-jti', 'live-jti');
      let tokens = [{ collector_id: revokedOwner, jtis: ['expired-jti', 'live-jti'] }];
      let answer = (): Promise<DatabaseDenyState> => Promise.resolve({ tokens, collectors: [] });
      const { logger, warnings } = warningLogger();
      const deny = denyListOn(redis, logger, { readDatabase: () => answer(), databaseTimeoutMs: 50, reloadEveryMs: 50 });
      await deny.start();
      try {
        expect(deny.refusal(revokedOwner, 'expired-jti')).toBe('revoked');
        // PostgreSQL down, and Redis lost the set: what this edge knows stays refused.
        answer = () => Promise.reject(new Error('connection refused'));
        redis.state.jtis.length = 0;
        await deny.reload();
        expect(deny.refusal(revokedOwner, 'expired-jti')).toBe('revoked');
        expect(deny.refusal(revokedOwner, 'live-jti')).toBe('revoked');
        // The writer's retention pruned the expired one from Redis; PostgreSQL no longer lists it.
        tokens = [{ collector_id: revokedOwner, jtis: ['live-jti'] }];
        answer = () => Promise.resolve({ tokens, collectors: [] });
        const deadline = Date.now() + 5000;
        while (deny.jtis.has('expired-jti') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        expect(deny.refusal(revokedOwner, 'expired-jti')).toBeUndefined();
        expect(deny.refusal(revokedOwner, 'live-jti')).toBe('revoked');
        expect(deny.trusted).toBe(true);
        expect(warnings.filter((w) => /from PostgreSQL/.test(w))).toHaveLength(1);
      } finally {
        deny.stop();
      }
    });

    it("PostgreSQL failing or not answering: ready with Redis's state alone, one warning per load, and read again later", async () => {
      const redis = fakeRedis();
      redis.unblock();
      redis.state.collectors.push(redisOnly);
      const { logger, warnings } = warningLogger();
      let answer: () => Promise<DatabaseDenyState> = () =>
        Promise.reject(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }));
      let reads = 0;
      const deny = denyListOn(redis, logger, {
        readDatabase: () => (reads++, answer()),
        databaseTimeoutMs: 50,
        databaseRetryMs: 100,
      });
      await deny.start();
      expect(deny.trusted).toBe(true);
      expect(deny.refusal(redisOnly, 'x')).toBe('disabled');
      expect(deny.refusal(disabled, 'x')).toBeUndefined();
      expect(warnings.filter((w) => /from PostgreSQL/.test(w))).toHaveLength(1);

      // A PostgreSQL that never answers (a half-open connection): the load waits no longer than the bound.
      answer = () => new Promise<never>(() => undefined);
      const started = performance.now();
      await deny.reload();
      expect(performance.now() - started).toBeLessThan(1000);
      expect(deny.trusted).toBe(true);
      expect(warnings.filter((w) => /from PostgreSQL/.test(w))).toHaveLength(2);

      // Back: a later load (scheduled by the failed one) reads it without any reconnect.
      answer = async () => database;
      await expect.poll(() => deny.refusal(disabled, 'x'), { timeout: 2000 }).toBe('disabled');
      expect(deny.refusal(deleted, 'x')).toBe('deleted');
      expect(deny.refusal(redisOnly, 'x')).toBe('disabled');
      const readsThen = reads;
      await new Promise((r) => setTimeout(r, 300));
      deny.stop();
      expect(reads).toBe(readsThen); // no more retries once PostgreSQL answered
      expect(warnings.filter((w) => /from PostgreSQL/.test(w))).toHaveLength(2);
    });

    it('an enable published while the PostgreSQL read is on its way wins over that read (and a disable too)', async () => {
      const redis = fakeRedis();
      redis.unblock();
      const [enabledNow, disabledNow] = [randomUUID(), randomUUID()];
      let openDatabase!: () => void;
      const gate = new Promise<void>((resolve) => (openDatabase = resolve));
      let databaseReads = 0;
      const deny = denyListOn(redis, undefined, {
        readDatabase: async () => {
          databaseReads++;
          // The snapshot is taken now: `enabledNow` still disabled, `disabledNow` still enabled…
          const snapshot = { tokens: [], collectors: [{ id: enabledNow, deleted: false }] };
          await gate;
          return snapshot;
        },
      });
      const started = deny.start();
      await tick();
      await tick();
      expect(databaseReads).toBe(1);
      // …then the admin commits both, updates Redis (already read) and publishes.
      publish(redis, { collector_id: enabledNow, kind: 'enabled' });
      publish(redis, { collector_id: disabledNow, kind: 'disabled' });
      openDatabase();
      await started;
      expect(deny.trusted).toBe(true);
      expect(deny.refusal(enabledNow, 'x')).toBeUndefined();
      expect(deny.refusal(disabledNow, 'x')).toBe('disabled');
    });

    it('a restored collector that PostgreSQL says is still disabled stays refused, though Redis lost its entry', async () => {
      const redis = fakeRedis();
      redis.unblock();
      const [stillDisabled, enabledAgain] = [randomUUID(), randomUUID()];
      let rows = [
        { id: stillDisabled, deleted: true },
        { id: enabledAgain, deleted: true },
      ];
      const deny = denyListOn(redis, undefined, {
        readDatabase: async (id) => ({ tokens: [], collectors: rows.filter((c) => id === undefined || c.id === id) }),
      });
      await deny.start();
      expect(deny.refusal(stillDisabled, 'x')).toBe('deleted');
      // Both restored (out of the recycle bin); only `enabledAgain` is enabled. Redis has neither.
      rows = [{ id: stillDisabled, deleted: false }];
      publish(redis, { collector_id: stillDisabled, kind: 'restored' });
      publish(redis, { collector_id: enabledAgain, kind: 'restored' });
      await expect.poll(() => deny.refusal(enabledAgain, 'x')).toBeUndefined();
      expect(deny.refusal(stillDisabled, 'x')).toBe('disabled');
      // Enabled later: allowed.
      publish(redis, { collector_id: stillDisabled, kind: 'enabled' });
      expect(deny.refusal(stillDisabled, 'x')).toBeUndefined();
    });
  });
});
