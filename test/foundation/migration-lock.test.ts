import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { expect, it } from 'vitest';
import { createPool, runMigrations } from '@pga/db';
import { capturingLogger, createTestDatabase } from '../helpers';

const LOCK_KEY = 7_362_100_421;
const dirWith = (files: Record<string, string>) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'pga-migration-lock-'));
  for (const [f, sql] of Object.entries(files)) writeFileSync(path.join(dir, f), sql);
  return dir;
};

/**
 * An older release's session lock left held (on a server connection PgBouncer kept after its
 * client went away) made a new release's start wait for ever with nothing logged (review32 F4).
 * Now it still waits, but after lockWaitLogMs says once who holds the lock.
 */
it('waiting for the migrations lock: one warning naming the holder, then it goes on when released', async () => {
  await using db = await createTestDatabase({ migrated: false });
  const holder = new pg.Client({ connectionString: db.url, application_name: 'pga-old-release' });
  await holder.connect();
  const pool = createPool(db.url, { max: 1 });
  const { logger, lines } = capturingLogger('migrate');
  try {
    const {
      rows: [{ pid }],
    } = await holder.query('SELECT pg_backend_pid() AS pid, pg_advisory_lock($1)', [LOCK_KEY]);
    let done = false;
    const run = runMigrations(pool, dirWith({ '0001_a.sql': 'CREATE TABLE a (x int);' }), logger, { lockWaitLogMs: 300 }).then(
      (r) => ((done = true), r),
    );
    await new Promise((r) => setTimeout(r, 1500));
    expect(done).toBe(false);
    const warned = lines.filter((l) => l.level === 40);
    expect(warned).toHaveLength(1);
    expect(warned[0]!.msg).toContain(`waiting for the migrations' lock, held by pid ${pid} (pga-old-release, idle, since `);
    expect(warned[0]!.holders).toEqual([expect.objectContaining({ pid, application_name: 'pga-old-release', state: 'idle' })]);
    await holder.query('SELECT pg_advisory_unlock($1)', [LOCK_KEY]);
    expect((await run).applied).toEqual(['0001_a.sql']);
    expect(lines.filter((l) => l.level === 40)).toHaveLength(1);
  } finally {
    await holder.end();
    await pool.end();
  }
});

/**
 * A file ending its own transaction (a top-level COMMIT) released the per-transaction lock mid-file:
 * the rest of it, and its schema_migrations row, ran outside the lock (review32 F5). Now refused.
 */
it('a migration file that ends its own transaction is refused, not recorded as applied', async () => {
  await using db = await createTestDatabase({ migrated: false });
  const pool = createPool(db.url, { max: 1 });
  try {
    const dir = dirWith({
      '0001_a.sql': 'CREATE TABLE a (x int);',
      '0002_b.sql': 'CREATE TABLE b (x int); COMMIT; CREATE TABLE c (x int);',
    });
    await expect(runMigrations(pool, dir)).rejects.toThrow(
      'migration 0002_b.sql failed: it ended its own transaction (a top-level COMMIT, END or ROLLBACK), releasing the migrations lock mid-file',
    );
    const { rows } = await pool.query('SELECT version FROM schema_migrations ORDER BY version');
    expect(rows.map((r) => r.version)).toEqual(['0001_a.sql']);
    const locks = await pool.query("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory'");
    expect(locks.rows[0].n).toBe(0);
    // A $$ body's END is not one: such a file runs as before.
    await pool.query('DROP TABLE b, c');
    const fine = dirWith({ '0001_a.sql': 'CREATE TABLE a (x int);', '0002_b.sql': 'DO $$ BEGIN PERFORM 1; END $$;' });
    expect((await runMigrations(pool, fine)).applied).toEqual(['0002_b.sql']);
  } finally {
    await pool.end();
  }
});
