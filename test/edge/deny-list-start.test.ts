import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '@pga/logger';
import { redisKeys } from '@pga/redis-keys';
import { testEnv, uniquePrefix } from '../helpers';
import { DenyList } from '../../services/ingest-edge/src/auth/deny-list';

describe('DenyList start (real Redis)', () => {
  const connections: Redis[] = [];
  afterEach(() => {
    for (const c of connections.splice(0)) c.disconnect();
  });

  it('started while the change feed connection is connected but not ready: no failed ready check, no reconnect, trusted', async () => {
    // As the edge makes it (create-edge.ts): offline queue on.
    const reader = new Redis(testEnv.redisUrl, { maxRetriesPerRequest: 1 });
    connections.push(reader);
    await new Promise((resolve) => reader.once('ready', resolve));
    const subscriber = new Redis(testEnv.redisUrl, { maxRetriesPerRequest: 1, enableOfflineQueue: true });
    connections.push(subscriber);
    const connected = new Promise((resolve) => subscriber.once('connect', resolve));
    const errors: string[] = [];
    subscriber.on('error', (err: Error) => errors.push(err.message));
    let closes = 0;
    subscriber.on('close', () => closes++);
    // TCP up, the ready check's INFO not answered yet: the moment the edge's start met at times.
    await connected;
    expect(subscriber.status).toBe('connect');
    const deny = new DenyList(
      subscriber,
      reader,
      redisKeys(uniquePrefix('deny-start')),
      createLogger({ name: 'deny-start', level: 'silent', pretty: false }),
      {
        reloadEveryMs: 0,
      },
    );
    await deny.start();
    expect(deny.trusted).toBe(true);
    // A reconnect would show only after the failed check: give it the time.
    await new Promise((resolve) => setTimeout(resolve, 300));
    deny.stop();
    expect(errors).toEqual([]);
    expect(closes).toBe(0);
    expect(deny.trusted).toBe(true);
  });

  it('started with Redis unreachable: rejects (the edge logs it and the reconnect subscribes)', async () => {
    const subscriber = new Redis('redis://127.0.0.1:1', {
      maxRetriesPerRequest: 1,
      enableOfflineQueue: true,
      retryStrategy: () => null,
    });
    const reader = new Redis('redis://127.0.0.1:1', { maxRetriesPerRequest: 1, lazyConnect: true });
    subscriber.on('error', () => undefined);
    connections.push(subscriber, reader);
    const deny = new DenyList(
      subscriber,
      reader,
      redisKeys('x'),
      createLogger({ name: 'deny-start', level: 'silent', pretty: false }),
      { reloadEveryMs: 0 },
    );
    await expect(deny.start()).rejects.toThrow();
    deny.stop();
    expect(deny.trusted).toBe(false);
  });
  it('started on a lazyConnect connection not yet connected: connects, subscribes, trusted', async () => {
    const reader = new Redis(testEnv.redisUrl, { maxRetriesPerRequest: 1 });
    const subscriber = new Redis(testEnv.redisUrl, { maxRetriesPerRequest: 1, enableOfflineQueue: true, lazyConnect: true });
    connections.push(reader, subscriber);
    expect(subscriber.status).toBe('wait');
    const deny = new DenyList(
      subscriber,
      reader,
      redisKeys(uniquePrefix('deny-lazy')),
      createLogger({ name: 'deny-start', level: 'silent', pretty: false }),
      {
        reloadEveryMs: 0,
      },
    );
    await deny.start();
    deny.stop();
    expect(deny.trusted).toBe(true);
    // start's own waiting listeners are gone (the class's 'ready' handler stays).
    expect(subscriber.listenerCount('ready')).toBe(1);
    expect(subscriber.listenerCount('close')).toBe(1);
  });
});
