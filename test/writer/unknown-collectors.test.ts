import { expect, it } from 'vitest';
import { capturingLogger, createTestDatabase } from '../helpers';
import { fixture, insertCollector, pushItem, startWriterHarness } from './helpers';

/**
 * A writer started against the wrong database (a freshly migrated, empty one: a wrong DATABASE_URL)
 * while Redis holds the queue. collector_metrics has no foreign key (migrations/0002), so it stores
 * every push there and completes the jobs: the pushes are in a database nobody looks at, and the
 * right one never gets them. Nothing said so: the UPDATE of the collectors' state matched no row, and
 * the writer's metrics looked like a healthy drain. Now each such push is counted
 * (writer_pushes_unknown_collector_total) and said in an error line at once, then at most once a
 * minute, naming the database and the collectors.
 */
it(
  'pushes for collectors the database has no row of are counted and said (a writer on the wrong database)',
  { timeout: 60_000 },
  async () => {
    await using db = await createTestDatabase();
    const { logger, lines } = capturingLogger('writer-unknown');
    await using h = await startWriterHarness(db.url, {}, logger);
    const known = await insertCollector(h.pool);
    const unknownA = pushItem(fixture);
    const unknownB = pushItem(fixture);
    const id = await h.enqueue([unknownA, pushItem(fixture, known), unknownB]);
    await h.waitForJob(id, 'completed');

    const metric = async (name: string) =>
      Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(await h.writer.metrics.registry.metrics())?.[1] ?? 'NaN');
    expect(await metric('writer_pushes_stored_total')).toBe(3);
    expect(await metric('writer_pushes_unknown_collector_total')).toBe(2);
    const said = lines.filter((l) => l.msg.startsWith('pushes stored for collectors this database has no row of'));
    expect(said).toHaveLength(1);
    expect(said[0]).toMatchObject({ pushes: 2, level: 50 });
    expect((said[0]!.collectors as string[]).toSorted()).toEqual([unknownA.collector_id, unknownB.collector_id].toSorted());
    expect(String(said[0]!.database)).toContain(db.name);

    // Once a minute at most: the next batch is counted, not said again.
    await h.waitForJob(await h.enqueue([pushItem(fixture)]), 'completed');
    expect(await metric('writer_pushes_unknown_collector_total')).toBe(3);
    expect(lines.filter((l) => l.msg.startsWith('pushes stored for collectors this database has no row of'))).toHaveLength(1);
  },
);
