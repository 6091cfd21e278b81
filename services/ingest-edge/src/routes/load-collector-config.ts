import { AppError, type CollectorConfig } from '@pga/contracts';
import { UndecryptableSecretError, type SecretBox } from '@pga/crypto';
import type { Pool } from '@pga/db';
import type { Logger } from '@pga/logger';

// A disabled collector's secrets are not even read: the database refuses them, whatever the edge's
// deny state says (a forged or replayed "enabled" change on Redis must not release a password).
const CONFIG_SQL = `
  SELECT config_version, enabled, collection_interval, query_limit, type, host, port, database, username,
         CASE WHEN enabled THEN password_encrypted END AS password_encrypted, ssl_mode,
         CASE WHEN enabled THEN ssl_certificate_encrypted END AS ssl_certificate_encrypted, name, agent_hostname
    FROM collectors
   WHERE id = $1 AND deleted_at IS NULL`;

interface ConfigRow {
  config_version: number;
  enabled: boolean;
  collection_interval: number;
  query_limit: number;
  type: CollectorConfig['target']['type'];
  host: string;
  port: number;
  database: string;
  username: string;
  /** Null when the collector is disabled. */
  password_encrypted: string | null;
  ssl_mode: string | null;
  ssl_certificate_encrypted: string | null;
  name: string;
  agent_hostname: string | null;
}

export interface LoadedConfig {
  config: CollectorConfig;
  name: string;
  hostname: string | null;
}

/** Seconds a collector is told to wait before asking again for a config this edge cannot decrypt. */
export const UNDECRYPTABLE_RETRY_AFTER_SECONDS = 60;
/** One log line per collector this often at most: its agent asks again at every heartbeat. */
const LOG_EVERY_MS = 10 * 60_000;
const LOGGED_COLLECTORS_MAX = 10_000;

/**
 * Says, once per collector every 10 minutes, which collector's secret this edge cannot decrypt and
 * under which key id: ERROR, as an operator must act (list the key again in ENCRYPTION_KEY, or save
 * the password again). The collector's answer never names the reason beyond "cannot be decrypted".
 */
export function undecryptableSecretLog(logger: Logger): (collectorId: string, field: string, err: unknown) => void {
  const lastLogged = new Map<string, number>();
  return (collectorId, field, err) => {
    const now = Date.now();
    if (now - (lastLogged.get(collectorId) ?? -Infinity) < LOG_EVERY_MS) return;
    if (lastLogged.size >= LOGGED_COLLECTORS_MAX) lastLogged.clear();
    lastLogged.set(collectorId, now);
    const keyId = err instanceof UndecryptableSecretError ? (err.keyId ?? null) : null;
    logger.error(
      { collectorId, field, keyId },
      `collector ${collectorId}'s ${field} cannot be decrypted with ENCRYPTION_KEY: ` +
        (keyId === null
          ? 'it is not a value of this installation'
          : `it is encrypted under key id "${keyId}"${err instanceof Error ? ` (${err.message})` : ''}`) +
        '; its config is answered 503 until the key is listed again or the secret is saved again ' +
        '(README.md "Rotating ENCRYPTION_KEY")',
    );
  };
}

/**
 * A collector's config with its target password decrypted (AES-256-GCM, collector id as associated
 * data — the admin service's @pga/crypto box). The only place a password leaves the central, and
 * only to the collector that owns it. Undefined when the collector does not exist (or was deleted);
 * 403 `COLLECTOR_DISABLED` when it is disabled, decided by PostgreSQL's row, not only by the edge's
 * deny state (fed by Redis, which a forged "enabled" change could sway). A secret no key of the
 * ring decrypts is `UNAVAILABLE` (503 with Retry-After: the collector keeps its config and asks
 * again; never 500, nor 401, which the v3 collector retries in a tight loop) and reported through
 * `onUndecryptable`.
 */
export async function loadCollectorConfig(
  pool: Pool,
  box: SecretBox,
  collectorId: string,
  onUndecryptable: (collectorId: string, field: string, err: unknown) => void = () => undefined,
): Promise<LoadedConfig | undefined> {
  const { rows } = await pool.query<ConfigRow>(CONFIG_SQL, [collectorId]);
  const row = rows[0];
  if (!row) return undefined;
  if (!row.enabled || row.password_encrypted === null) throw new AppError('COLLECTOR_DISABLED', 'collector is disabled');
  let field = 'password';
  let password: string;
  let certificate: string | null = null;
  try {
    password = box.decrypt(row.password_encrypted, collectorId);
    field = 'ssl_certificate';
    if (row.ssl_certificate_encrypted) certificate = box.decrypt(row.ssl_certificate_encrypted, collectorId);
  } catch (err) {
    // A key missing from the ring or a tampered row: an operator must act (the log line says what).
    onUndecryptable(collectorId, field, err);
    throw new AppError(
      'UNAVAILABLE',
      "this collector's stored target secrets cannot be decrypted by the central; an operator must act (the edge's log names the collector and key)",
      { retryAfterSeconds: UNDECRYPTABLE_RETRY_AFTER_SECONDS },
    );
  }
  return {
    name: row.name,
    hostname: row.agent_hostname,
    config: {
      config_version: row.config_version,
      enabled: row.enabled,
      collection_interval: row.collection_interval,
      query_limit: row.query_limit,
      target: {
        type: row.type,
        host: row.host,
        port: row.port,
        database: row.database,
        username: row.username,
        password,
        // Not set (an enrolled collector's placeholder target, an admin who left it empty) means
        // libpq's own default; CONTRACT.md's ssl_mode is a string, and a collector may not take null.
        ssl_mode: row.ssl_mode ?? 'prefer',
        ...(certificate !== null ? { ssl_certificate: certificate } : {}),
      },
    },
  };
}
