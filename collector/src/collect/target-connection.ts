import pg from 'pg';
import type { CollectorConfig } from '@pga/contracts';

/** `application_name` of the collector's session: marks it in pg_stat_activity (and excludes it there). */
export const COLLECTOR_APPLICATION_NAME = 'pganalytics-collector';

/**
 * Comment every collector statement starts with. pg_stat_statements keeps it in the stored query
 * text (comments do not change the queryid), which is how the collector leaves its own statements
 * out of its query stats when the session cannot turn tracking off (non-superuser).
 */
export const SQL_MARKER = '/* pganalytics-collector */';

export type TargetSpec = { url: string } | { target: CollectorConfig['target'] };

export interface TargetConnection {
  /** Runs one marked statement on the single reused session. */
  query<R extends pg.QueryResultRow>(sql: string, params?: unknown[]): Promise<R[]>;
  /** server_version_num, e.g. 150004. */
  readonly serverVersionNum: number;
  /** Connected database name. */
  readonly database: string;
  /** True when `pg_stat_statements.track = none` took effect for this session. */
  readonly ownStatementsUntracked: boolean;
  readonly closed: boolean;
  close(): Promise<void>;
}

/** Raised with the stage that failed, so `--check` and heartbeats can name it. */
export class StageError extends Error {
  override readonly name = 'StageError';
  constructor(
    readonly stage: string,
    message: string,
  ) {
    super(`${stage}: ${message}`);
  }
}

function clientConfig(spec: TargetSpec): pg.ClientConfig {
  if ('url' in spec) return { connectionString: spec.url };
  const t = spec.target;
  if (t.type !== 'postgresql') throw new StageError('config', `target type "${t.type}" is not supported by this collector`);
  const mode = (t.ssl_mode ?? 'prefer').toLowerCase();
  // libpq's "prefer"/"allow" fall back to plain text; pg has no fallback, so they mean plain here.
  let ssl: pg.ClientConfig['ssl'] = false;
  if (mode === 'require') ssl = { rejectUnauthorized: false };
  else if (mode === 'verify-ca' || mode === 'verify-full')
    ssl = {
      rejectUnauthorized: true,
      ...(t.ssl_certificate ? { ca: t.ssl_certificate } : {}),
      ...(mode === 'verify-ca' ? { checkServerIdentity: () => undefined } : {}),
    };
  return { host: t.host, port: t.port, database: t.database, user: t.username, password: t.password, ssl };
}

/** A stable description of a target (no password) to tell whether a new config changes it. */
export function targetKey(spec: TargetSpec): string {
  // In memory only: a changed password must reconnect too.
  return 'url' in spec ? spec.url : JSON.stringify(spec.target);
}

/**
 * Opens the one session the collector reuses for every statement of every interval: statement
 * timeout set at connect time, own application_name, and (when allowed) its statements untracked.
 */
export async function openTargetConnection(
  spec: TargetSpec,
  { statementTimeoutMs, connectTimeoutMs = 10_000 }: { statementTimeoutMs: number; connectTimeoutMs?: number },
): Promise<TargetConnection> {
  const client = new pg.Client({
    ...clientConfig(spec),
    application_name: COLLECTOR_APPLICATION_NAME,
    statement_timeout: statementTimeoutMs,
    // Never wait long behind another session's lock: monitoring must not add to a lock queue.
    lock_timeout: Math.min(1000, statementTimeoutMs),
    connectionTimeoutMillis: connectTimeoutMs,
  });
  let closed = false;
  // An idle session can be cut by the server; the next interval then reconnects.
  client.on('error', () => (closed = true));
  client.on('end', () => (closed = true));
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => undefined);
    throw new StageError('target-connect', (err as Error).message);
  }
  const run = async <R extends pg.QueryResultRow>(sql: string, params?: unknown[]) =>
    (await client.query<R>(`${SQL_MARKER} ${sql}`, params)).rows;
  let info: { v: string; db: string; su: boolean };
  try {
    [info] = (await run<{ v: string; db: string; su: boolean }>(
      `SELECT current_setting('server_version_num') AS v, current_database() AS db,
              (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS su`,
    )) as [{ v: string; db: string; su: boolean }];
  } catch (err) {
    await client.end().catch(() => undefined);
    throw new StageError('target-query', (err as Error).message);
  }
  let untracked = false;
  if (info.su) {
    // Only superusers may change it; fails harmlessly when pg_stat_statements is not loaded.
    untracked = await client
      .query(`SET pg_stat_statements.track = 'none'`)
      .then(() => true)
      .catch(() => false);
  }
  return {
    query: run,
    serverVersionNum: Number(info.v),
    database: info.db,
    ownStatementsUntracked: untracked,
    get closed() {
      return closed;
    },
    async close() {
      closed = true;
      await client.end().catch(() => undefined);
    },
  };
}
