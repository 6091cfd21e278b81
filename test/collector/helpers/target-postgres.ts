import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { findExecutable, POSTGRES_BIN_DIRS, startPostgres, startOnFreePort, type PostgresHandle } from '@pga/local-stack';
import { testEnv } from '../../helpers';

const run = promisify(execFile);

export interface TargetPostgres extends AsyncDisposable {
  pg: PostgresHandle;
  url: string;
  /** Runs pgbench against the `postgres` database (already initialised at scale 1). */
  pgbench(args: string[]): Promise<void>;
  /** A superuser query on a fresh connection (the test's own view of the server). */
  sql<R extends pg.QueryResultRow = Record<string, unknown>>(text: string, params?: unknown[], database?: string): Promise<R[]>;
}

/**
 * A PostgreSQL 15 cluster of the suite's own (pg_stat_statements preloaded and created, pgbench
 * tables initialised), so its statement statistics see only this suite's traffic.
 */
export async function startTargetPostgres(): Promise<TargetPostgres> {
  const dataDir = path.join(testEnv.dataDir, `collector-target-${randomUUID().slice(0, 8)}`);
  const handle = await startOnFreePort((port) => startPostgres({ dataDir, port, ephemeral: true }));
  const sql = async <R extends pg.QueryResultRow>(text: string, params?: unknown[], database = 'postgres') => {
    const client = new pg.Client({ connectionString: handle.urlFor(database) });
    await client.connect();
    try {
      return (await client.query<R>(text, params)).rows;
    } finally {
      await client.end();
    }
  };
  const pgbenchBin = findExecutable('pgbench', POSTGRES_BIN_DIRS);
  if (!pgbenchBin) throw new Error('pgbench not found');
  const pgbench = async (args: string[]) => {
    await run(pgbenchBin, ['-h', '127.0.0.1', '-p', String(handle.port), '-U', 'postgres', ...args, 'postgres'], {
      env: { ...process.env, PGPASSWORD: '' },
    });
  };
  await sql('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
  await pgbench(['-i', '-s', '1', '-q']);
  return { pg: handle, url: handle.url, pgbench, sql, [Symbol.asyncDispose]: () => handle.stop() };
}
