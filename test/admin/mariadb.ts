import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import mysql from 'mysql2/promise';
import { freePort, waitFor } from '@pga/local-stack';

export interface MariaDb extends AsyncDisposable {
  port: number;
  /** A root connection over the Unix socket, for setting up users and databases. */
  admin(): Promise<mysql.Connection>;
  stop(): Promise<void>;
}

/** Debian's mariadbd on a free loopback port with its data under `dir`; stopped by PID. */
export async function startMariaDb(dir: string): Promise<MariaDb> {
  const datadir = path.join(dir, 'data');
  const socketPath = path.join(dir, 'mysqld.sock');
  mkdirSync(dir, { recursive: true });
  const asRoot = process.getuid?.() === 0 ? ['--user=root'] : [];
  execFileSync(
    'mariadb-install-db',
    ['--no-defaults', `--datadir=${datadir}`, '--auth-root-authentication-method=normal', '--skip-test-db', ...asRoot],
    { stdio: 'ignore' },
  );
  const port = await freePort();
  const log = openSync(path.join(dir, 'mariadb.log'), 'a');
  const child = spawn(
    '/usr/sbin/mariadbd',
    [
      '--no-defaults',
      `--datadir=${datadir}`,
      `--port=${port}`,
      '--bind-address=127.0.0.1',
      `--socket=${socketPath}`,
      `--pid-file=${path.join(dir, 'mariadb.pid')}`,
      '--skip-name-resolve',
      '--skip-log-bin',
      '--innodb-buffer-pool-size=16M',
      ...asRoot,
    ],
    { stdio: ['ignore', log, log] },
  );
  const admin = () => mysql.createConnection({ socketPath, user: 'root' });
  await waitFor(`MariaDB on 127.0.0.1:${port}`, async () => {
    if (child.exitCode !== null) throw new Error(`mariadbd exited; see ${dir}/mariadb.log`);
    try {
      await (await admin()).end();
      return true;
    } catch {
      return false;
    }
  });
  const stop = async () => {
    if (child.exitCode !== null || child.pid === undefined) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    process.kill(child.pid, 'SIGTERM');
    await exited;
  };
  return { port, admin, stop, [Symbol.asyncDispose]: stop };
}
