import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EdgeWorld } from '../edge/harness';
import type { PushJob } from '@pga/contracts';
import { LARGE_PUSH_BYTES } from '../../services/ingest-edge/src/push/large-push-thread';
import { fixture, sha256, startWriterHarness, waitUntil, type WriterHarness } from './helpers';

/** The real pipeline: HTTP push to the ingest edge → BullMQ in Redis → this writer → PostgreSQL. */
describe('edge → Redis → writer → PostgreSQL', () => {
  let world: EdgeWorld;
  let edgeUrl: string;
  let h: WriterHarness;

  beforeAll(async () => {
    world = await EdgeWorld.create();
    edgeUrl = (await world.startEdge()).url;
    h = await startWriterHarness(world.db.url, { REDIS_KEY_PREFIX: world.prefix, WRITER_HEARTBEAT_FLUSH_MS: '100' });
  });
  afterAll(async () => {
    await h?.close();
    await world?.[Symbol.asyncDispose]();
  });

  it('stores an acknowledged v3 push (plain and gzip) exactly as sent, and a heartbeat reaches the collector row', async () => {
    const c = await world.collector();
    const body = fixture.replace('11111111-2222-4333-8444-555555555555', c.id);
    const headers = { authorization: `Bearer ${c.token}`, 'content-type': 'application/json' };
    const plain = await fetch(`${edgeUrl}/api/v1/metrics/push`, { method: 'POST', headers, body });
    expect(plain.status).toBe(200);
    const gz = await fetch(`${edgeUrl}/api/v1/metrics/push`, {
      method: 'POST',
      headers: { ...headers, 'content-encoding': 'gzip', 'idempotency-key': 'second' },
      body: gzipSync(Buffer.from(body)),
    });
    expect(gz.status).toBe(200);
    const ids = [((await plain.json()) as { push_id: string }).push_id, ((await gz.json()) as { push_id: string }).push_id];
    const elements = (JSON.parse(body) as { metrics: unknown[] }).metrics.length;

    await waitUntil('both pushes committed', async () => {
      const { rows } = await h.pool.query('SELECT count(*)::int AS n FROM collector_metrics WHERE collector_id = $1', [c.id]);
      return rows[0].n === 2 * elements;
    });
    const { rows } = await h.pool.query(
      `SELECT push_id, metric_data->'queries'->0->>'hash' AS hash FROM collector_metrics
        WHERE collector_id = $1 AND metric_type = 'pg_query_stats' AND database_name = 'postgres' ORDER BY push_id`,
      [c.id],
    );
    expect(rows.map((r) => r.push_id).sort()).toEqual([...ids].sort());
    expect(rows.every((r) => r.hash === '-5266580654608644134')).toBe(true);

    const hb = await fetch(`${edgeUrl}/api/v1/collectors/${c.id}/heartbeat`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ status: 'active', collection_time_ms: 250, metrics_count: elements, version: '3.0.0' }),
    });
    expect(hb.status).toBe(200);
    await waitUntil('heartbeat flushed', async () => {
      const r = await h.pool.query('SELECT last_heartbeat, agent_version FROM collectors WHERE id = $1', [c.id]);
      return r.rows[0].last_heartbeat !== null && r.rows[0].agent_version === '3.0.0';
    });
    const state = await h.pool.query(
      'SELECT status, success_count, metrics_collected, avg_collection_time_ms FROM collectors WHERE id = $1',
      [c.id],
    );
    expect(state.rows[0]).toEqual({
      status: 'active',
      success_count: '2',
      metrics_collected: String(2 * elements),
      avg_collection_time_ms: 250,
    });
  });

  it('a large push (LARGE_PUSH_BYTES and more) travels apart from its small job and is stored exactly as sent; its body leaves Redis once committed', async () => {
    const c = await world.collector();
    const one = fixture.replace('11111111-2222-4333-8444-555555555555', c.id);
    const metrics = (JSON.parse(one) as { metrics: unknown[] }).metrics;
    // ~2.5 MB: the fixture's metrics many times over (three pieces in Redis), 64-bit integers and all.
    const copies = Math.ceil((2.5 * 1024 * 1024) / one.length);
    const inner = one.slice(one.indexOf('[', one.indexOf('"metrics"')) + 1, one.lastIndexOf(']'));
    const body = one.replace(inner, Array.from({ length: copies }, () => inner).join(','));
    expect(body.length).toBeGreaterThan(2 * LARGE_PUSH_BYTES);
    const headers = { authorization: `Bearer ${c.token}`, 'content-type': 'application/json' };
    // The queue paused while the edge takes them in, to show what the edge put in Redis.
    await h.queue.pause();
    let ids: string[];
    try {
      const answers = await Promise.all([
        fetch(`${edgeUrl}/api/v1/metrics/push`, {
          method: 'POST',
          headers: { ...headers, 'idempotency-key': 'large-plain' },
          body,
        }),
        fetch(`${edgeUrl}/api/v1/metrics/push`, {
          method: 'POST',
          headers: { ...headers, 'content-encoding': 'gzip', 'idempotency-key': 'large-gzip' },
          body: gzipSync(Buffer.from(body)),
        }),
      ]);
      expect(answers.map((a) => a.status)).toEqual([200, 200]);
      ids = await Promise.all(answers.map(async (a) => ((await a.json()) as { push_id: string }).push_id));
      // Each a v3 job of its own, under 1 KB, its body in 1 MiB pieces in a hash named after the job.
      const jobs = (await h.queue.getJobs(['paused', 'waiting'])).filter((j) =>
        ids.includes((j.data as PushJob).pushes[0]!.push_id),
      );
      expect(jobs.map((j) => (j.data as PushJob).v)).toEqual([3, 3]);
      expect(jobs.every((j) => JSON.stringify(j.data).length < 1024)).toBe(true);
      const pieces = Math.ceil(Buffer.byteLength(body) / (1024 * 1024));
      expect(await Promise.all(jobs.map((j) => h.redis.hlen(h.keys.pushBlob(j.id!))))).toEqual([pieces, pieces]);
    } finally {
      await h.queue.resume();
    }
    await waitUntil('both large pushes committed', async () => {
      const { rows } = await h.pool.query('SELECT count(*)::int AS n FROM collector_metrics WHERE collector_id = $1', [c.id]);
      return rows[0].n === 2 * copies * metrics.length;
    });
    const { rows } = await h.pool.query(
      'SELECT push_id, checksum, count(*)::int AS n FROM collector_metrics WHERE collector_id = $1 GROUP BY 1, 2',
      [c.id],
    );
    expect(rows.map((r) => [r.push_id, r.checksum, r.n]).sort()).toEqual(
      ids.map((id) => [id, sha256(body), copies * metrics.length]).sort(),
    );
    // Their bodies are deleted once their jobs completed; nothing is left for the sweep.
    await waitUntil('large bodies gone from Redis', async () => (await h.redis.zcard(h.keys.pushBlobs)) === 0);
    expect(await h.redis.keys(h.keys.pushBlob('*'))).toEqual([]);
  });

  it("CONTRACT.md shapes: the answer's records are the rows stored; an object whose metrics are not typed objects is one flat row", async () => {
    const c = await world.collector();
    const headers = { authorization: `Bearer ${c.token}`, 'content-type': 'application/json' };
    const cases = [
      { body: '{"metrics":[{"type":"a","v":1},{"type":"b","database":"app"}]}', rows: ['a', 'b'] },
      { body: '{"database":"app","metrics":[{"name":"cpu","value":1}]}', rows: ['flat'] },
      { body: '{"metrics":[{"type":"a"},7]}', rows: ['flat'] },
      { body: '{"type":"custom","metrics":[{}],"q":[1,2,3]}', rows: ['custom'] },
      { body: `{"metrics":[{"type":"${'t'.repeat(150)}"}]}`, rows: ['t'.repeat(100)] },
    ];
    for (const [k, { body, rows }] of cases.entries()) {
      const res = await fetch(`${edgeUrl}/api/v1/metrics/push`, {
        method: 'POST',
        headers: { ...headers, 'idempotency-key': `shape-${k}` },
        body,
      });
      const answer = (await res.json()) as { push_id: string; records: number };
      expect({ body, status: res.status, records: answer.records }).toEqual({ body, status: 200, records: rows.length });
      await waitUntil(`push ${k} committed`, async () => {
        const r = await h.pool.query('SELECT 1 FROM ingest_ledger WHERE push_id = $1', [answer.push_id]);
        return r.rowCount === 1;
      });
      const stored = await h.pool.query(
        'SELECT metric_type, metric_data::text AS data FROM collector_metrics WHERE push_id = $1 ORDER BY metric_type',
        [answer.push_id],
      );
      expect(stored.rows.map((r) => r.metric_type)).toEqual(rows);
      if (rows[0] === 'flat') expect(JSON.parse(stored.rows[0].data)).toEqual(JSON.parse(body));
    }
  });
});
