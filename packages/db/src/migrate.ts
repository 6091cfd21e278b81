import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '@pga/logger';
import { checkOut } from './check-out';
import type { Pool } from './pool';

/**
 * A small forward-only runner (chosen over a library: ~60 lines, plain numbered .sql files, no
 * down-migrations to maintain). Files `NNNN_name.sql` run in order, each in its own transaction,
 * which first takes a transaction-scoped advisory lock and reads again whether the file is applied,
 * so concurrent starters (edge, writer, admin) apply each file once, in order. Transaction-scoped,
 * not a session lock held across the run: behind a pooler in transaction mode (PgBouncer
 * `pool_mode = transaction`, RDS Proxy) each transaction may run on another server connection, and a
 * session lock was taken on one and "released" on another (`pg_advisory_unlock` answering false),
 * left held on the first until that connection closed: another starter then waited for it, or took
 * it again on the same connection and migrated beside the first.
 * An applied file whose checksum changed is an error: migrations are append-only (the few texts
 * edited after a release are accepted by SUPERSEDED_CHECKSUMS).
 */
export interface MigrationResult {
  applied: string[];
  alreadyApplied: number;
}

/**
 * Earlier texts of migrations that were edited after a release had applied them, by SHA-256: a
 * database that applied one of them upgrades as if it had applied the current text. Each edit
 * changed only definitions a later migration replaces — 0035's pga_maintain_metric_partitions (by
 * 0037), 0036's live view and fold function and 0037's pga_drop_metric_partition (by 0041) — or only
 * comments (0040), so every path ends at the same schema: test/foundation/migrations.test.ts upgrades
 * from each (the texts are in test/fixtures/superseded-migrations) and compares every function and
 * view with a fresh database. The stored checksum is left as it is, so the release that applied
 * that text still starts on this database. Never edit a released migration again: add one.
 */
export const SUPERSEDED_CHECKSUMS: Readonly<Record<string, readonly string[]>> = {
  '0035_partition_maintenance_retention.sql': [
    '4c99a21b67e2e2742a56a0e9778b0bbcd549c614c13296fbc328f1b1eb651e62',
    'e66375555240bc637ed5b4122d3a58e00949bb782f4bb05850292028f7ed77fd',
  ],
  '0036_rollup_latest_snapshot.sql': [
    'd9adb305f87fb4eb7b393d94dafd05cf31fbef72345721df793094aaea23dc80',
    '0c97012a9f6376da1e0952cff6df642bd5b0465630e4c043fcd0b14659ecc858',
  ],
  '0037_partition_maintenance_steps.sql': ['e7ef399676be9aa3c85c2690a9c4a68bae7861126695ba58a28d8a422a3b2dda'],
  '0040_collectors_heartbeat_hot_updates.sql': ['bd24d2128f7b14a37e1c1146295d7e5075748eb11fe265db34f52f310d68269d'],
};

const LOCK_KEY = 7_362_100_421; // arbitrary, constant: "pga migrations"
const FILE_PATTERN = /^(\d{4})_[a-z0-9_]+\.sql$/;
/** The lock in pg_locks: a bigint key's high half in classid, its low half in objid, objsubid 1. */
const LOCK_ROW = `locktype = 'advisory' AND classid = ${Math.floor(LOCK_KEY / 2 ** 32)} AND objid = ${LOCK_KEY % 2 ** 32} AND objsubid = 1`;
/** How often a runner waiting for the lock tries it again. */
const LOCK_RETRY_MS = 200;

export interface MigrationOptions {
  /** After this long waiting for the migrations' lock, log once who holds it (and keep waiting). */
  lockWaitLogMs?: number;
}

export async function runMigrations(
  pool: Pool,
  dir: string,
  logger?: Logger,
  { lockWaitLogMs = 10_000 }: MigrationOptions = {},
): Promise<MigrationResult> {
  const files = (await readdir(dir)).filter((f) => FILE_PATTERN.test(f)).sort();
  const lease = await checkOut(pool);
  const { client } = lease;
  // One transaction under the migrations' lock; nothing of it stays on the session (see above).
  /**
   * Takes the lock, waiting for it without limit (a live older release or another starter is
   * migrating), but not silently: after `lockWaitLogMs`, one warning names the holder. A lock left
   * held by a dead holder — an older release's session lock on a server connection PgBouncer kept
   * (README "Through a connection pooler") — would otherwise hang the start with nothing logged.
   */
  const takeLock = async () => {
    const since = Date.now();
    let said = false;
    for (;;) {
      const { rows } = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_xact_lock($1) AS ok', [LOCK_KEY]);
      if (rows[0]!.ok) return;
      if (!said && Date.now() - since >= lockWaitLogMs) {
        said = true;
        const holders = await client.query<{
          pid: number;
          application_name: string | null;
          state: string | null;
          since: Date | null;
        }>(
          `SELECT l.pid, a.application_name, a.state, coalesce(a.xact_start, a.state_change) AS since
             FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.${LOCK_ROW} AND l.granted`,
        );
        logger?.warn(
          { waitedMs: Date.now() - since, holders: holders.rows },
          `waiting for the migrations' lock, held by ${
            holders.rows
              .map(
                (h) =>
                  `pid ${h.pid} (${h.application_name || 'no application_name'}, ${h.state ?? 'state unknown'}, since ${h.since?.toISOString() ?? '?'})`,
              )
              .join(', ') || 'nobody visible'
          }; still waiting. Another starter migrating: wait. Nobody migrating (an idle holder): an older release's ` +
            'session lock left on a pooled server connection: restart PgBouncer or pg_terminate_backend(pid) (README "Through a connection pooler")',
        );
      }
      await sleep(LOCK_RETRY_MS);
    }
  };
  const locked = async <T>(fn: () => Promise<T>): Promise<T> => {
    await client.query('BEGIN');
    try {
      await takeLock();
      const result = await fn();
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
  };
  const refuseChanged = (file: string, previous: string, checksum: string) => {
    if (previous !== checksum && !SUPERSEDED_CHECKSUMS[file]?.includes(previous))
      throw new Error(
        `migration ${file} differs from the text this database applied (checksum ${previous.slice(0, 12)}…, ` +
          `this release's ${checksum.slice(0, 12)}…): this release cannot upgrade it; start the release that ` +
          `applied it, or report both checksums (a released migration must never be edited: add a new one)`,
      );
  };
  try {
    const done = await locked(async () => {
      await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version text PRIMARY KEY,
      checksum text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
      const { rows } = await client.query<{ version: string; checksum: string }>(
        'SELECT version, checksum FROM schema_migrations',
      );
      return new Map(rows.map((r) => [r.version, r.checksum]));
    });
    const applied: string[] = [];
    for (const file of files) {
      const sql = await readFile(path.join(dir, file), 'utf8');
      const checksum = createHash('sha256').update(sql).digest('hex');
      const previous = done.get(file);
      if (previous !== undefined) {
        refuseChanged(file, previous, checksum);
        continue;
      }
      // Under the lock, read again: another starter may have applied it since.
      const ran = await locked(async () => {
        const { rows } = await client.query<{ checksum: string }>('SELECT checksum FROM schema_migrations WHERE version = $1', [
          file,
        ]);
        if (rows[0]) {
          refuseChanged(file, rows[0].checksum, checksum);
          return false;
        }
        try {
          await client.query(sql);
          // A file that ended the transaction itself (a top-level COMMIT, END or ROLLBACK) released the
          // lock mid-file, and the rest of it ran outside the lock: refused, not recorded as applied.
          const { rows: held } = await client.query(
            `SELECT 1 FROM pg_locks WHERE ${LOCK_ROW} AND pid = pg_backend_pid() AND granted`,
          );
          if (held.length === 0)
            throw new Error(
              'it ended its own transaction (a top-level COMMIT, END or ROLLBACK), releasing the migrations lock mid-file: ' +
                'a migration file must not; remove it (each file runs in one transaction under the lock)',
            );
          await client.query('INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)', [file, checksum]);
        } catch (err) {
          throw new Error(`migration ${file} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
        }
        return true;
      });
      if (!ran) continue;
      applied.push(file);
      logger?.info({ migration: file }, 'applied migration');
    }
    return { applied, alreadyApplied: files.length - applied.length };
  } finally {
    lease.release();
  }
}
