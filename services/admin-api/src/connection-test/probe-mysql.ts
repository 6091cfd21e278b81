import type { Socket } from 'node:net';
import mysql from 'mysql2/promise';
import { StageFailure, type ConnectionTarget } from './result';
import { tlsFailure } from './tls-errors';
import type { StepRunner } from './step-runner';

/** MySQL / MariaDB error numbers (never message text) → stage. */
function loginFailure(err: unknown, target: ConnectionTarget): StageFailure {
  const { errno, code } = err as { errno?: number; code?: string };
  if (errno === 1045 || errno === 1698)
    return new StageFailure(
      'auth',
      `the server refused the login of user "${target.username}" (error ${errno}): check the user name, password and allowed host`,
    );
  if (errno === 1049) return new StageFailure('database', `the database "${target.database}" does not exist on this server`);
  if (errno === 1044)
    return new StageFailure(
      'permission',
      `user "${target.username}" has no access to database "${target.database}" (or it does not exist): GRANT ... ON ${target.database}.*`,
    );
  if (errno === 1040) return new StageFailure('auth', 'the server has no free connection slots (too many connections)');
  if (code === 'HANDSHAKE_NO_SSL_SUPPORT')
    return new StageFailure(
      'tls',
      `the server does not accept TLS connections, but ssl_mode is "${target.ssl_mode}": enable TLS on the server or choose "prefer"`,
    );
  if (code && /^(ERR_TLS|ERR_SSL|CERT_|UNABLE_TO|SELF_SIGNED|DEPTH_ZERO)/.test(code)) return tlsFailure(err, target.host);
  return new StageFailure('auth', `the login did not complete (${code ?? errno ?? 'no answer in time'})`);
}

function sslOption(target: ConnectionTarget) {
  switch (target.ssl_mode) {
    case 'require':
      return { rejectUnauthorized: false };
    case 'verify-ca':
    case 'verify-full':
      return { rejectUnauthorized: true, ...(target.ssl_certificate ? { ca: target.ssl_certificate } : {}) };
    default:
      // prefer / allow / disable: plain connection (mysql2 has no opportunistic TLS)
      return undefined;
  }
}

/** Login (with TLS per ssl_mode) and `SELECT VERSION()` through mysql2. */
export async function probeMysql(target: ConnectionTarget, socket: Socket, step: StepRunner) {
  socket.destroy();
  const connection = await step('auth', async (remaining) => {
    const ssl = sslOption(target);
    try {
      return await mysql.createConnection({
        host: target.host,
        port: target.port,
        user: target.username,
        password: target.password,
        database: target.database,
        connectTimeout: Math.max(1, remaining()),
        ...(ssl ? { ssl } : {}),
      });
    } catch (err) {
      throw loginFailure(err, target);
    }
  });
  connection.on('error', () => undefined);
  try {
    const version = await step('query', async () => {
      const [rows] = await connection.query<mysql.RowDataPacket[]>('SELECT VERSION() AS version');
      return String(rows[0]?.version);
    });
    return { server_version: version, pg_stat_statements: null };
  } finally {
    await connection.end().catch(() => undefined);
  }
}
