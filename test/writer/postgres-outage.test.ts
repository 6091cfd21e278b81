import { expect, it } from 'vitest';
import { fixture, ownPostgres, pushItem, startWriterHarness, waitUntil } from './helpers';

const ELEMENTS = (JSON.parse(fixture) as { metrics: unknown[] }).metrics.length;

/**
 * PostgreSQL briefly stopped (issue 5 §1/§7): the writer holds its jobs and retries by SQLSTATE /
 * connection failure with backoff, reports not-ready, and once PostgreSQL is back stores every push
 * exactly once — nothing is dead-lettered, nothing lost. Uses a PostgreSQL of its own to stop.
 */
it('rides out a PostgreSQL restart: jobs wait, retry, then every push is stored once', async () => {
  const pg = await ownPostgres('outage');
  const url = pg.url;
  const h = await startWriterHarness(url, { WRITER_HEARTBEAT_FLUSH_MS: '60000' });
  h.pool.on('error', () => undefined);
  try {
    const before = pushItem(fixture);
    await h.waitForJob(await h.enqueue([before]), 'completed');

    await pg.stop();
    const during = Array.from({ length: 6 }, () => pushItem(fixture));
    const ids = await Promise.all(during.map((p) => h.enqueue([p], { attempts: 1 })));
    await waitUntil('readyz reports PostgreSQL down', async () => (await fetch(`${h.url}/readyz`)).status === 503, 10_000, 100);
    await new Promise((r) => setTimeout(r, 1500));
    const states = await Promise.all(ids.map((id) => h.queue.getJobState(id)));
    expect(states.filter((s) => s === 'completed' || s === 'failed')).toEqual([]);

    await pg.restart();
    await Promise.all(ids.map((id) => h.waitForJob(id, 'completed', 30_000)));
    const { rows } = await h.pool.query(
      'SELECT push_id, count(*)::int AS n FROM collector_metrics WHERE push_id = ANY($1) GROUP BY push_id',
      [[before, ...during].map((p) => p.push_id)],
    );
    expect(rows).toHaveLength(during.length + 1);
    expect(rows.every((r) => r.n === ELEMENTS)).toBe(true);
    const text = await (await fetch(`${h.url}/metrics`)).text();
    expect(Number(/^writer_retries_total (\S+)/m.exec(text)?.[1])).toBeGreaterThanOrEqual(1);
    expect(text).toMatch(/^writer_dead_letters_total 0$/m);
    await waitUntil('ready again', async () => (await fetch(`${h.url}/readyz`)).status === 200, 10_000, 100);
  } finally {
    await h.close();
    await pg.stop();
  }
});
