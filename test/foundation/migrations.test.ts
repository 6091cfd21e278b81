import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool, runMigrations, MIGRATIONS_DIR, type Pool } from '@pga/db';
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
      expect(a.applied.length + b.applied.length).toBe(Math.max(a.applied.length, b.applied.length));
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
