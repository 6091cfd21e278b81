import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool, runMigrations, MIGRATIONS_DIR, SUPERSEDED_CHECKSUMS, type Pool } from '@pga/db';
import { freePort } from '@pga/local-stack';
import { createTestDatabase, urlFor, type TestDatabase } from '../helpers';

describe('migrations on an empty database', () => {
  let db: TestDatabase;
  let pool: Pool;

  beforeAll(async () => {
    db = await createTestDatabase({ migrated: false });
    pool = createPool(db.url, { max: 4 });
  });
  afterAll(async () => {
    await pool.end();
    await db.drop();
  });

  it('apply every file, then re-apply as a no-op', async () => {
    const first = await runMigrations(pool, MIGRATIONS_DIR);
    expect(first.applied.length).toBeGreaterThanOrEqual(2);
    expect(first.applied[0]).toBe('0001_init.sql');
    const second = await runMigrations(pool, MIGRATIONS_DIR);
    expect(second.applied).toEqual([]);
    expect(second.alreadyApplied).toBe(first.applied.length);
    const { rows } = await pool.query('SELECT count(*)::int AS n FROM schema_migrations');
    expect(rows[0].n).toBe(first.applied.length);
  });

  it('0038 gives enrollments written by older edges the action collector.registered (and nothing else)', async () => {
    const other = await createTestDatabase();
    const p2 = createPool(other.url, { max: 1 });
    try {
      const id = '11111111-1111-4111-8111-111111111111';
      const insert = (action: string, details: object) =>
        p2.query(
          `INSERT INTO collector_audit_log (collector_id, entity_type, entity_id, action, details, actor_name)
           VALUES (NULL, 'collector', $1, $2, $3, 'x')`,
          [id, action, details],
        );
      await insert('registered', { via: 'enrollment' });
      await insert('registered', { via: 'something else' });
      await insert('collector.updated', { via: 'enrollment' });
      await p2.query(readFileSync(path.join(MIGRATIONS_DIR, '0038_enrollment_audit_action.sql'), 'utf8'));
      const { rows } = await p2.query(
        "SELECT action, details->>'via' AS via FROM collector_audit_log WHERE entity_id = $1 ORDER BY id",
        [id],
      );
      expect(rows).toEqual([
        { action: 'collector.registered', via: 'enrollment' },
        { action: 'registered', via: 'something else' },
        { action: 'collector.updated', via: 'enrollment' },
      ]);
    } finally {
      await p2.end();
      await other.drop();
    }
  });

  it('two concurrent runners apply each migration exactly once', async () => {
    const other = await createTestDatabase({ migrated: false });
    const p2 = createPool(other.url, { max: 4 });
    try {
      const [a, b] = await Promise.all([runMigrations(p2, MIGRATIONS_DIR), runMigrations(p2, MIGRATIONS_DIR)]);
      // Each file by one of them (they may share the work: the lock is taken per file's transaction).
      const all = readdirSync(MIGRATIONS_DIR).filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f));
      expect([...a.applied, ...b.applied].sort()).toEqual(all.sort());
      expect(a.alreadyApplied + b.alreadyApplied).toBe(all.length);
      const { rows } = await p2.query<{ version: string }>('SELECT version FROM schema_migrations ORDER BY applied_at, version');
      expect(rows.map((r) => r.version)).toEqual(all);
    } finally {
      await p2.end();
      await other.drop();
    }
  });

  it('seeds the seven groups of the design', async () => {
    const { rows } = await pool.query<{ name: string; color: string }>(
      'SELECT name, color FROM collector_groups ORDER BY display_order',
    );
    expect(rows.map((r) => r.name)).toEqual([
      'AWS RDS',
      'On-Premises',
      'GCP Cloud SQL',
      'Azure Database',
      'Development',
      'Staging',
      'Production',
    ]);
    expect(rows[0]!.color).toBe('#FF9900');
  });

  it('has the CHECK constraints of the design', async () => {
    const insert = (type: string, environment: string, status = 'pending') =>
      pool.query(
        `INSERT INTO collectors (name, type, environment, host, database, username, password_encrypted, status)
         VALUES ($1, $2, $3, 'h', 'd', 'u', 'x', $4)`,
        [`c-${Math.random()}`, type, environment, status],
      );
    await expect(insert('postgresql', 'production')).resolves.toBeDefined();
    await expect(insert('sqlite', 'production')).rejects.toMatchObject({ code: '23514', constraint: 'valid_type' });
    await expect(insert('postgresql', 'qa')).rejects.toMatchObject({ code: '23514', constraint: 'valid_environment' });
    await expect(insert('postgresql', 'staging', 'zombie')).rejects.toMatchObject({ code: '23514', constraint: 'valid_status' });
  });

  it('frees a soft-deleted collector name for reuse', async () => {
    const add = () =>
      pool.query(
        `INSERT INTO collectors (name, type, environment, host, database, username, password_encrypted)
         VALUES ('reused', 'postgresql', 'staging', 'h', 'd', 'u', 'x') RETURNING id`,
      );
    const { rows } = await add();
    await expect(add()).rejects.toMatchObject({ code: '23505', constraint: 'collectors_name_key' });
    await pool.query('UPDATE collectors SET deleted_at = now() WHERE id = $1', [rows[0].id]);
    await expect(add()).resolves.toBeDefined();
  });
});

describe('npm run migrate against a PostgreSQL it cannot use', () => {
  const root = path.resolve(import.meta.dirname, '../..');
  const migrate = (databaseUrl: string) =>
    new Promise<{ status: number | null; stderr: string; stdout: string }>((resolve) => {
      const child = spawn(path.join(root, 'node_modules/.bin/tsx'), [path.join(root, 'scripts/migrate.ts')], {
        env: { PATH: process.env.PATH, DATABASE_URL: databaseUrl },
      });
      let stderr = '';
      let stdout = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.on('close', (status) => resolve({ status, stderr, stdout }));
    });

  it('says in one line which server, database and user, and what it answered (no stack, no password)', async () => {
    const url = new URL(urlFor('no_such_database'));
    url.password = 'not-shown-anywhere';
    const missing = await migrate(url.toString());
    expect(missing.status).toBe(1);
    expect(missing.stderr.trim().split('\n')).toEqual([
      `migrate: cannot connect to PostgreSQL at ${url.hostname}:${url.port}, database no_such_database, user ${url.username}: database "no_such_database" does not exist`,
    ]);
    const closed = await freePort();
    const refused = await migrate(`postgresql://pga:not-shown-anywhere@127.0.0.1:${closed}/pganalytics`);
    expect(refused.status).toBe(1);
    expect(refused.stderr.trim().split('\n')).toEqual([
      `migrate: cannot connect to PostgreSQL at 127.0.0.1:${closed}, database pganalytics, user pga: connect ECONNREFUSED 127.0.0.1:${closed}`,
    ]);
    expect(missing.stdout + refused.stdout + missing.stderr + refused.stderr).not.toContain('not-shown-anywhere');
  }, 60_000);
});

describe('upgrading a database that applied a migration text edited after its release', () => {
  const FIXTURES = path.resolve(import.meta.dirname, '../fixtures/superseded-migrations');
  /**
   * The migration sets of the commits that had those texts: the files up to `upTo`, with these
   * earlier texts (fixture `<file>.<checksum prefix>.sql`) in place of the current ones.
   */
  const SNAPSHOTS = [
    { commit: 'afc8e78', upTo: '0035', texts: ['0035_partition_maintenance_retention.4c99a21b67e2.sql'] },
    { commit: '6dec36c', upTo: '0035', texts: ['0035_partition_maintenance_retention.e66375555240.sql'] },
    {
      commit: 'd5da938',
      upTo: '0037',
      texts: ['0036_rollup_latest_snapshot.d9adb305f87f.sql', '0037_partition_maintenance_steps.e7ef399676be.sql'],
    },
    {
      commit: '0a2cc22',
      upTo: '0037',
      texts: ['0036_rollup_latest_snapshot.0c97012a9f63.sql', '0037_partition_maintenance_steps.e7ef399676be.sql'],
    },
    { commit: '7438aff', upTo: '0037', texts: ['0037_partition_maintenance_steps.e7ef399676be.sql'] },
    { commit: 'd9b5d0f', upTo: '0040', texts: ['0040_collectors_heartbeat_hot_updates.bd24d2128f7b.sql'] },
  ];

  /**
   * What a schema is made of: functions, views, columns, indexes and constraints, by name — not the
   * daily partitions (their names follow the date the migrations ran: the template may be a day older).
   */
  async function schemaOf(pool: Pool): Promise<Record<string, string>> {
    const { rows } = await pool.query<{ k: string; v: string }>(`
      SELECT 'function ' || p.oid::regprocedure::text AS k, pg_get_functiondef(p.oid) AS v
        FROM pg_proc p WHERE p.pronamespace = current_schema()::regnamespace
      UNION ALL
      SELECT 'view ' || viewname, definition FROM pg_views WHERE schemaname = current_schema()
      UNION ALL
      SELECT 'column ' || table_name || '.' || column_name,
             concat_ws(' ', ordinal_position, data_type, is_nullable, column_default)
        FROM information_schema.columns WHERE table_schema = current_schema()
      UNION ALL
      SELECT 'index ' || indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()
      UNION ALL
      SELECT 'constraint ' || conrelid::regclass::text || '.' || conname, pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace = current_schema()::regnamespace`);
    return Object.fromEntries(rows.filter((r) => !/collector_metrics_p\d{8}/.test(r.k)).map((r) => [r.k, r.v]));
  }

  let current: Record<string, string>;
  beforeAll(async () => {
    await using fresh = await createTestDatabase();
    const pool = createPool(fresh.url, { max: 1 });
    current = await schemaOf(pool);
    await pool.end();
  });

  it.each(SNAPSHOTS)(
    'from the migrations of $commit: upgrades, and ends with the schema of a fresh database',
    async ({ upTo, texts }) => {
      await using db = await createTestDatabase({ migrated: false });
      const pool = createPool(db.url, { max: 2 });
      const dir = mkdtempSync(path.join(tmpdir(), 'pga-migrations-'));
      try {
        for (const file of readdirSync(MIGRATIONS_DIR).filter((f) => f.endsWith('.sql') && f.slice(0, 4) <= upTo))
          copyFileSync(path.join(MIGRATIONS_DIR, file), path.join(dir, file));
        for (const text of texts)
          copyFileSync(path.join(FIXTURES, text), path.join(dir, text.replace(/\.[0-9a-f]{12}\.sql$/, '.sql')));
        await runMigrations(pool, dir);
        const upgraded = await runMigrations(pool, MIGRATIONS_DIR);
        expect(upgraded.applied).toEqual(
          readdirSync(MIGRATIONS_DIR)
            .filter((f) => f.endsWith('.sql') && f.slice(0, 4) > upTo)
            .sort(),
        );
        expect(await schemaOf(pool)).toEqual(current);
        // The stored checksums stay those of the texts applied (the release that applied them still starts).
        const { rows } = await pool.query<{ version: string; checksum: string }>(
          'SELECT version, checksum FROM schema_migrations',
        );
        for (const text of texts) {
          const stored = rows.find((r) => r.version === text.replace(/\.[0-9a-f]{12}\.sql$/, '.sql'))!.checksum;
          expect(stored.slice(0, 12)).toBe(text.split('.').at(-2));
        }
        // Any other text is still refused, in words an operator can act on.
        await pool.query(`UPDATE schema_migrations SET checksum = repeat('0', 64) WHERE version = $1`, [
          texts[0]!.replace(/\.[0-9a-f]{12}\.sql$/, '.sql'),
        ]);
        await expect(runMigrations(pool, MIGRATIONS_DIR)).rejects.toThrow(
          /differs from the text this database applied .*this release cannot upgrade it/,
        );
      } finally {
        await pool.end();
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );

  it('every accepted earlier text is one of these fixtures', () => {
    const fixtures = readdirSync(FIXTURES).map((f) => {
      const [, file, prefix] = /^(.+)\.([0-9a-f]{12})\.sql$/.exec(f)!;
      const checksum = createHash('sha256')
        .update(readFileSync(path.join(FIXTURES, f)))
        .digest('hex');
      expect(checksum.slice(0, 12)).toBe(prefix);
      return `${file}.sql ${checksum}`;
    });
    const accepted = Object.entries(SUPERSEDED_CHECKSUMS).flatMap(([file, sums]) => sums.map((s) => `${file} ${s}`));
    expect(accepted.sort()).toEqual(fixtures.sort());
  });
});

describe('migrations are append-only', () => {
  it('no migration in test/fixtures/migrations.sha256 has changed; new ones come after them (add their line)', () => {
    const locked = readFileSync(path.resolve(import.meta.dirname, '../fixtures/migrations.sha256'), 'utf8')
      .trim()
      .split('\n')
      .map((line) => line.split(/\s+/) as [string, string]);
    const files = readdirSync(MIGRATIONS_DIR)
      .filter((f) => f.endsWith('.sql'))
      .sort();
    const checksum = (file: string) =>
      createHash('sha256')
        .update(readFileSync(path.join(MIGRATIONS_DIR, file)))
        .digest('hex');
    // A released migration is never edited (a database that applied it would refuse the new text): add one.
    expect(locked.map(([, file]) => `${file} ${files.includes(file) ? checksum(file) : 'missing'}`)).toEqual(
      locked.map(([sum, file]) => `${file} ${sum}`),
    );
    const newest = locked
      .map(([, file]) => file)
      .sort()
      .at(-1)!;
    expect(files.filter((f) => !locked.some(([, file]) => file === f)).every((f) => f > newest)).toBe(true);
  });
});
