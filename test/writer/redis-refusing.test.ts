import path from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import type { PushJob } from '@pga/contracts';
import { expect, it } from 'vitest';
import { freePort, startRedis, startOnFreePort } from '@pga/local-stack';
import { redisKeys } from '@pga/redis-keys';
import { createWriter, readWriterConfig } from '@pga/writer';
import { capturingLogger, createTestDatabase, testEnv, uniquePrefix } from '../helpers';
import { fixture, insertCollector, pushItem, startWriterHarness, waitUntil, writerEnv } from './helpers';

/**
 * Redis up but refusing writes (here: over its `maxmemory` with `noeviction`; a read-only replica
 * or a failed background save alike). BullMQ's worker loop retried a failed fetch at once, without
 * a pause: tens of thousands of `push worker error` warnings with stacks in seconds, and a core of
 * CPU. Now a failed fetch waits a second, the errors go into the Redis outage log (one line as it
 * starts, one when Redis accepts writes again), and the job is stored once Redis takes writes again.
 * Uses a Redis of its own: the memory limit would refuse every other suite's writes.
 */
it('Redis refusing writes (OOM): no hot loop, one line as it starts and one when it is over, then the job is stored', async () => {
  const server = await startOnFreePort((port) =>
    startRedis({ dataDir: path.join(testEnv.dataDir, uniquePrefix('oom-redis')), port }),
  );
  const db = await createTestDatabase();
  const { logger, lines } = capturingLogger('writer-test');
  const admin = new Redis(server.url, { maxRetriesPerRequest: 1 });
  const h = await startWriterHarness(db.url, { REDIS_URL: server.url, WRITER_HEARTBEAT_FLUSH_MS: '60000' }, logger);
  try {
    const collector = await insertCollector(h.pool);
    await h.waitForJob(await h.enqueue([pushItem(fixture, collector)]), 'completed');
    // Due in 1.5 s: the writer's fetch then has to move it (a write) while Redis refuses writes.
    const item = pushItem(fixture, collector);
    const job = await h.queue.add('push', { v: 1, pushes: [item] }, { delay: 1500, attempts: 3, removeOnComplete: false });
    let fetchErrors = 0;
    for (const worker of [h.writer.pushWorker.worker, h.writer.maintenance.worker]) worker.on('error', () => fetchErrors++);
    await admin.config('SET', 'maxmemory', '1');
    await new Promise((r) => setTimeout(r, 4000));
    // A second between failed fetches (a worker's first attempts may fail before the pause applies).
    expect(fetchErrors).toBeGreaterThanOrEqual(1);
    expect(fetchErrors).toBeLessThanOrEqual(20);
    // Before: BullMQ's loop retried the failed fetch at once, a warning with a stack each time.
    expect(lines.length).toBeLessThan(20);
    expect(lines.map((l) => l.msg)).toContainEqual(expect.stringMatching(/^Redis refusing commands: OOM command not allowed/));

    await admin.config('SET', 'maxmemory', '0');
    await h.waitForJob(job.id!, 'completed', 15_000);
    const { rows } = await h.pool.query('SELECT count(*)::int AS n FROM collector_metrics WHERE push_id = $1', [item.push_id]);
    expect(rows[0].n).toBeGreaterThan(0);
    await waitUntil(
      'the outage ends in the log',
      async () => lines.some((l) => /^Redis accepting commands again after/.test(l.msg)),
      10_000,
    );
    const warnings = lines.filter((l) => l.level >= 40).map((l) => l.msg);
    expect(warnings).toEqual([expect.stringMatching(/^Redis refusing commands: OOM command not allowed/)]);
  } finally {
    await admin.config('SET', 'maxmemory', '0').catch(() => undefined);
    admin.disconnect();
    await h.close();
    await server.stop();
    await db.drop();
  }
});

/**
 * Redis stopped: the writer's connection queues its commands (BullMQ needs that), so a gauge
 * refresh neither failed nor answered and writer_queue_lag_seconds froze at its last value for the
 * whole outage — the one an alert on lag exists for. Now it keeps growing from the oldest push the
 * last answer showed.
 */
it('Redis stopped: the queue lag keeps growing from the last oldest push seen', async () => {
  const server = await startOnFreePort((port) =>
    startRedis({ dataDir: path.join(testEnv.dataDir, uniquePrefix('lag-redis')), port }),
  );
  const db = await createTestDatabase();
  const prefix = uniquePrefix('lagdown');
  const keys = redisKeys(prefix);
  const { logger } = capturingLogger('writer-test');
  // Built, not started: it takes no job, so the one added below stays the oldest waiting push.
  const writer = createWriter({ config: readWriterConfig(await writerEnv(db.url, prefix, { REDIS_URL: server.url })), logger });
  const queue = new Queue<PushJob>(keys.pushQueue, {
    connection: new Redis(server.url, { maxRetriesPerRequest: 1 }),
    prefix: keys.bullPrefix,
  });
  queue.on('error', () => undefined);
  const lag = async () => {
    await writer.pushWorker.refreshGauges().catch(() => undefined);
    return Number(/^writer_queue_lag_seconds (\S+)$/m.exec(await writer.metrics.registry.metrics())?.[1]);
  };
  try {
    await queue.add('push', { v: 1, pushes: [pushItem(fixture)] });
    await new Promise((r) => setTimeout(r, 1000));
    const before = await lag();
    expect(before).toBeGreaterThanOrEqual(1);
    await server.stop();
    await new Promise((r) => setTimeout(r, 2500));
    expect(await lag()).toBeGreaterThanOrEqual(before + 2);
  } finally {
    await queue.close().catch(() => undefined);
    writer.redis.disconnect();
    await writer.pushWorker.close().catch(() => undefined);
    await writer.maintenance.close().catch(() => undefined);
    await writer.pool.end();
    await server.stop();
    await db.drop();
  }
});

/**
 * Redis up but refusing writes to the heartbeat flush (a read-only replica here, `REPLICAOF` a primary
 * that is not there; MISCONF after a failed AOF write alike): its claim script is a Redis write. The
 * flush's errors went to the PostgreSQL outage log — "PostgreSQL refusing commands: READONLY …", and
 * "PostgreSQL accepting commands again" once Redis took writes — sending an operator to the wrong
 * server. Now they are Redis's outage. Uses a Redis of its own.
 */
it('Redis refusing the heartbeat flush: told as a Redis outage, never as PostgreSQL', async () => {
  const server = await startOnFreePort((port) =>
    startRedis({ dataDir: path.join(testEnv.dataDir, uniquePrefix('hb-ro-redis')), port }),
  );
  const db = await createTestDatabase();
  const { logger, lines } = capturingLogger('writer-test');
  const admin = new Redis(server.url, { maxRetriesPerRequest: 1 });
  const h = await startWriterHarness(db.url, { REDIS_URL: server.url, WRITER_HEARTBEAT_FLUSH_MS: '100' }, logger);
  try {
    await admin.replicaof('127.0.0.1', String(await freePort()));
    await waitUntil('the refusal logged', async () => lines.some((l) => /refusing commands: READONLY/.test(l.msg)), 10_000);
    await new Promise((r) => setTimeout(r, 1000)); // ten more ticks
    await admin.replicaof('NO', 'ONE');
    await waitUntil('the outage ends', async () => lines.some((l) => /accepting commands again/.test(l.msg)), 10_000);
    const said = lines.map((l) => l.msg).filter((m) => /refusing commands|accepting commands/.test(m));
    expect(said.filter((m) => m.startsWith('PostgreSQL'))).toEqual([]);
    expect(said).toContainEqual(expect.stringMatching(/^Redis refusing commands: READONLY/));
  } finally {
    await admin.replicaof('NO', 'ONE').catch(() => undefined);
    admin.disconnect();
    await h.close();
    await server.stop();
    await db.drop();
  }
});
