/**
 * `npm run adopt-installation`: makes PostgreSQL's installation id (migration 0044) Redis's
 * (`<prefix>:installation`), for when the two legitimately differ — a database rebuilt from nothing
 * for this installation. Until then the admin service's repair of the known collectors does nothing
 * but log an error (`Redis belongs to another installation than PostgreSQL …`). README "Restoring
 * Redis or PostgreSQL from a backup".
 */
import { z } from 'zod';
import { Redis } from 'ioredis';
import { configOrExit, loadConfig, postgresUrl, url } from '@pga/config';
import { createPool } from '@pga/db';
import { redisKeys } from '@pga/redis-keys';
import { adoptInstallation } from '@pga/admin-api';
import { helpOrExit } from './lib/help-option';

const USAGE = `npm run adopt-installation   (no options; configured by the environment)
  Makes PostgreSQL's installation id Redis's (<prefix>:installation): from the admin service's next
  repair (restart it) this PostgreSQL is the installation's truth, and every collector Redis knows
  (<prefix>:collectors:known) that it lacks is refused as deleted (401). Run it only when this
  PostgreSQL is the right one and its id legitimately differs (a database rebuilt from nothing);
  never for a wrong DATABASE_URL or another installation on the same REDIS_KEY_PREFIX.
  DATABASE_URL       the services' PostgreSQL (required)
  REDIS_URL          the services' Redis (required)
  REDIS_KEY_PREFIX   default pga
README.md, "Restoring Redis or PostgreSQL from a backup".`;

helpOrExit('adopt-installation', USAGE);

const config = configOrExit('adopt-installation', () =>
  loadConfig(
    z.object({
      DATABASE_URL: postgresUrl(),
      REDIS_URL: url('redis', 'rediss'),
      REDIS_KEY_PREFIX: z.string().min(1).default('pga'),
    }),
  ),
);
const redis = new Redis(config.REDIS_URL, { maxRetriesPerRequest: 1 });
const pool = createPool(config.DATABASE_URL, { max: 1 });
try {
  const keys = redisKeys(config.REDIS_KEY_PREFIX);
  const { previous, id, lacking } = await adoptInstallation(pool, redis, keys);
  console.log(
    previous === id
      ? `adopt-installation: ${keys.installation} is ${id} already (PostgreSQL's); nothing changed`
      : `adopt-installation: ${keys.installation} ${previous ?? '(none)'} -> ${id} (PostgreSQL's); ${lacking} collector(s) ` +
          "Redis knows and PostgreSQL lacks will be refused as deleted at the admin service's next repair (restart it)",
  );
} catch (err) {
  console.error(`adopt-installation: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
} finally {
  redis.disconnect();
  await pool.end();
}
