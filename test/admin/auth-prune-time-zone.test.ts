import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool, type Pool } from '@pga/db';
import { pruneAuthTables } from '../../services/admin-api/src/auth/prune';
import { createTestDatabase, type TestDatabase } from '../helpers';

/**
 * A POSIX time zone (UTC−4, UTC−3 in summer) whose clocks went forward an hour `hoursAgo` hours ago:
 * a rule on that moment's zero-based day of the year and its standard time, so the test needs no date.
 */
function zoneSpringingForward(hoursAgo: number): string {
  const local = new Date(Date.now() - hoursAgo * 3_600_000 - 4 * 3_600_000); // as UTC−4's wall clock
  const yday = Math.floor((local.getTime() - Date.UTC(local.getUTCFullYear(), 0, 1)) / 86_400_000);
  const time = local.toISOString().slice(11, 19);
  return `<-04>4<-03>,${yday}/${time},${(yday + 180) % 365}/0`;
}

describe('admin-api: pruning login attempts in a database whose time zone changed its clocks today', () => {
  let db: TestDatabase;
  let pool: Pool;

  beforeAll(async () => {
    db = await createTestDatabase();
    const admin = createPool(db.url, { max: 1 });
    try {
      await admin.query(`ALTER DATABASE ${db.name} SET TimeZone = '${zoneSpringingForward(1)}'`);
    } finally {
      await admin.end();
    }
    pool = createPool(db.url, { max: 1 }); // its sessions start in that zone
  });
  afterAll(async () => {
    await pool?.end();
    await db?.drop();
  });

  it('keeps the failed sign-ins of the last 24 hours, which the longest LOGIN_WINDOW_MINUTES (1,440) counts', async () => {
    // A day in that zone, 23 hours long today: "now() - interval '1 day'" was 23 hours ago.
    const { rows: days } = await pool.query<{ hours: number }>(
      "SELECT extract(epoch FROM now() - (now() - interval '1 day'))::int / 3600 AS hours",
    );
    expect(days[0]!.hours).toBe(23);
    await pool.query(
      `INSERT INTO login_attempts (username, ip_address, succeeded, attempted_at)
       VALUES ('alice', '127.0.0.1', false, now() - interval '23 hours 30 minutes'),
              ('alice', '127.0.0.1', false, now() - interval '24 hours 30 minutes')`,
    );
    await pruneAuthTables(pool);
    const { rows } = await pool.query<{ age: number }>(
      'SELECT round(extract(epoch FROM now() - attempted_at) / 60)::int AS age FROM login_attempts ORDER BY 1',
    );
    expect(rows.map((r) => r.age)).toEqual([23 * 60 + 30]);
  });
});
