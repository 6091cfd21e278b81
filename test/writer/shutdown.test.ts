import path from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import type { PushJob } from '@pga/contracts';
import { createPool } from '@pga/db';
import { freePort, startOnFreePort, startRedis } from '@pga/local-stack';
import { redisKeys } from '@pga/redis-keys';
import { createTestDatabase, testEnv, uniquePrefix } from '../helpers';
import { spawnWriter, type ChildWriter } from './child-writer';
import { fixture, ownPostgres, pushItem, waitUntil, writerEnv } from './helpers';

const ELEMENTS = (JSON.parse(fixture) as { metrics: unknown[] }).metrics.length;

/** SIGTERM and the time until the process is gone; SIGKILL (and a failed expectation) after `limitMs`. */
async function stopWithin(w: ChildWriter, limitMs: number) {
  const started = Date.now();
  const timer = setTimeout(() => void w.kill('SIGKILL'), limitMs);
  const exit = await w.kill('SIGTERM');
  clearTimeout(timer);
  return { ...exit, ms: Date.now() - started };
}

/** The writer's JSON log lines so far. */
function logLines(w: ChildWriter) {
  return w
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { msg: string; level: number; reason?: string; heldJobs?: number; attempt?: number });
}

/**
 * SIGTERM while a dependency is gone (issue 5 §6, "SIGTERM finishes the batch in flight"): the drain
 * cannot finish, so the writer must not wait it out (it used to sit for 60 s, then exit on its
 * last-resort timer), must say why it stopped early, and must lose nothing: the jobs it held are
 * redelivered and stored once. Each test runs a Redis or PostgreSQL of its own to stop.
 */
describe('writer: stopping while a dependency is gone', () => {
  it('logs a Redis outage as one line when it starts and one when it is over, and stops at once while Redis is unreachable', async () => {
    const dataDir = path.join(testEnv.dataDir, uniquePrefix('writer-redis'));
    // Any port first; the restart below must take the same one (its clients know it).
    let redis = await startOnFreePort((port) => startRedis({ dataDir, port }));
    const port = redis.port;
    const db = await createTestDatabase();
    const w = spawnWriter({
      ...(await writerEnv(db.url, uniquePrefix('redis-gone'), { LOG_LEVEL: 'info' })),
      REDIS_URL: redis.url,
    });
    const lines = () => logLines(w);
    const outageLines = () =>
      lines()
        .filter((l) => /^Redis /.test(l.msg) || /ECONNREFUSED|Connection is closed/.test(JSON.stringify(l)))
        .map((l) => l.msg);
    try {
      await w.waitForLog('writer started');
      // First outage: Redis back after 3 s of ioredis's and BullMQ's connections retrying (several
      // times a second each).
      await redis.stop();
      await w.waitForLog('Redis unreachable');
      await new Promise((r) => setTimeout(r, 3000));
      redis = await startRedis({ dataDir, port });
      await w.waitForLog('Redis reachable again');
      await new Promise((r) => setTimeout(r, 2000)); // every connection back; nothing more to say
      // The first error is the connection reset by the stopping Redis, or the refused reconnect.
      expect(outageLines(), w.output()).toEqual([
        expect.stringMatching(/^Redis unreachable: (connect ECONNREFUSED|read ECONNRESET)/),
        expect.stringMatching(/^Redis reachable again after \d/),
      ]);

      // Second outage, and a SIGTERM during it: no wait for a drain that cannot finish.
      await redis.stop();
      await waitUntil('the second outage logged', async () => outageLines().length === 3, 10_000, 50);
      await new Promise((r) => setTimeout(r, 2000));
      const exit = await stopWithin(w, 8000);
      expect(exit.ms, w.output()).toBeLessThan(5000);
      expect(exit.code, w.output()).toBe(1);
      expect(outageLines()[2]).toMatch(/^Redis unreachable: (connect ECONNREFUSED|read ECONNRESET)/);
      expect(outageLines()).toHaveLength(3);
      // It held no job (nothing was pushed), so only the final heartbeat flush was skipped: a
      // warning, not an error an operator would be paged for.
      expect(lines().find((l) => l.msg.startsWith('writer stopped without finishing its drain'))).toMatchObject({
        level: 40,
        reason: 'redis unreachable',
        heldJobs: 0,
        batchesInFlight: 0,
      });
    } finally {
      await w[Symbol.asyncDispose]();
      await redis.stop();
      await db.drop();
    }
  });

  it('stops after WRITER_DRAIN_TIMEOUT_MS while PostgreSQL is down; the job it held is stored once afterwards', async () => {
    const pg = await ownPostgres('drain');
    const url = pg.url;
    const prefix = uniquePrefix('pg-gone');
    const keys = redisKeys(prefix);
    const redis = new Redis(testEnv.redisUrl, { maxRetriesPerRequest: null });
    const queue = new Queue<PushJob>(keys.pushQueue, { connection: redis, prefix: keys.bullPrefix });
    // Short locks, so the held job is redelivered within seconds of the first writer's exit.
    const env = await writerEnv(url, prefix, {
      LOG_LEVEL: 'info',
      WRITER_DRAIN_TIMEOUT_MS: '1500',
      WRITER_LOCK_DURATION_MS: '2000',
      WRITER_STALLED_INTERVAL_MS: '500',
      WRITER_HEARTBEAT_FLUSH_MS: '60000',
    });
    let first: ChildWriter | undefined;
    let second: ChildWriter | undefined;
    try {
      first = spawnWriter(env);
      await first.waitForLog('writer started');
      await pg.stop();
      const items = Array.from({ length: 3 }, () => pushItem(fixture));
      const job = await queue.add('push', { v: 1, pushes: items }, { removeOnComplete: false, attempts: 10 });
      await first.waitForLog('transient PostgreSQL error; retrying batch');
      // Its retries go on every 0.1 – 0.8 s: the first is said, the rest are counted in the outage's
      // summaries (they were a warning each, ~12 a minute per batch for as long as it lasted).
      await new Promise((r) => setTimeout(r, 2000));
      const retryLines = () => logLines(first!).filter((l) => l.msg === 'transient PostgreSQL error; retrying batch');
      expect(
        retryLines().map((l) => l.attempt),
        first.output(),
      ).toEqual([1]);
      const exit = await stopWithin(first, 15_000);
      expect(exit.code, first.output()).toBe(1);
      expect(exit.ms, first.output()).toBeGreaterThanOrEqual(1400);
      expect(exit.ms, first.output()).toBeLessThan(6000);
      const abandon = logLines(first).find((l) =>
        l.msg.startsWith('writer stopped without finishing its drain (not done within 1500 ms)'),
      );
      // A job was held: an error, with what was abandoned.
      expect(abandon, first.output()).toMatchObject({ level: 50, heldJobs: 1 });
      expect(await queue.getJobState(job.id!)).toBe('active');

      await pg.restart();
      second = spawnWriter({ ...env, WRITER_PORT: String(await freePort()) });
      await waitUntil(
        'the held job redelivered and completed',
        async () => (await queue.getJobState(job.id!)) === 'completed',
        30_000,
        200,
      );
      const check = createPool(url, { max: 1 });
      const { rows } = await check.query('SELECT push_id, count(*)::int AS n FROM collector_metrics GROUP BY push_id');
      await check.end();
      expect(rows.map((r) => r.push_id).sort()).toEqual(items.map((i) => i.push_id).sort());
      expect(rows.every((r) => r.n === ELEMENTS)).toBe(true);
      expect((await stopWithin(second, 15_000)).code, second.output()).toBe(0);
    } finally {
      await first?.[Symbol.asyncDispose]();
      await second?.[Symbol.asyncDispose]();
      await queue.close();
      await redis.quit();
      await pg.stop();
    }
  });
});
