import { afterAll, beforeAll, expect, it } from 'vitest';
import { createPool, type Pool } from '@pga/db';
import { STATUS_SQL } from '../../services/admin-api/src/collectors/collector-row';
import { SWEEP_INACTIVE } from '../../services/writer/src/sql';
import { createTestDatabase, type TestDatabase } from '../helpers';

let db: TestDatabase;
let pool: Pool;
beforeAll(async () => {
  db = await createTestDatabase();
  pool = createPool(db.url, { max: 1 });
});
afterAll(async () => {
  await pool?.end();
  await db?.drop();
});

/**
 * One rule for "silent": the status collectors.get and list compute when read (STATUS_SQL) is the
 * status the writer's inactivity sweep (SWEEP_INACTIVE) stores, for every collector whose stored
 * status the writer set from the same timestamps. Everything runs in one transaction, so now() is
 * one instant for both. Registered 30 s ago with a heartbeat or push stamped before that is an edge
 * whose clock runs behind PostgreSQL's (last_heartbeat and last_metric_at are the edge's clock,
 * registered_at PostgreSQL's): the sweep counts the registration as a sign of life, and until
 * 2026-12-07 collectors.get did not (it read `inactive` where the sweep kept `pending` or `active`),
 * nor did it count a sign of life exactly 2 × collection_interval old (the sweep's `>=`).
 */
it('collectors.get reads the status the inactivity sweep stores, registered_at and the 2 × interval boundary included', async () => {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const ago = (s: number | null) => (s === null ? null : `${s} seconds`);
    const registered = [3600, 30];
    const contact = [null, 600, 120, 30];
    const cases: { id: string; what: string }[] = [];
    for (const reg of registered)
      for (const hb of contact)
        for (const metric of contact)
          for (const reportedError of hb === null ? [false] : [false, true]) {
            // What the writer stores from these: error from a heartbeat reporting one, else active
            // once pushed, else pending (the sweep decides inactive).
            const status = reportedError ? 'error' : metric !== null ? 'active' : 'pending';
            const { rows } = await client.query<{ id: string }>(
              `INSERT INTO collectors (name, type, environment, host, database, username, password_encrypted,
                                       collection_interval, status, registered_at, last_heartbeat, last_metric_at)
               VALUES ($1, 'postgresql', 'production', 'db.local', 'app', 'u', 'x', 60, $2,
                       now() - $3::interval, now() - $4::interval, now() - $5::interval) RETURNING id`,
              [`rule-${cases.length}`, status, ago(reg), ago(hb), ago(metric)],
            );
            cases.push({
              id: rows[0]!.id,
              what: `registered ${reg}s ago, heartbeat ${hb ?? '-'}, push ${metric ?? '-'}, stored ${status}`,
            });
          }
    const computed = async () =>
      new Map(
        (await client.query<{ id: string; status: string }>(`SELECT c.id, ${STATUS_SQL} AS status FROM collectors c`)).rows.map(
          (r) => [r.id, r.status],
        ),
      );
    const before = await computed();
    await client.query(SWEEP_INACTIVE, [[], []]);
    const stored = new Map(
      (await client.query<{ id: string; status: string }>('SELECT id, status FROM collectors')).rows.map((r) => [r.id, r.status]),
    );
    const after = await computed();
    const disagree = cases
      .filter(({ id }) => before.get(id) !== stored.get(id) || after.get(id) !== stored.get(id))
      .map(({ id, what }) => `${what}: get ${before.get(id)}, sweep ${stored.get(id)}`);
    expect(disagree).toEqual([]);
    // The rule has teeth: each status occurs.
    expect(new Set(stored.values())).toEqual(new Set(['pending', 'active', 'error', 'inactive']));
  } finally {
    await client.query('ROLLBACK');
    client.release();
  }
});
