import { checkOut } from './check-out';
import type { Pool, PoolClient } from './pool';

/**
 * Runs `fn` in a transaction on a checked-out client; rolls back and rethrows on error. A connection
 * lost meanwhile (the server terminated the session, restarted, failed over) rejects, never crashes.
 */
export async function withTransaction<T>(pool: Pool, fn: (client: PoolClient) => Promise<T>): Promise<T> {
  const lease = await checkOut(pool);
  const { client } = lease;
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    lease.release();
    return result;
  } catch (err) {
    // A lost session has nothing left to roll back: the server rolled it back when it ended.
    if (!lease.lost) await client.query('ROLLBACK').catch(() => undefined);
    // A broken connection must not go back into the pool.
    lease.release(err);
    throw err;
  }
}
