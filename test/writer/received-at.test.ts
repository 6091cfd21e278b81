import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { capturingLogger, createTestDatabase, type TestDatabase } from '../helpers';
import { fixture, insertCollector, pushItem, startWriterHarness, type WriterHarness } from './helpers';

const FUTURE_WARNING =
  'pushes received past the last partition made ahead, PARTITION_DAYS_AHEAD days after today (an edge clock running ahead?): stored in the DEFAULT partition';

/**
 * received_at is the edge's clock, written with `Z`. One without an offset was read in the writer's
 * time zone (this file runs its writer in New York's); one far ahead lands in the DEFAULT partition,
 * and nothing said so.
 */
describe('writer: received_at', () => {
  const zone = process.env.TZ;
  const { logger, lines } = capturingLogger('writer-test');
  let db: TestDatabase;
  let h: WriterHarness;

  beforeAll(async () => {
    process.env.TZ = 'America/New_York'; // Node applies a TZ set at run time to every later Date
    db = await createTestDatabase();
    h = await startWriterHarness(db.url, { WRITER_BATCH_WINDOW_MS: '30', PARTITION_DAYS_AHEAD: '3' }, logger);
  });
  afterAll(async () => {
    await h?.close();
    await db?.drop();
    if (zone === undefined) delete process.env.TZ;
    else process.env.TZ = zone;
  });

  const storedAt = async (pushId: string) =>
    (
      await h.pool.query<{ at: Date }>('SELECT DISTINCT received_at AS at FROM collector_metrics WHERE push_id = $1', [pushId])
    ).rows.map((r) => r.at.toISOString());
  const futureCount = async () =>
    Number(/^writer_pushes_received_in_future_total (\d+)/m.exec(await (await fetch(`${h.url}/metrics`)).text())?.[1]);

  it('reads a received_at without an offset as UTC, whatever the writer’s time zone; one that is not ISO-8601 is poison', async () => {
    const collectorId = await insertCollector(h.pool);
    const item = pushItem(fixture, collectorId);
    const utc = item.received_at;
    const local = { ...item, received_at: utc.slice(0, -1) }; // 2026-12-07T12:00:00.000
    await h.waitForJob(await h.enqueue([local]), 'completed');
    expect(await storedAt(item.push_id)).toEqual([utc]);

    // A date JavaScript would also read in its own zone.
    const odd = { ...pushItem(fixture, collectorId), received_at: 'Mon, 07 Dec 2026 12:00:00' };
    const job = await h.enqueue([odd], { attempts: 1 });
    await h.waitForJob(job, 'failed');
    expect((await h.queue.getJob(job))!.failedReason).toContain('received_at is not an ISO-8601 time');
    expect(await storedAt(odd.push_id)).toEqual([]);
  });

  it('counts pushes received more than PARTITION_DAYS_AHEAD days ahead (writer_pushes_received_in_future_total) and warns once a minute at most', async () => {
    const collectorId = await insertCollector(h.pool);
    const day = 86_400_000;
    const before = await futureCount();
    const ahead = pushItem(fixture, collectorId, new Date(Date.now() + 10 * day));
    const soon = pushItem(fixture, collectorId, new Date(Date.now() + 2 * day));
    // In the last partition kept ahead (UTC day today + 3), which ends at that day's midnight.
    const lastDay = pushItem(fixture, collectorId, new Date((Math.floor(Date.now() / day) + 3) * day + 23 * 3600_000));
    await h.waitForJob(await h.enqueue([ahead, soon, lastDay]), 'completed');
    expect(await storedAt(ahead.push_id)).toEqual([ahead.received_at]); // stored all the same
    expect((await futureCount()) - before).toBe(1);
    const warned = () => lines.filter((l) => l.msg === FUTURE_WARNING);
    expect(warned()).toEqual([expect.objectContaining({ pushes: 1, latestReceivedAt: ahead.received_at, daysAhead: 3 })]);

    await h.waitForJob(await h.enqueue([pushItem(fixture, collectorId, new Date(Date.now() + 20 * day))]), 'completed');
    expect((await futureCount()) - before).toBe(2);
    expect(warned()).toHaveLength(1);
  });
});
