import type { Pool, PoolClient } from './pool';

/** Runs `fn` in a transaction on a checked-out client; rolls back and rethrows on error. */
export async function withTransaction<T>(pool: Pool, fn: (client: PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    client.release();
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    // A broken connection must not go back into the pool.
    client.release(err instanceof Error ? err : true);
    throw err;
  }
}
