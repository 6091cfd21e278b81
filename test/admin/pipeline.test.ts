import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { createHarness, type Harness } from './harness';
import { form } from './fixtures';
import { startPipeline } from './pipeline-stack';

/** admin → edge → queue → writer → status channel → admin live feed, all real, one database and Redis prefix. */
describe('live status through the whole pipeline', () => {
  let h: Harness;
  let pipeline: Awaited<ReturnType<typeof startPipeline>>;
  let edgeUrl: string;
  beforeAll(async () => {
    h = await createHarness();
    pipeline = await startPipeline(h, 'pipeline', { WRITER_HEARTBEAT_FLUSH_MS: '200' });
    ({ edgeUrl } = pipeline);
  });
  afterAll(async () => {
    await pipeline?.stop();
    await h?.[Symbol.asyncDispose]();
  });

  it('a first push turns a pending collector active, and the subscriber hears it', async () => {
    const admin = h.caller(h.admin);
    const reg = await admin.collectors.register(form({ collection_interval: 60 }));
    const id = reg.collector.id;
    expect(reg.collector.status).toBe('pending');
    const stream = await h.caller(h.viewer).live.collectorStatus({ collector_ids: [id] });
    const iterator = stream[Symbol.asyncIterator]();
    const first = iterator.next();
    const started = performance.now();
    const res = await fetch(`${edgeUrl}/api/v1/metrics/push`, {
      method: 'POST',
      headers: { authorization: `Bearer ${reg.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        metrics: [
          { type: 'pg_stats', database: 'app', n: 1 },
          { type: 'pg_stats', database: 'app', n: 2 },
        ],
      }),
    });
    expect(res.status).toBe(200);
    const event = await first;
    console.log(`status change reached the subscriber ${Math.round(performance.now() - started)} ms after the push was accepted`);
    await iterator.return?.();
    expect(event.value).toMatchObject({ collector_id: id, status: 'active', metrics_collected: 2 });
    const got = await admin.collectors.get({ id });
    expect(got).toMatchObject({ status: 'active', data_fresh: true, metrics_collected: 2 });
    expect(got.last_metric_at).not.toBeNull();
  });
});
