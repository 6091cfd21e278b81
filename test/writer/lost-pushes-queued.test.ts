import { expect, it } from 'vitest';
import { findLostPushes } from '../../scripts/lib/lost-pushes';
import { call } from '../edge/harness';
import { createTestDatabase, uniquePrefix } from '../helpers';
import { edgeWithCollector } from './edge-collector';
import { startWriterHarness, waitUntil } from './helpers';

/**
 * No restore at all: a push PostgreSQL refuses is retried, then a dead letter the admin API can
 * retry. Its marker says its batch is in Redis and the ledger lacks it: `npm run lost-pushes` listed
 * it as lost, while retrying and as a dead letter. A push whose job is still in Redis is not lost.
 */
it('lost-pushes leaves out a push whose job is still in Redis: retrying, or a dead letter', { timeout: 90_000 }, async () => {
  await using db = await createTestDatabase();
  const prefix = uniquePrefix('lostdl');
  await using writer = await startWriterHarness(db.url, { REDIS_KEY_PREFIX: prefix });
  const pool = writer.pool;
  const { edge, id, token } = await edgeWithCollector(db.url, pool, prefix);
  try {
    // PostgreSQL refuses this collector's rows (as in test/writer/store.test.ts): the job fails, retries, ends a dead letter.
    await pool.query(`CREATE FUNCTION pga_test_block() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.collector_id = '${id}' THEN RAISE EXCEPTION 'collector % is blocked', NEW.collector_id; END IF; RETURN NEW; END $$`);
    await pool.query(
      'CREATE TRIGGER pga_test_block BEFORE INSERT ON collector_metrics FOR EACH ROW EXECUTE FUNCTION pga_test_block()',
    );
    const res = await call(`${edge.url}/api/v1/metrics/push`, {
      token,
      body: '{"n":1}',
      headers: { 'idempotency-key': 'refused' },
    });
    expect(res.status).toBe(200);
    await waitUntil('retrying', async () => (await writer.queue.getJobCounts('delayed')).delayed === 1, 30_000);
    const lostNow = () => findLostPushes({ redis: writer.redis, pool, prefix, ttlSeconds: 86_400, graceSeconds: 0 });
    expect(await lostNow()).toEqual([]); // retrying: not lost
    // Fewer attempts, to reach the dead letters now rather than after ~17 min of backoff.
    const [job] = await writer.queue.getDelayed();
    await writer.redis.hset(writer.queue.toKey(job!.id!), 'opts', JSON.stringify({ ...job!.opts, attempts: 2 }));
    await job!.promote();
    await waitUntil('dead-lettered', async () => (await writer.queue.getJobCounts('failed')).failed === 1, 30_000);
    expect(await lostNow()).toEqual([]); // a dead letter, retriable: not lost
    // Gone from Redis (the dead letter removed) and not in the ledger: lost.
    await (await writer.queue.getFailed())[0]!.remove();
    expect((await lostNow()).map((p) => p.collector_id)).toEqual([id]);
  } finally {
    await edge.stop();
  }
});
