import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, chownSync, writeFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { outputTail, readyOrStopped, spawnServer, stopChild, type ServerProcessOptions } from './child';
import { findExecutable, POSTGRES_BIN_DIRS } from './find-executable';
import { exitedAtStart } from './free-port';
import { waitFor } from './wait-for';
import { connect } from 'node:net';

export interface StartPostgresOptions extends ServerProcessOptions {
  /** Cluster directory; initialised on first use, reused afterwards. */
  dataDir: string;
  port: number;
  /** Superuser password; without it the cluster trusts loopback connections (tests). */
  password?: string;
  /** Trade durability for speed (fsync off): for tests and throw-away clusters only. */
  ephemeral?: boolean;
  /** Extra `-c name=value` settings. */
  settings?: Record<string, string>;
}

export interface PostgresHandle {
  /** Superuser URL of the `postgres` database. */
  url: string;
  port: number;
  pid: number;
  logFile: string;
  /** urlFor('mydb') → URL of another database on this cluster. */
  urlFor(database: string): string;
  /** The cluster's folder (differs from dataDir when that is unreachable for the server account). */
  dataDir: string;
  /** Fast shutdown by PID. */
  stop(): Promise<void>;
}

/** The OS account that runs PostgreSQL when we are root (postgres refuses to run as root). */
function serverAccount(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  for (const user of ['postgres', 'nobody']) {
    const res = spawnSync('id', ['-u', user], { encoding: 'utf8' });
    if (res.status === 0) {
      const uid = Number(res.stdout.trim());
      const gid = Number(spawnSync('id', ['-g', user], { encoding: 'utf8' }).stdout.trim());
      return { uid, gid };
    }
  }
  throw new Error('running as root but neither a "postgres" nor a "nobody" account exists to run PostgreSQL');
}

/**
 * As root, PostgreSQL runs as another account, which must be able to reach the data folder. When
 * the requested folder sits below a private directory (a clone under /root, a 0700 temp dir) the
 * cluster goes to /var/tmp/pga-postgres-<hash of the requested path> instead, reused the same way.
 */
function clusterDir(requested: string, account: { uid: number; gid: number } | undefined): string {
  mkdirSync(requested, { recursive: true });
  if (!account) return requested;
  if (spawnSync('test', ['-w', requested], { uid: account.uid, gid: account.gid }).status === 0) return requested;
  try {
    chownSync(requested, account.uid, account.gid);
    if (spawnSync('test', ['-w', requested], { uid: account.uid, gid: account.gid }).status === 0) return requested;
  } catch {
    // fall through to /var/tmp
  }
  const fallback = path.join('/var/tmp', `pga-postgres-${createHash('sha256').update(requested).digest('hex').slice(0, 16)}`);
  mkdirSync(fallback, { recursive: true, mode: 0o700 });
  writeFileSync(path.join(requested, 'CLUSTER_LOCATION'), `${fallback}\n`);
  return fallback;
}

export function postgresBinary(name: string): string {
  const found = findExecutable(name, POSTGRES_BIN_DIRS);
  if (!found) throw new Error(`PostgreSQL's ${name} was not found: install PostgreSQL 15+ (apt-get install -y postgresql-15)`);
  return found;
}

export async function startPostgres(options: StartPostgresOptions): Promise<PostgresHandle> {
  const account = serverAccount();
  const owner = account ? { uid: account.uid, gid: account.gid } : {};
  const dataDir = clusterDir(path.resolve(options.dataDir), account);
  const pgdata = path.join(dataDir, 'pgdata');
  const socketDir = path.join(dataDir, 'socket');
  mkdirSync(socketDir, { recursive: true });
  if (account) {
    chownSync(dataDir, account.uid, account.gid);
    chownSync(socketDir, account.uid, account.gid);
  }
  if (!existsSync(path.join(pgdata, 'PG_VERSION'))) {
    rmSync(pgdata, { recursive: true, force: true });
    const args = ['-D', pgdata, '-U', 'postgres', '-E', 'UTF8', '--locale=C', '--no-instructions'];
    if (options.password) {
      const pwfile = path.join(dataDir, '.pwfile');
      writeFileSync(pwfile, `${options.password}\n`, { mode: 0o600 });
      if (account) chownSync(pwfile, account.uid, account.gid);
      args.push('--auth=scram-sha-256', `--pwfile=${pwfile}`);
      try {
        execFileSync(postgresBinary('initdb'), args, { ...owner, stdio: 'pipe' });
      } finally {
        rmSync(pwfile, { force: true });
      }
    } else {
      args.push('--auth=trust');
      execFileSync(postgresBinary('initdb'), args, { ...owner, stdio: 'pipe' });
    }
  }
  const settings: Record<string, string> = {
    listen_addresses: '127.0.0.1',
    port: String(options.port),
    unix_socket_directories: socketDir,
    shared_preload_libraries: 'pg_stat_statements',
    max_connections: '300',
    shared_buffers: '256MB',
    ...(options.ephemeral ? { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off' } : {}),
    ...options.settings,
  };
  const args = ['-D', pgdata, ...Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`])];
  const logFile = path.join(dataDir, 'postgres.log');
  if (account) {
    writeFileSync(logFile, '', { flag: 'a' });
  }
  const child = spawnServer(postgresBinary('postgres'), args, logFile, {
    ...owner,
    cwd: dataDir,
    detached: options.ownProcessGroup === true,
  });
  let exited = false;
  // 'close': it exited and all it printed has been read (outputTail has it).
  child.once('close', () => (exited = true));
  const auth = options.password ? `postgres:${encodeURIComponent(options.password)}@` : 'postgres@';
  const urlFor = (db: string) => `postgresql://${auth}127.0.0.1:${options.port}/${db}`;
  await readyOrStopped(child, () =>
    waitFor(`PostgreSQL on 127.0.0.1:${options.port} (log: ${logFile})`, async () => {
      if (exited) throw exitedAtStart('PostgreSQL', options.port, logFile, (lines) => outputTail(child, lines));
      // Ready when the TCP port answers and this child accepts connections on its own socket: the
      // postmaster makes its socket file only after it got its TCP port (without one it stops, "could
      // not create any TCP/IP sockets"), so another PostgreSQL on the port no longer passes for it, as
      // it did through pg_isready over TCP. That one is not run too: one pg_isready per check, as before.
      return (await canConnect(options.port)) && pgIsReady(socketDir, options.port);
    }),
  );
  return {
    url: urlFor('postgres'),
    port: options.port,
    pid: child.pid!,
    logFile,
    dataDir,
    urlFor,
    stop: () => stopChild(child, 'SIGINT'),
  };
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** `host`: an address, or a folder holding the server's socket. */
function pgIsReady(host: string, port: number): boolean {
  const res = spawnSync(postgresBinary('pg_isready'), ['-h', host, '-p', String(port), '-q'], { stdio: 'ignore' });
  return res.status === 0;
}
