import { readFileSync } from 'node:fs';
import pg from 'pg';
import type { Logger } from '@pga/logger';

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;

/**
 * Turns a `DATABASE_URL` into pg options. libpq's `sslmode`/`sslrootcert` are honoured so RDS works
 * with `?sslmode=verify-full&sslrootcert=/path/global-bundle.pem`; `require` encrypts without
 * verifying (libpq semantics), `disable` or no sslmode means plain TCP.
 */
export function poolConfigFromUrl(databaseUrl: string): pg.PoolConfig {
  const url = new URL(databaseUrl);
  const sslmode = url.searchParams.get('sslmode');
  const rootcert = url.searchParams.get('sslrootcert');
  url.searchParams.delete('sslmode');
  url.searchParams.delete('sslrootcert');
  const config: pg.PoolConfig = { connectionString: url.toString() };
  if (sslmode === 'verify-full' || sslmode === 'verify-ca') {
    config.ssl = {
      rejectUnauthorized: true,
      ...(rootcert ? { ca: readFileSync(rootcert, 'utf8') } : {}),
      ...(sslmode === 'verify-ca' ? { checkServerIdentity: () => undefined } : {}),
    };
  } else if (sslmode === 'require' || sslmode === 'prefer') {
    config.ssl = { rejectUnauthorized: false };
  }
  return config;
}

export interface CreatePoolOptions {
  /** Pool size; default 10. */
  max?: number;
  /** Shown in pg_stat_activity. */
  applicationName?: string;
  logger?: Logger;
  /** Per-statement timeout in ms; default none. */
  statementTimeoutMs?: number;
  /**
   * Takes an idle client's error instead of the warning `createPool` writes: a service with an
   * outage log passes it there, so a PostgreSQL restart is one outage, not a warning per pooled client.
   */
  onIdleError?: (err: Error & { code?: string }) => void;
}

export function createPool(databaseUrl: string, options: CreatePoolOptions = {}): Pool {
  const pool = new pg.Pool({
    ...poolConfigFromUrl(databaseUrl),
    max: options.max ?? 10,
    application_name: options.applicationName ?? 'pganalytics-central',
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
    // A server that vanishes without a FIN or RST (failover, partition, a NAT forgetting the flow)
    // leaves a half-open socket, and a query waiting on it would wait forever. Keepalive probes it
    // after 10 s without traffic; Node then probes every second and gives up after 10 unanswered
    // probes (net.Socket#setKeepAlive), failing the query with a socket error.
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    ...(options.statementTimeoutMs ? { statement_timeout: options.statementTimeoutMs } : {}),
  });
  // An idle client losing its connection must not crash the process (STYLE.md). pg-pool attaches
  // the client to the error (`err.client`: its connection, parameters and buffers, ~4 KB a line):
  // the line names the error only — its class (pino's `type`), message and SQLSTATE.
  pool.on('error', (err: Error & { code?: string }) => {
    const named = Object.assign(Object.create(Object.getPrototypeOf(err) as object) as Error, {
      message: err.message,
      code: err.code,
    });
    if (options.onIdleError) options.onIdleError(named);
    else options.logger?.warn({ err: named }, 'idle PostgreSQL client error');
  });
  return pool;
}
