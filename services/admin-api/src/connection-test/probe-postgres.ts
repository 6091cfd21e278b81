import { connect as tlsConnect, TLSSocket, type ConnectionOptions } from 'node:tls';
import { isIP, type Socket } from 'node:net';
import pg from 'pg';
import { pgErrorCode } from '@pga/db';
import { StageFailure, type ConnectionTarget } from './result';
import { tlsFailure } from './tls-errors';
import type { StepRunner } from './step-runner';

const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);

/** Sends PostgreSQL's SSLRequest on the fresh socket; the server answers one byte, 'S' or 'N'. */
function askForTls(socket: Socket, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new StageFailure('tls', 'the server did not answer the TLS request in time')),
      timeoutMs,
    );
    socket.once('data', (chunk: Buffer) => {
      clearTimeout(timer);
      resolve(chunk[0] === 0x53);
    });
    socket.once('error', () => {
      clearTimeout(timer);
      reject(new StageFailure('tls', 'the server closed the connection on the TLS request: is this a PostgreSQL server?'));
    });
    socket.write(SSL_REQUEST);
  });
}

function tlsOptions(target: ConnectionTarget): ConnectionOptions {
  const verify = target.ssl_mode === 'verify-ca' || target.ssl_mode === 'verify-full';
  return {
    rejectUnauthorized: verify,
    ...(target.ssl_certificate ? { ca: target.ssl_certificate } : {}),
    ...(isIP(target.host) ? {} : { servername: target.host }),
    ...(target.ssl_mode === 'verify-ca' ? { checkServerIdentity: () => undefined } : {}),
  };
}

function handshake(socket: Socket, options: ConnectionOptions, host: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const secure = tlsConnect({ ...options, socket });
    const timer = setTimeout(() => {
      secure.destroy();
      reject(new StageFailure('tls', 'the TLS handshake did not finish in time'));
    }, timeoutMs);
    secure.once('secureConnect', () => {
      clearTimeout(timer);
      secure.destroy();
      resolve();
    });
    secure.once('error', (err) => {
      clearTimeout(timer);
      secure.destroy();
      reject(tlsFailure(err, host));
    });
  });
}

/** Login errors by SQLSTATE (never by message text). */
function loginFailure(err: unknown, target: ConnectionTarget): StageFailure {
  if (err instanceof CleartextRefused) return new StageFailure('auth', err.message);
  const code = pgErrorCode(err);
  switch (code) {
    case '28P01':
    case '28000':
      return new StageFailure(
        'auth',
        `the server refused the login of user "${target.username}" (SQLSTATE ${code}): check the user name and password, and that pg_hba.conf admits this client`,
      );
    case '3D000':
      return new StageFailure('database', `the database "${target.database}" does not exist on this server`);
    case '42501':
      return new StageFailure(
        'permission',
        `user "${target.username}" may not connect to database "${target.database}": GRANT CONNECT ON DATABASE`,
      );
    case '53300':
      return new StageFailure('auth', 'the server has no free connection slots (too many connections)');
    case '57P03':
      return new StageFailure('auth', 'the server is starting up or shutting down; try again shortly');
    default:
      return new StageFailure('auth', `the login did not complete (${code ?? 'no answer in time'})`);
  }
}

/**
 * A pg client that refuses to send a password in cleartext (AuthenticationCleartextPassword) over
 * a connection without TLS unless ssl_mode is "disable" — the collector's rule
 * (collector/src/collect/target-connection.ts GuardedClient: the agent is deployed apart from the
 * central and shares no package with it): a server that declines TLS, or refuses the login over it
 * (the plain-text retry below), and then asks for the password in clear is not handed it. MD5 and
 * SCRAM are answered as before. Overrides pg 8's handler of that message.
 */
class CleartextGuardedClient extends pg.Client {
  constructor(
    private readonly sslMode: string,
    config: pg.ClientConfig,
  ) {
    super(config);
  }

  _handleAuthCleartextPassword(msg: unknown): void {
    const connection = (this as unknown as { connection: { stream: unknown; emit(e: string, err: Error): void } }).connection;
    if (this.sslMode !== 'disable' && !(connection.stream instanceof TLSSocket)) {
      (connection.stream as { destroy(): void }).destroy();
      connection.emit('error', new CleartextRefused(this.sslMode));
      return;
    }
    (pg.Client.prototype as unknown as { _handleAuthCleartextPassword(m: unknown): void })._handleAuthCleartextPassword.call(
      this,
      msg,
    );
  }
}

class CleartextRefused extends Error {
  constructor(mode: string) {
    super(
      `the server asked for the password in cleartext over a connection without TLS; not sent (ssl_mode "${mode}"): ` +
        'turn TLS on at the server (ssl = on), have it ask for scram-sha-256 or md5, or set ssl_mode "disable" to send it in cleartext anyway',
    );
  }
}

/** TLS (per ssl_mode), login, `SELECT version()`, and whether pg_stat_statements is readable. */
export async function probePostgres(target: ConnectionTarget, socket: Socket, step: StepRunner) {
  let useTls = false;
  if (target.ssl_mode !== 'disable') {
    useTls = await step('tls', async (remaining) => {
      const accepted = await askForTls(socket, remaining());
      if (!accepted) {
        if (target.ssl_mode === 'prefer' || target.ssl_mode === 'allow') return false;
        throw new StageFailure(
          'tls',
          `the server does not accept TLS connections, but ssl_mode is "${target.ssl_mode}": enable ssl on the server or choose "prefer"`,
        );
      }
      await handshake(socket, tlsOptions(target), target.host, remaining());
      return true;
    });
  }
  socket.destroy();
  let fellBack = false;
  const login = async (tls: boolean, remaining: () => number) => {
    const c = new CleartextGuardedClient(target.ssl_mode, {
      host: target.host,
      port: target.port,
      user: target.username,
      password: target.password,
      database: target.database,
      ssl: tls ? tlsOptions(target) : false,
      connectionTimeoutMillis: Math.max(1, remaining()),
      application_name: 'pganalytics-connection-test',
    });
    c.on('error', () => undefined);
    try {
      await c.connect();
      return c;
    } catch (err) {
      await c.end().catch(() => undefined);
      throw err;
    }
  };
  const client = await step('auth', async (remaining) => {
    try {
      return await login(useTls, remaining);
    } catch (err) {
      // prefer/allow as libpq (and the collector, collector/src/collect/target-connection.ts) do
      // them: a server that takes the TLS session but refuses the login over it before
      // authentication (pg_hba.conf with only hostnossl lines for us, or hostssl … reject: SQLSTATE
      // 28000), or a failed password over TLS (28P01), is asked again without TLS. The collector
      // would connect so, and the test must not say it cannot.
      const code = pgErrorCode(err);
      const lenient = target.ssl_mode === 'prefer' || target.ssl_mode === 'allow';
      if (!(useTls && lenient && (code === '28000' || code === '28P01'))) throw loginFailure(err, target);
      try {
        const plain = await login(false, remaining);
        fellBack = true;
        return plain;
      } catch (plainErr) {
        const failure = loginFailure(plainErr, target);
        const overTls = loginFailure(err, target).message;
        if (overTls === failure.message) throw failure;
        throw new StageFailure(failure.stage, `${failure.message} (and over TLS: ${overTls})`);
      }
    }
  });
  try {
    const version = await step('query', async () => {
      const { rows } = await client.query<{ version: string }>('SELECT version() AS version');
      return rows[0]!.version;
    });
    return {
      server_version: version,
      pg_stat_statements: await checkPgStatStatements(client, target.database),
      // The TLS stage passed, but the login was made without TLS: said in the answer's message.
      ...(fellBack ? { note: 'without TLS: the server refused the login over TLS, as the collector would find too' } : {}),
    };
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function checkPgStatStatements(client: pg.Client, database: string): Promise<{ readable: boolean; message: string }> {
  const { rows } = await client.query<{ installed: boolean; all_stats: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements') AS installed,
            pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER') AS all_stats`,
  );
  if (!rows[0]?.installed)
    return {
      readable: false,
      message: `the extension is not installed in "${database}": run CREATE EXTENSION pg_stat_statements`,
    };
  try {
    await client.query('SELECT 1 FROM pg_stat_statements LIMIT 1');
  } catch (err) {
    const code = pgErrorCode(err);
    if (code === '55000')
      return {
        readable: false,
        message: 'the extension is installed but not loaded: add pg_stat_statements to shared_preload_libraries and restart',
      };
    if (code === '42501')
      return { readable: false, message: 'this user may not read pg_stat_statements: GRANT pg_read_all_stats' };
    return { readable: false, message: `reading pg_stat_statements failed (SQLSTATE ${code ?? 'unknown'})` };
  }
  return rows[0].all_stats
    ? { readable: true, message: 'readable, including other users’ statements' }
    : { readable: true, message: 'readable, but other users’ query texts are hidden: GRANT pg_read_all_stats for full data' };
}
