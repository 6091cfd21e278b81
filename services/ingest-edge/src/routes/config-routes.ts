import { AppError, CollectorConfigSchema } from '@pga/contracts';
import type { SecretBox } from '@pga/crypto';
import type { Pool } from '@pga/db';
import type { Authenticate } from '../auth/authenticate';
import type { RateLimiter } from '../auth/rate-limiter';
import type { RequestContext } from '../http/route';
import { loadCollectorConfig } from './load-collector-config';
import { toV3Toml } from './v3-toml';

interface ConfigDeps {
  authenticate: Authenticate;
  limiter: RateLimiter;
  pool: Pool;
  box: SecretBox;
  centralApiUrl: string;
  /** Logs a secret the ring cannot decrypt (load-collector-config.ts, `undecryptableSecretLog`). */
  onUndecryptable: (collectorId: string, field: string, err: unknown) => void;
}

const NO_STORE = { 'cache-control': 'no-store' };

/** Both config endpoints: the token must match the path id, within the collector's rate limit. */
async function authorizedConfig(deps: ConfigDeps, headers: RequestContext['headers'], params: RequestContext['params']) {
  const auth = await deps.authenticate(
    { authorization: headers.authorization!, collectorId: headers['x-collector-id']! },
    params[0],
  );
  const wait = deps.limiter.take(auth.collectorId);
  if (wait > 0) throw new AppError('RATE_LIMITED', 'too many requests from this collector', { retryAfterSeconds: wait });
  return { auth, loaded: await loadCollectorConfig(deps.pool, deps.box, auth.collectorId, deps.onUndecryptable) };
}

/** `GET /api/v1/collectors/{id}/config`: JSON (CONTRACT.md). */
export function createConfigHandler(deps: ConfigDeps) {
  return async ({ reply, headers, params }: RequestContext): Promise<void> => {
    const { loaded } = await authorizedConfig(deps, headers, params);
    if (!loaded) throw new AppError('NOT_FOUND', 'collector not found');
    // The output schema is what keeps anything but these fields from leaving (STYLE.md).
    reply.json(200, CollectorConfigSchema.parse(loaded.config), NO_STORE);
  };
}

/**
 * `GET /api/v1/config/{id}` (pganalytics-v3): TOML, or 404 when there is nothing to send (no such
 * collector, or a target the v3 collector cannot monitor). A valid token of that collector never
 * gets 401 here: the v3 collector retries a 401 in a tight loop.
 */
export function createV3ConfigHandler(deps: ConfigDeps) {
  return async ({ reply, headers, params }: RequestContext): Promise<void> => {
    const { auth, loaded } = await authorizedConfig(deps, headers, params);
    if (!loaded || loaded.config.target.type !== 'postgresql')
      throw new AppError('NOT_FOUND', 'no configuration for this collector');
    reply.send(200, toV3Toml(auth.collectorId, loaded, deps.centralApiUrl), NO_STORE, 'text/plain; charset=utf-8');
  };
}
