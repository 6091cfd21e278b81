import { recordIssuedToken, type Pool } from '@pga/db';
import { createCollectorTokens } from '@pga/tokens';
import { AUDIENCE, ENCRYPTION_KEY, ISSUER, JWT_SECRET, spawnEdge, type EdgeProcess } from '../edge/harness';
import { testEnv } from '../helpers';
import { insertCollector } from './helpers';

/**
 * An edge process (one, bundled) on a test's database and Redis prefix, beside its writer, and a
 * collector of that database with a token the edge accepts. `env` adds to or overrides the edge's
 * environment.
 */
export async function edgeWithCollector(
  databaseUrl: string,
  pool: Pool,
  prefix: string,
  env: Record<string, string> = {},
): Promise<{ edge: EdgeProcess; id: string; token: string }> {
  const edge = await spawnEdge({
    DATABASE_URL: databaseUrl,
    REDIS_URL: testEnv.redisUrl,
    REDIS_KEY_PREFIX: prefix,
    JWT_SECRET,
    ENCRYPTION_KEY,
    INGEST_HOST: '127.0.0.1',
    EDGE_PROCESSES: '1',
    LOG_LEVEL: 'warn',
    ...env,
  });
  try {
    const id = await insertCollector(pool);
    const issued = await createCollectorTokens({ secret: JWT_SECRET, issuer: ISSUER, audience: AUDIENCE }).issue(id);
    await recordIssuedToken(pool, id, issued);
    return { edge, id, token: issued.token };
  } catch (err) {
    await edge.stop();
    throw err;
  }
}
