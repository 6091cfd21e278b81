import { TLSSocket } from 'node:tls';
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

/**
 * How a target is reached: pg's client config, whether a server that refuses TLS (answers the
 * SSLRequest with 'N', or ends the TLS session with an error before authentication completed) is
 * tried again without TLS (libpq's `prefer`), and whether a cleartext password may go over a
 * connection without TLS (only when the operator chose `disable`, or a URL without TLS).
 */
interface ConnectPlan {
  config: pg.ClientConfig;
  plainFallback: boolean;
  cleartextWithoutTls: boolean;
  mode: string;
}

function connectPlan(spec: TargetSpec): ConnectPlan {
  if ('url' in spec) {
    // A URL given on the command line: pg reads its sslmode (no fallback); without one, no TLS.
    const mode = URL.parse(spec.url)?.searchParams.get('sslmode') ?? 'disable';
    return { config: { connectionString: spec.url }, plainFallback: false, cleartextWithoutTls: mode === 'disable', mode };
  }
  const t = spec.target;
  if (t.type !== 'postgresql') throw new StageError('config', `target type "${t.type}" is not supported by this collector`);
  const mode = (t.ssl_mode ?? 'prefer').toLowerCase();
  let ssl: pg.ClientConfig['ssl'] = false;
  // libpq's "prefer" (its default): TLS when the server offers it, plain text when it answers the
  // SSLRequest with 'N' or refuses the TLS session before authentication completed (a pg_hba.conf
  // with only hostnossl lines for us, or hostssl … reject). "allow" is folded into it: libpq tries
  // plain text first and TLS only when the server refuses that; TLS first reaches the same servers
  // and is never less safe.
  if (mode === 'require' || mode === 'prefer' || mode === 'allow') ssl = { rejectUnauthorized: false };
  else if (mode === 'verify-ca' || mode === 'verify-full')
    ssl = {
      rejectUnauthorized: true,
      ...(t.ssl_certificate ? { ca: t.ssl_certificate } : {}),
      ...(mode === 'verify-ca' ? { checkServerIdentity: () => undefined } : {}),
    };
  return {
    config: { host: t.host, port: t.port, database: t.database, user: t.username, password: t.password, ssl },
    plainFallback: mode === 'prefer' || mode === 'allow',
    cleartextWithoutTls: mode === 'disable',
    mode,
  };
}

/** pg's answer when the server says 'N' to the SSLRequest (pg/lib/connection.js). */
const NO_SSL_MESSAGE = 'The server does not support SSL connections';

/**
 * A pg client that refuses to send a password in cleartext (AuthenticationCleartextPassword) over
 * a connection without TLS, unless allowed: a server that says 'N' to TLS (or anything on the path
 * that answers for it) and then asks for the password in clear would be handed it. MD5 and SCRAM
 * are answered as before (the password itself never crosses the wire). Overrides pg 8's handler
 * of that message (Client#_handleAuthCleartextPassword).
 */
class GuardedClient extends pg.Client {
  /** Set by the server's AuthenticationOk: an error after it is not about how we connected. */
  authenticated = false;

  constructor(
    config: pg.ClientConfig,
    private readonly guard: { cleartextWithoutTls: boolean; mode: string },
  ) {
    super(config);
    (this as unknown as { connection: NodeJS.EventEmitter }).connection.once('authenticationOk', () => {
      this.authenticated = true;
    });
  }

  _handleAuthCleartextPassword(msg: unknown): void {
    const connection = (this as unknown as { connection: { stream: unknown; emit(e: string, err: Error): void } }).connection;
    if (!this.guard.cleartextWithoutTls && !(connection.stream instanceof TLSSocket)) {
      (connection.stream as { destroy(): void }).destroy();
      connection.emit(
        'error',
        new Error(
          `the server asked for the password in cleartext over a connection without TLS; not sent (ssl_mode "${this.guard.mode}"): ` +
            'turn TLS on at the server (ssl = on), have it ask for scram-sha-256 or md5, or set ssl_mode "disable" to send it in cleartext anyway',
        ),
      );
      return;
    }
    (pg.Client.prototype as unknown as { _handleAuthCleartextPassword(m: unknown): void })._handleAuthCleartextPassword.call(
      this,
      msg,
    );
  }
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
  const plan = connectPlan(spec);
  /** Connected, or why not and whether the server refused the session before authentication completed. */
  type Attempt = { client: pg.Client } | { err: Error; refusedBeforeAuth: boolean };
  const connectWith = async (ssl: pg.ClientConfig['ssl']): Promise<Attempt> => {
    const client = new GuardedClient(
      {
        ...plan.config,
        ssl,
        application_name: COLLECTOR_APPLICATION_NAME,
        statement_timeout: statementTimeoutMs,
        // Never wait long behind another session's lock: monitoring must not add to a lock queue.
        lock_timeout: Math.min(1000, statementTimeoutMs),
        connectionTimeoutMillis: connectTimeoutMs,
      },
      plan,
    );
    try {
      await client.connect();
      return { client };
    } catch (err) {
      await client.end().catch(() => undefined);
      // An ErrorResponse from the server (pg's DatabaseError, not a socket, TLS or guard error).
      return { err: err as Error, refusedBeforeAuth: err instanceof pg.DatabaseError && !client.authenticated };
    }
  };
  let attempt = await connectWith(plan.config.ssl);
  if ('err' in attempt && plan.plainFallback && plan.config.ssl) {
    // libpq's prefer: again in plain text when the server said no to TLS ('N'), or when it refused
    // the session over TLS before authentication completed (libpq's retry on an ErrorResponse
    // then: a pg_hba.conf with only hostnossl lines for us answers "no pg_hba.conf entry … SSL
    // encryption"); not after a timeout, a refused connection or a failed TLS handshake. The
    // cleartext guard still holds on the plain-text attempt.
    const first = attempt;
    if (first.err.message === NO_SSL_MESSAGE) attempt = await connectWith(false);
    else if (first.refusedBeforeAuth) {
      attempt = await connectWith(false);
      // Both refusals, as libpq reports them: the TLS one alone would hide why plain text failed.
      if ('err' in attempt) attempt.err = new Error(`${first.err.message} (with TLS); without TLS: ${attempt.err.message}`);
    }
  }
  if ('err' in attempt) throw new StageError('target-connect', attempt.err.message);
  const { client } = attempt;
  let closed = false;
  // An idle session can be cut by the server; the next interval then reconnects.
  client.on('error', () => (closed = true));
  client.on('end', () => (closed = true));
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
