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
import { helpOrExit } from './lib/help-option';

const USAGE = `npm run lost-pushes   (no options; configured by the environment)
  Lists the pushes the edges acknowledged within the replay window that PostgreSQL's ingest ledger
  lacks (after PostgreSQL was restored from a backup): one JSON line each on stdout
  ({collector_id, key, push_id, records, accepted_at}), the count on stderr. Read-only.
  DATABASE_URL                the services' PostgreSQL (required)
  REDIS_URL                   the services' Redis (required)
  REDIS_KEY_PREFIX            default pga
  IDEMPOTENCY_TTL_SECONDS     the edges' replay window; default 86400
  LOST_PUSHES_GRACE_SECONDS   pushes accepted more recently are left out (their job may be on its way); default 300
README.md, "Restoring Redis or PostgreSQL from a backup".`;

// `--help` before the environment is read: without DATABASE_URL it used to answer with a
// configuration error, and with it it ran the scan.
helpOrExit('lost-pushes', USAGE);

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
