import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { waitFor } from '@pga/local-stack';
import type { Writer } from '@pga/writer';
import { CollectorSchema } from '../../services/admin-api/src/collectors/collector-schema';
import { createHarness, type Harness } from './harness';
import { form } from './fixtures';
import { startPipeline } from './pipeline-stack';

/**
 * What a fleet admin reads about a collector's state (collectors.get / list, the live feed) against
 * what the collector sent, through the real edge and writer on one database and Redis prefix. The
 * writer's timers are off: the test flushes heartbeats and sweeps itself, so heartbeats can pile up
 * in Redis as they do while a writer is slow or away.
 */
describe('collector state as the admin API shows it', () => {
  let h: Harness;
  let pipeline: Awaited<ReturnType<typeof startPipeline>>;
  let writer: Writer;
  let edgeUrl: string;
  beforeAll(async () => {
    h = await createHarness();
    pipeline = await startPipeline(h, 'collector-state-api', {
      WRITER_HEARTBEAT_FLUSH_MS: '60000',
      WRITER_SWEEP_INTERVAL_MS: '3600000',
    });
    ({ writer, edgeUrl } = pipeline);
    // The heartbeat timer off for good (60 s is the longest WRITER_HEARTBEAT_FLUSH_MS, which a loaded
    // run can reach): the tests flush themselves, so heartbeats pile up as they do for a writer away.
    await writer.heartbeats.stop();
    // The sweep's schedule runs once at start (it flushes heartbeats too): wait until it has run,
    // not a fixed time that a loaded machine can overrun.
    await waitFor(
      'the start-up sweep',
      async () => (await writer.maintenance.queue.getJobs(['completed', 'failed'])).some((j) => j.name === 'sweep'),
      30_000,
    );
  });
  afterAll(async () => {
    await pipeline?.stop();
    await h?.[Symbol.asyncDispose]();
  });

  const register = async () => {
    const reg = await h.caller(h.admin).collectors.register(form({ collection_interval: 60 }));
    return { id: reg.collector.id, token: reg.token };
  };
  const push = async (c: { token: string }, elements: number) => {
    const res = await fetch(`${edgeUrl}/api/v1/metrics/push`, {
      method: 'POST',
      headers: { authorization: `Bearer ${c.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        metrics: Array.from({ length: elements }, (_, n) => ({ type: 'pg_stats', database: 'app', n, at: Date.now() })),
      }),
    });
    expect(res.status).toBe(200);
  };
  const heartbeat = async (c: { id: string; token: string }, body: Record<string, unknown>) => {
    const res = await fetch(`${edgeUrl}/api/v1/collectors/${c.id}/heartbeat`, {
      method: 'POST',
      headers: { authorization: `Bearer ${c.token}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    expect(res.status).toBe(200);
  };
  const stored = async (id: string) => (await h.service.deps.pool.query('SELECT * FROM collectors WHERE id = $1', [id])).rows[0];
  const get = (id: string) => h.caller(h.admin).collectors.get({ id });

  it('collectors.get and list return last_collection_count (the latest push row count, or the heartbeat metrics_count)', async () => {
    expect(Object.keys(CollectorSchema.shape)).toContain('last_collection_count');
    const c = await register();
    expect((await get(c.id)).last_collection_count).toBeNull();
    await push(c, 3);
    await waitFor('push stored', async () => (await stored(c.id)).last_collection_count === 3, 10_000);
    expect(await get(c.id)).toMatchObject({ status: 'active', metrics_collected: 3, last_collection_count: 3 });
    const list = await h.caller(h.viewer).collectors.list({ page_size: 100 });
    expect(list.items.find((x) => x.id === c.id)).toMatchObject({ last_collection_count: 3 });

    await heartbeat(c, { status: 'active', metrics_count: 7 });
    await writer.heartbeats.flushHeartbeats();
    expect((await get(c.id)).last_collection_count).toBe(7);
  });

  it('an error collector that still pushes but stopped heartbeating reads the same status on the live feed and in collectors.get', async () => {
    const c = await register();
    await push(c, 2);
    await waitFor('active', async () => (await stored(c.id)).status === 'active', 10_000);
    await heartbeat(c, { status: 'error', last_error: 'pg_stat_statements missing' });
    await writer.heartbeats.flushHeartbeats();
    expect((await stored(c.id)).status).toBe('error');
    expect((await get(c.id)).status).toBe('error');

    // Its heartbeats stopped ten minutes ago (more than 2 × 60 s); it keeps pushing.
    await h.service.deps.pool.query(`UPDATE collectors SET last_heartbeat = now() - interval '10 minutes' WHERE id = $1`, [c.id]);
    const stream = await h.caller(h.viewer).live.collectorStatus({ collector_ids: [c.id] });
    const iterator = stream[Symbol.asyncIterator]();
    const next = iterator.next();
    await push(c, 2);
    const event = (await next).value as { status: string; metrics_collected: number };
    await iterator.return?.();
    expect(event.metrics_collected).toBe(4);
    // The inactivity sweep leaves it alone: it pushed within 2 × interval.
    await writer.maintenance.runNow('sweep');
    const after = await get(c.id);
    expect((await stored(c.id)).status).toBe(event.status);
    expect(after.status).toBe(event.status);
    // The contract: only a heartbeat reports health, a push carries no status (and the writer issue
    // moves a push's collector pending → active only): the reported error stands.
    expect(after.status).toBe('error');
    expect(after).toMatchObject({ heartbeat_alive: false, data_fresh: true, last_error: 'pg_stat_statements missing' });
    const errors = await h.caller(h.viewer).collectors.list({ status: 'error', page_size: 100 });
    expect(errors.items.map((x) => x.id)).toContain(c.id);

    // Silent altogether: inactive, in both.
    await h.service.deps.pool.query(
      `UPDATE collectors SET last_metric_at = now() - interval '10 minutes', registered_at = now() - interval '1 hour' WHERE id = $1`,
      [c.id],
    );
    expect((await get(c.id)).status).toBe('inactive');
    await writer.maintenance.runNow('sweep');
    expect((await stored(c.id)).status).toBe('inactive');
  });

  it('keeps every collection time a heartbeat reported, also when a newer heartbeat replaced it before the flush', async () => {
    const c = await register();
    await push(c, 1);
    // Three collections reported while the writer does not flush, then a heartbeat without one (the
    // collector reports each collection's time once).
    await heartbeat(c, { status: 'active', collection_time_ms: 100 });
    await heartbeat(c, { status: 'active', collection_time_ms: 900 });
    await heartbeat(c, { status: 'active', collection_time_ms: 200 });
    await heartbeat(c, { status: 'active' });
    await writer.heartbeats.flushHeartbeats();
    expect(await get(c.id)).toMatchObject({ max_collection_time_ms: 900, avg_collection_time_ms: 400 });

    // Each applied once: a flush with nothing new changes nothing, the next report moves the mean.
    await writer.heartbeats.flushHeartbeats();
    expect(await get(c.id)).toMatchObject({ max_collection_time_ms: 900, avg_collection_time_ms: 400 });
    await heartbeat(c, { status: 'active', collection_time_ms: 1000 });
    await writer.heartbeats.flushHeartbeats();
    await heartbeat(c, { status: 'active' });
    await writer.heartbeats.flushHeartbeats();
    expect(await get(c.id)).toMatchObject({
      max_collection_time_ms: 1000,
      avg_collection_time_ms: Math.round(400 * 0.8 + 1000 * 0.2),
    });
  });
});
