import type { Redis } from 'ioredis';
import type { Pool } from '@pga/db';
import type { RedisKeys } from '@pga/redis-keys';

/**
 * The installation's identity: a random id PostgreSQL creates once (migration 0044, table
 * `installation`), copied into Redis (`keys.installation`) by the admin service's repair when Redis
 * holds none. A backup of the database keeps it; a wrong DATABASE_URL, another installation on the
 * same REDIS_KEY_PREFIX, or a database re-created from nothing has another. The repair of the known
 * collectors (reconcile-deny-state.ts) refuses the ids Redis knows and PostgreSQL lacks only while
 * the two are the same: the only repair acting on what PostgreSQL *lacks* — every other one acts on
 * rows PostgreSQL holds, which a foreign database holds none of.
 */
export async function readInstallationId(pool: Pool): Promise<string | null> {
  const { rows } = await pool.query<{ id: string }>('SELECT id::text AS id FROM installation');
  return rows[0]?.id ?? null;
}

/** The operator's answer to a legitimate difference (a database rebuilt from nothing): `npm run adopt-installation`. */
export const ADOPT_COMMAND = 'npm run adopt-installation';

/**
 * Makes PostgreSQL's installation id Redis's (`npm run adopt-installation`, scripts/adopt-installation.ts):
 * from then on the admin service's repair takes this PostgreSQL for the installation's truth, and
 * refuses as deleted every collector Redis knows that it lacks (an empty `installation` table gets
 * its row first). Answers the id Redis held before
 * (null: none), the id adopted and how many known collectors PostgreSQL lacks.
 */
export async function adoptInstallation(
  pool: Pool,
  redis: Redis,
  keys: RedisKeys,
): Promise<{ previous: string | null; id: string; lacking: number }> {
  // A table left empty (a schema-only or partial restore): migration 0044 is recorded as applied and
  // will not run again, so the row is created here, as that migration does.
  await pool.query('INSERT INTO installation DEFAULT VALUES ON CONFLICT DO NOTHING');
  const id = await readInstallationId(pool);
  if (id === null) throw new Error('PostgreSQL holds no installation id and none could be created');
  const previous = await redis.get(keys.installation);
  await redis.set(keys.installation, id);
  const known = await redis.smembers(keys.knownCollectors);
  const { rows } = await pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM unnest($1::text[]) AS k(id)
      WHERE k.id ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
        AND NOT EXISTS (SELECT 1 FROM collectors c WHERE c.id = k.id::uuid)`,
    [known],
  );
  return { previous, id, lacking: rows[0]!.n };
}
