import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  findExecutable,
  freePort,
  GiveUp,
  PortInUseError,
  saysPortInUse,
  startOnFreePort,
  stopChild,
  waitFor,
} from '@pga/local-stack';

export interface PgBouncer {
  /** `databaseUrl` (a database of the server the bouncer fronts) through the bouncer. */
  url(databaseUrl: string): string;
  port: number;
  stop(): Promise<void>;
}

export interface StartPgBouncerOptions {
  /** The PostgreSQL server behind it (test cluster: trusts loopback connections). */
  target: URL;
  poolMode: 'session' | 'transaction';
  /** Extra `[pgbouncer]` settings. */
  settings?: Record<string, string>;
  /** Picks the port to try first (tests of the port handling); `freePort()` by default. */
  pickPort?: () => Promise<number>;
}

export function pgbouncerBinary(): string {
  const found = findExecutable('pgbouncer');
  if (!found) throw new Error('pgbouncer was not found: install it (apt-get install -y pgbouncer; npm test does as root)');
  return found;
}

/**
 * A PgBouncer of its own (config in a temporary folder, its own port, stopped by its PID) in front of
 * the test cluster, for every database (`* =`), trusting the users the cluster trusts.
 * `ignore_startup_parameters = options`: what a PgBouncer before 1.20 needs to accept our
 * connections at all (Debian 12 ships 1.18), as the README says. As root it runs as `postgres` or
 * `nobody` (PgBouncer refuses to run as root).
 */
export async function startPgBouncer(options: StartPgBouncerOptions): Promise<PgBouncer> {
  // Its port may be taken between freePort() and PgBouncer's listen: then again on another port.
  return startOnFreePort((port) => startPgBouncerOn(port, options), { pick: options.pickPort ?? freePort });
}

async function startPgBouncerOn(port: number, options: StartPgBouncerOptions): Promise<PgBouncer> {
  const binary = pgbouncerBinary();
  const dir = mkdtempSync(path.join(tmpdir(), 'pga-pgbouncer-'));
  chmodSync(dir, 0o755);
  const user = decodeURIComponent(options.target.username) || 'postgres';
  const authFile = path.join(dir, 'userlist.txt');
  writeFileSync(authFile, `"${user}" ""\n`, { mode: 0o644 });
  const settings: Record<string, string> = {
    listen_addr: '127.0.0.1',
    listen_port: String(port),
    unix_socket_dir: '',
    auth_type: 'trust',
    auth_file: authFile,
    pool_mode: options.poolMode,
    ignore_startup_parameters: 'options',
    max_client_conn: '200',
    default_pool_size: '20',
    ...options.settings,
  };
  const ini = [
    '[databases]',
    `* = host=${options.target.hostname} port=${options.target.port || 5432}`,
    '[pgbouncer]',
    ...Object.entries(settings).map(([k, v]) => `${k} = ${v}`),
    '',
  ].join('\n');
  const config = path.join(dir, 'pgbouncer.ini');
  writeFileSync(config, ini, { mode: 0o644 });
  const runAs =
    process.getuid?.() === 0
      ? ['postgres', 'nobody'].find((u) => spawnSync('id', ['-u', u], { stdio: 'ignore' }).status === 0)
      : undefined;
  const child = spawn(binary, [...(runAs ? ['-u', runAs] : []), config], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-4000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  let exited = false;
  child.once('exit', () => (exited = true));
  try {
    // Ready when it says it listens on its port and that port answers: a connect alone may reach
    // another process holding the port before this PgBouncer exits with "Address already in use".
    await waitFor(`PgBouncer on 127.0.0.1:${port}`, async () => {
      if (exited) {
        const said = output.trim() || '(no output)';
        throw saysPortInUse(said)
          ? new PortInUseError(port, `127.0.0.1:${port} is taken by another process: pgbouncer exited at start: ${said}`)
          : new GiveUp(`pgbouncer exited at start: ${said}`);
      }
      return output.includes(`listening on 127.0.0.1:${port}`) && canConnect(port);
    });
  } catch (err) {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    port,
    url(databaseUrl) {
      const url = new URL(databaseUrl);
      url.hostname = '127.0.0.1';
      url.port = String(port);
      return url.toString();
    },
    async stop() {
      await stopChild(child, 'SIGINT');
      rmSync(dir, { recursive: true, force: true });
    },
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
