import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { createLogger } from '@pga/logger';
import { redisKeys } from '@pga/redis-keys';
import { DenyList } from './deny-list';

const keys = redisKeys('deny-list-test');

/**
 * A subscriber and a reader that stand in for Redis, so a reconnect can be placed exactly inside a
 * reload (a real Redis cannot be made to disconnect at that instant). Each read answers the state
 * as it was when the read was sent, once `open()` is called.
 */
function fakeRedis() {
  const state = { jtis: [] as string[] };
  let open!: () => void;
  let gate = new Promise<void>((resolve) => (open = resolve));
  const subscriber = Object.assign(new EventEmitter(), {
    status: 'ready',
    subscribe: async () => 1,
  });
  const reader = {
    smembers: (key: string) => {
      const snapshot = key === keys.deniedJtis ? [...state.jtis] : [];
      return gate.then(() => snapshot);
    },
    get: () => gate.then(() => '0'),
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
function denyListOn(redis: ReturnType<typeof fakeRedis>, logger = createLogger({ name: 'test', level: 'silent' })) {
  return new DenyList(redis.subscriber as never, redis.reader as never, keys, logger);
}

describe('DenyList', () => {
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
});
