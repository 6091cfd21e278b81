import type { Redis } from 'ioredis';
import type { Pool } from '@pga/db';
import { UUID } from './heartbeat-flush';
import { EXPIRED_DENIED_JTIS } from './sql';

/**
 * Removes from Redis's set of revoked jtis (`key`) those whose token expired over an hour ago by
 * PostgreSQL's clock (EXPIRED_DENIED_JTIS): otherwise the set only grows, and every edge reads all
 * of it at each reconnect. Walks the set with SSCAN, 1,000 at a time; a revocation added meanwhile
 * is not expired and stays. Returns how many it removed.
 */
export async function pruneDeniedJtis(pool: Pool, redis: Redis, key: string): Promise<number> {
  let cursor = '0';
  let removed = 0;
  do {
    const [next, members] = await redis.sscan(key, cursor, 'COUNT', 1000);
    cursor = next;
    // PostgreSQL answers in its own spelling of a uuid (lower case): remove the member as stored.
    const ids = new Map(members.filter((m) => UUID.test(m)).map((m) => [m.toLowerCase(), m]));
    if (ids.size === 0) continue;
    const { rows } = await pool.query<{ jti: string }>(EXPIRED_DENIED_JTIS, [[...ids.keys()]]);
    if (rows.length) removed += await redis.srem(key, ...rows.map((r) => ids.get(r.jti) ?? r.jti));
  } while (cursor !== '0');
  return removed;
}
