/**
 * `npm run lost-pushes`: after PostgreSQL was restored from a backup while Redis kept running, lists
 * the pushes the edges acknowledged within the replay window that PostgreSQL no longer has (one JSON
 * line each on stdout, a count on stderr). Their collectors' replays are answered duplicate and not
 * stored again; this is what the restore lost. README "Restoring Redis or PostgreSQL from a backup".
 */
import { z } from 'zod';
import { Redis } from 'ioredis';
import { configOrExit, int, loadConfig, postgresUrl, url } from '@pga/config';
import { createPool } from '@pga/db';
import { findLostPushes } from './lib/lost-pushes';

const config = configOrExit('lost-pushes', () =>
  loadConfig(
    z.object({
      DATABASE_URL: postgresUrl(),
      REDIS_URL: url('redis', 'rediss'),
      REDIS_KEY_PREFIX: z.string().min(1).default('pga'),
      IDEMPOTENCY_TTL_SECONDS: int(86_400, 60, 30 * 86_400),
      LOST_PUSHES_GRACE_SECONDS: int(300, 0, 30 * 86_400),
    }),
  ),
);
const redis = new Redis(config.REDIS_URL, { maxRetriesPerRequest: 1 });
const pool = createPool(config.DATABASE_URL, { max: 1 });
try {
  const lost = await findLostPushes({
    redis,
    pool,
    prefix: config.REDIS_KEY_PREFIX,
    ttlSeconds: config.IDEMPOTENCY_TTL_SECONDS,
    graceSeconds: config.LOST_PUSHES_GRACE_SECONDS,
  });
  for (const p of lost) process.stdout.write(`${JSON.stringify(p)}\n`);
  console.error(
    `lost-pushes: ${lost.length} acknowledged push(es) accepted more than ${config.LOST_PUSHES_GRACE_SECONDS} s ago are not in PostgreSQL's ingest ledger`,
  );
} catch (err) {
  console.error(`lost-pushes: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
} finally {
  redis.disconnect();
  await pool.end();
}
