import { AppError, type CollectorConfig } from '@pga/contracts';
import type { SecretBox } from '@pga/crypto';
import type { Pool } from '@pga/db';

const CONFIG_SQL = `
  SELECT config_version, enabled, collection_interval, query_limit, type, host, port, database, username,
         password_encrypted, ssl_mode, ssl_certificate_encrypted, name, agent_hostname
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
  password_encrypted: string;
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

/**
 * A collector's config with its target password decrypted (AES-256-GCM, collector id as associated
 * data — the admin service's @pga/crypto box). The only place a password leaves the central, and
 * only to the collector that owns it. Undefined when the collector does not exist (or was deleted).
 */
export async function loadCollectorConfig(pool: Pool, box: SecretBox, collectorId: string): Promise<LoadedConfig | undefined> {
  const { rows } = await pool.query<ConfigRow>(CONFIG_SQL, [collectorId]);
  const row = rows[0];
  if (!row) return undefined;
  let password: string;
  let certificate: string | null = null;
  try {
    password = box.decrypt(row.password_encrypted, collectorId);
    if (row.ssl_certificate_encrypted) certificate = box.decrypt(row.ssl_certificate_encrypted, collectorId);
  } catch {
    // Wrong ENCRYPTION_KEY ring or a tampered row: an operator must act; never leak the reason.
    throw new AppError('INTERNAL', 'collector secrets cannot be decrypted on this edge');
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
