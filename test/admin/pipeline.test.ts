import { waitFor } from '@pga/local-stack';
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { createLogger } from '@pga/logger';
import { freePort } from '@pga/local-stack';
import { createEdge, readEdgeConfig, type Edge } from '@pga/ingest-edge';
import { createWriter, readWriterConfig } from '@pga/writer';
import { createHarness, type Harness } from './harness';
import { form } from './fixtures';

/** admin → edge → queue → writer → status channel → admin live feed, all real, one database and Redis prefix. */
describe('live status through the whole pipeline', () => {
  let h: Harness;
  let edge: Edge;
  let writer: ReturnType<typeof createWriter>;
  let edgeUrl: string;
  beforeAll(async () => {
    h = await createHarness();
    await h.service.deps.liveFeed.ready();
    const c = h.service.deps.config;
    const shared = {
      DATABASE_URL: c.DATABASE_URL,
      REDIS_URL: c.REDIS_URL,
      REDIS_KEY_PREFIX: c.REDIS_KEY_PREFIX,
      JWT_SECRET: c.JWT_SECRET,
      ENCRYPTION_KEY: c.ENCRYPTION_KEY,
      LOG_LEVEL: 'silent',
    };
    const silent = createLogger({ name: 'pipeline', level: 'silent', pretty: false });
    edge = await createEdge({
      config: readEdgeConfig({ ...shared, INGEST_PORT: '0', INGEST_HOST: '127.0.0.1', EDGE_PROCESSES: '1' }),
      logger: silent,
    });
    edgeUrl = `http://127.0.0.1:${edge.port}`;
    writer = createWriter({
      config: readWriterConfig({
        ...shared,
        WRITER_PORT: String(await freePort()),
        WRITER_HOST: '127.0.0.1',
        WRITER_HEARTBEAT_FLUSH_MS: '200',
      }),
      logger: silent,
    });
    await writer.start();
    await waitFor('edge /readyz', async () => (await fetch(`${edgeUrl}/readyz`)).status === 200, 10_000);
  });
  afterAll(async () => {
    await writer?.stop().catch(() => undefined);
    await edge?.drain().catch(() => undefined);
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
