import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '@pga/logger';
import { testEnv } from '../helpers';
import { QueueHealth } from '../../services/ingest-edge/src/ops/queue-health';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('QueueHealth (real Redis)', () => {
  let redis: Redis | undefined;
  let health: QueueHealth | undefined;
  afterEach(() => {
    health?.stop();
    redis?.disconnect();
  });

  it('a Redis answering every poll later than the poll interval (busy, not silent) stays reachable', async () => {
    // No ready check: it would call the wrapped `info` below.
    redis = new Redis(testEnv.redisUrl, { maxRetriesPerRequest: 1, enableReadyCheck: false });
    const info = redis.info.bind(redis);
    let delayMs = 0;
    // Every answer arrives delayMs late (a Redis busy with one large job after another).
    redis.info = (() => info().then(async (text) => (await sleep(delayMs), text))) as typeof redis.info;
    health = new QueueHealth(redis, 0, createLogger({ name: 'queue-health-test', level: 'silent', pretty: false }));
    health.start(300); // silent after 3 polls: 900 ms without an answer
    await expect.poll(() => health!.reachable, { timeout: 5000 }).toBe(true);
    delayMs = 450;
    const seen: boolean[] = [];
    for (let i = 0; i < 20; i++) {
      await sleep(100);
      seen.push(health.reachable);
    }
    expect(seen.every(Boolean)).toBe(true);
  });

  it('a Redis that stops answering is unreachable after three poll intervals, and reachable once it answers again', async () => {
    // No ready check: it would call the wrapped `info` below.
    redis = new Redis(testEnv.redisUrl, { maxRetriesPerRequest: 1, enableReadyCheck: false });
    const info = redis.info.bind(redis);
    let silent = false;
    redis.info = (() => (silent ? new Promise<string>(() => undefined) : info())) as typeof redis.info;
    health = new QueueHealth(redis, 0, createLogger({ name: 'queue-health-test', level: 'silent', pretty: false }));
    health.start(200);
    await expect.poll(() => health!.reachable, { timeout: 5000 }).toBe(true);
    silent = true;
    await expect.poll(() => health!.reachable, { timeout: 5000 }).toBe(false);
    silent = false;
    await expect.poll(() => health!.reachable, { timeout: 5000 }).toBe(true);
  });
});
