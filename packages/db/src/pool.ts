import { readFileSync } from 'node:fs';
import pg from 'pg';
import { UNTRUSTED_CERT_CODES, type Logger } from '@pga/logger';

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;

/**
 * Settings every connection starts with. DateStyle ISO: node-postgres reads dates and times only
 * in ISO; under the server's, the database's or the role's other DateStyle (RDS takes one from the
 * parameter group: 'Postgres', 'SQL', 'German') every timestamptz read back was null — the
 * collectors' last heartbeat and push, sessions' expiry, tokens' — with no error. TimeZone is left to
 * the server (the SQL is written for any zone).
 */
export const SESSION_OPTIONS = '-c DateStyle=ISO';

/**
 * Turns a `DATABASE_URL` into pg options. libpq's `sslmode`/`sslrootcert` are honoured so RDS works
 * with `?sslmode=verify-full&sslrootcert=/path/global-bundle.pem`: `verify-full` checks the chain
 * and the host name, `verify-ca` the chain; `require` encrypts without verifying, unless an
 * `sslrootcert` is given, which makes it `verify-ca` (libpq semantics); `prefer` encrypts without
 * verifying (node-postgres cannot fall back to plain TCP as libpq does: against a server without
 * TLS use `disable`); `disable`, `allow` (libpq tries plain TCP first) or no sslmode means plain
 * TCP. Without `sslrootcert`, or with libpq 16's `sslrootcert=system` (then verify-full), the chain is
 * checked against Node's CAs (and `NODE_EXTRA_CA_CERTS`).
 * The config schema (`postgresUrl`) refuses any other sslmode.
 */
export function poolConfigFromUrl(databaseUrl: string): pg.PoolConfig {
  const url = new URL(databaseUrl);
  const sslmode = url.searchParams.get('sslmode');
  const rootcert = url.searchParams.get('sslrootcert');
  // libpq's `options` (else PGOPTIONS), then SESSION_OPTIONS, which win: taken out of the URL, whose
  // parameters node-postgres would put over the config's.
  const options = url.searchParams.get('options') ?? process.env.PGOPTIONS;
  url.searchParams.delete('sslmode');
  url.searchParams.delete('sslrootcert');
  url.searchParams.delete('options');
  const config: pg.PoolConfig = {
    connectionString: url.toString(),
    options: options ? `${options} ${SESSION_OPTIONS}` : SESSION_OPTIONS,
  };
  // `sslrootcert=system` (libpq 16): Node's own CAs, verify-full.
  const system = rootcert === 'system';
  const verify = system ? 'verify-full' : sslmode === 'require' && rootcert ? 'verify-ca' : sslmode;
  if (verify === 'verify-full' || verify === 'verify-ca') {
    config.ssl = {
      rejectUnauthorized: true,
      ...(rootcert && !system ? { ca: readFileSync(rootcert, 'utf8') } : {}),
      ...(verify === 'verify-ca' ? { checkServerIdentity: () => undefined } : {}),
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
  const config = poolConfigFromUrl(databaseUrl);
  const pool = new pg.Pool({
    ...config,
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
    // In `options` with DateStyle, not node-postgres's `statement_timeout` (a startup parameter of its
    // own): PgBouncer refuses a startup parameter it does not know ("unsupported startup parameter:
    // statement_timeout", every connection of the edge), while `options` is the one the README's
    // `ignore_startup_parameters = options` lets through (the timeout then does not reach the server).
    ...(options.statementTimeoutMs
      ? { options: `${config.options} -c statement_timeout=${Math.trunc(options.statementTimeoutMs)}` }
      : {}),
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

/** Which database a `DATABASE_URL` names, for a log line (never the password): server, database, user. */
export function describeDatabase(databaseUrl: string): string {
  const url = new URL(databaseUrl);
  return `PostgreSQL at ${url.hostname}:${url.port || 5432}, database ${decodeURIComponent(url.pathname.slice(1)) || '(default)'}, user ${decodeURIComponent(url.username) || '(default)'}`;
}

/**
 * A failed first connection as one line an operator can act on: which server (never the password),
 * what it said, and for the TLS mismatches of a managed database what to change in `DATABASE_URL`.
 * Node's own messages (`unable to verify the first certificate`) say neither which server nor why.
 */
export function describeConnectFailure(databaseUrl: string, err: unknown): string {
  const url = new URL(databaseUrl);
  const where = describeDatabase(databaseUrl);
  const message = err instanceof Error ? err.message : String(err);
  const code = (err as { code?: unknown }).code;
  const sslmode = url.searchParams.get('sslmode');
  const rootcert = url.searchParams.get('sslrootcert');
  let hint = '';
  if (typeof code === 'string' && UNTRUSTED_CERT_CODES.has(code))
    hint = `: its TLS certificate is not signed by a CA this process trusts (${rootcert ? `not by sslrootcert=${rootcert}` : 'add sslrootcert=/path/ca.pem to DATABASE_URL'})`;
  else if (/no encryption/.test(message) && (!sslmode || sslmode === 'disable' || sslmode === 'allow'))
    hint =
      ': the server accepts only TLS connections here; add sslmode=verify-full&sslrootcert=/path/ca.pem (or sslmode=require) to DATABASE_URL';
  else if (/does not support SSL/.test(message)) hint = ': this server has no TLS; use sslmode=disable';
  return `cannot connect to ${where}: ${message}${hint}`;
}
