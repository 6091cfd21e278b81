import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createPool, type Pool } from '@pga/db';
import { verifySecret } from '@pga/crypto';
import { ensureFirstAdmin } from '../../scripts/lib/setup';
import { createTestDatabase, type TestDatabase } from '../helpers';

/** `npm start` creates the first admin account; what it prints must be an account that can sign in. */
describe('npm start: the first admin account', () => {
  let db: TestDatabase;
  let pool: Pool;

  beforeAll(async () => {
    db = await createTestDatabase();
    pool = createPool(db.url, { max: 1 });
  });
  afterAll(async () => {
    await pool.end();
    await db.drop();
  });
  beforeEach(async () => {
    await pool.query('DELETE FROM users');
  });

  it('is created with a generated password that signs in, and only once', async () => {
    const first = await ensureFirstAdmin(db.url, 'admin');
    expect(first).toMatchObject({ username: 'admin', created: true });
    const { rows } = await pool.query('SELECT password_hash FROM users WHERE username = $1', ['admin']);
    expect(await verifySecret(first.generatedPassword!, rows[0].password_hash)).toBe(true);
    expect(await ensureFirstAdmin(db.url, 'ops')).toEqual({ username: 'admin', created: false });
  });

  it('is not claimed when the name belongs to a disabled admin: no password is shown that was never stored', async () => {
    await pool.query(
      `INSERT INTO users (username, display_name, password_hash, role, disabled) VALUES ('admin', 'Old', 'x', 'admin', true)`,
    );
    const result = await ensureFirstAdmin(db.url, 'admin');
    expect(result).toEqual({ username: 'admin', created: false, taken: true });
    const { rows } = await pool.query('SELECT display_name, disabled FROM users');
    expect(rows).toEqual([{ display_name: 'Old', disabled: true }]);
    // Another name creates the account.
    expect(await ensureFirstAdmin(db.url, 'ops', 'a-long-password-1')).toEqual({ username: 'ops', created: true });
  });
});
