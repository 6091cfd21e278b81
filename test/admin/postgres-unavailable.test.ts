import { expect, it, vi } from 'vitest';
import { createPool } from '@pga/db';
import { ADMIN_PASSWORD, createHarness, httpLogin, trpcHttp } from './harness';
import { form } from './fixtures';

/**
 * PostgreSQL that cannot serve a request: seen by hand with its disk really full (`could not extend
 * file …: No space left on device`, 53100), then after the PANIC that left it stopped (ECONNREFUSED).
 * The admin service answered every such request 500 INTERNAL "internal error" with an error and a
 * stack in its log — the session lookup of every signed-in request included — so the UI and any
 * client saw a bug, with no Retry-After. Now: 503 UNAVAILABLE with Retry-After and the reason (never
 * the driver's message), one warning a minute per reason in the log.
 */
it('PostgreSQL disk full or away: 503 UNAVAILABLE with Retry-After and the reason, not a 500', async () => {
  const h = await createHarness();
  const db = createPool(h.db.url, { max: 1 });
  try {
    await h.listen();
    const cookie = await httpLogin(h.url, 'alice', ADMIN_PASSWORD);
    const warn = vi.spyOn(h.service.deps.logger, 'warn');
    const error = vi.spyOn(h.service.deps.logger, 'error');

    // The disk full under a write: a trigger raises what PostgreSQL raises then.
    await db.query(`
      CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION 'could not extend file "base/16384/16575": No space left on device'
          USING ERRCODE = 'disk_full', HINT = 'Check free disk space.';
      END $$;
      CREATE TRIGGER disk_full BEFORE INSERT ON collector_groups FOR EACH ROW EXECUTE FUNCTION disk_full();`);
    for (const name of ['g1', 'g2']) {
      const res = await trpcHttp(h.url, 'mutation', 'groups.create', { name }, { cookie });
      expect([res.status, res.body.error.data.appCode, res.headers.get('retry-after')]).toEqual([503, 'UNAVAILABLE', '5']);
      // A mutation: the connection may have been lost after its COMMIT, so no blind "try again".
      expect(res.body.error.message).toBe(
        'PostgreSQL is out of disk space (disk full); the change may have been saved: check before retrying',
      );
      expect(res.text).not.toContain('No space left');
    }

    // PostgreSQL stopped (after a WAL PANIC on a full disk): the session lookup itself cannot connect.
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
    const lookup = vi.spyOn(h.service.deps.sessionLookup, 'lookup').mockRejectedValue(refused);
    const query = vi.spyOn(h.service.deps.pool, 'query').mockRejectedValue(refused);
    const me = await trpcHttp(h.url, 'query', 'collectors.list', {}, { cookie });
    expect([me.status, me.body.error.data.appCode, me.headers.get('retry-after')]).toEqual([503, 'UNAVAILABLE', '5']);
    expect(me.body.error.message).toBe('PostgreSQL is unavailable; try again shortly');
    lookup.mockRestore();
    const list = await trpcHttp(h.url, 'query', 'collectors.list', {}, { cookie });
    expect([list.status, list.body.error?.data.appCode, list.headers.get('retry-after')]).toEqual([503, 'UNAVAILABLE', '5']);
    query.mockRestore();

    // Said in the log once per reason, without a stack; no "procedure failed" error.
    expect(error.mock.calls).toEqual([]);
    const said = warn.mock.calls.map((c) => c[1]);
    expect(said).toEqual([
      'PostgreSQL is out of disk space (disk full): answering 503 UNAVAILABLE with Retry-After 5 (at most one line a minute per reason)',
      'PostgreSQL is unavailable: answering 503 UNAVAILABLE with Retry-After 5 (at most one line a minute per reason)',
    ]);
    expect(warn.mock.calls[0]![0]).toMatchObject({ sqlstate: '53100', path: 'groups.create' });

    // Space back: the write goes through.
    await db.query('DROP TRIGGER disk_full ON collector_groups');
    expect((await trpcHttp(h.url, 'mutation', 'groups.create', { name: 'g3' }, { cookie })).status).toBe(200);
  } finally {
    await db.end();
    await h[Symbol.asyncDispose]();
  }
});

/**
 * A statement timeout (57014), deadlock (40P01), serialisation failure (40001), lock timeout
 * (55P03) or out of shared memory (53200) can fail the same way every time (a slow query, a
 * lock-order bug, a limit): answered 500 with the error and its stack in the log, as before the
 * 503 mapping — not 503 "try again shortly" with one stack-less line a minute (review32 F1).
 */
it('a statement timeout, deadlock or lock timeout is not an outage: 500 with the error logged, no Retry-After', async () => {
  const h = await createHarness();
  const db = createPool(h.db.url, { max: 1 });
  try {
    await h.listen();
    const cookie = await httpLogin(h.url, 'alice', ADMIN_PASSWORD);
    const warn = vi.spyOn(h.service.deps.logger, 'warn');
    const error = vi.spyOn(h.service.deps.logger, 'error');
    const seen: unknown[] = [];
    for (const [i, errcode] of [
      'query_canceled',
      'deadlock_detected',
      'serialization_failure',
      'lock_not_available',
      'out_of_memory',
    ].entries()) {
      await db.query(`
        CREATE OR REPLACE FUNCTION fails() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          RAISE EXCEPTION 'simulated' USING ERRCODE = '${errcode}';
        END $$;
        CREATE OR REPLACE TRIGGER fails BEFORE INSERT ON collector_groups FOR EACH ROW EXECUTE FUNCTION fails();`);
      const res = await trpcHttp(h.url, 'mutation', 'groups.create', { name: `g${i}` }, { cookie });
      seen.push([errcode, res.status, res.body.error.data.appCode, res.headers.get('retry-after')]);
    }
    expect(seen).toEqual(
      ['query_canceled', 'deadlock_detected', 'serialization_failure', 'lock_not_available', 'out_of_memory'].map((c) => [
        c,
        500,
        'INTERNAL',
        null,
      ]),
    );
    expect(warn.mock.calls.map((c) => c[1])).not.toContainEqual(expect.stringContaining('503'));
    expect(error.mock.calls.map((c) => [(c[0] as { err: { code?: string } }).err.code, c[1]])).toEqual(
      ['57014', '40P01', '40001', '55P03', '53200'].map((code) => [code, 'procedure failed']),
    );
  } finally {
    await db.end();
    await h[Symbol.asyncDispose]();
  }
});

/**
 * collectors.register read the new collector back from the pool after its transaction committed: a
 * PostgreSQL lost right then answered 503 "try again shortly" for a registration that was saved, the
 * retry got 409 "already exists", and the token was shown nowhere (review32 F2). Now it reads the
 * row back inside its transaction, so nothing in PostgreSQL follows the COMMIT.
 */
it('collectors.register: no PostgreSQL step after the COMMIT can turn a saved registration into an error', async () => {
  const h = await createHarness();
  try {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
    // Every query made on the pool outside a checked-out transaction fails, as after a connection loss.
    const query = vi.spyOn(h.service.deps.pool, 'query').mockRejectedValue(refused);
    const out = await h.caller(h.admin).collectors.register(form({ name: 'saved-once' }));
    query.mockRestore();
    expect(out.collector).toMatchObject({ id: expect.any(String), name: 'saved-once' });
    expect(out.token).toEqual(expect.any(String));
    const { rows } = await h.service.deps.pool.query('SELECT name FROM collectors WHERE id = $1', [out.collector.id]);
    expect(rows).toEqual([{ name: 'saved-once' }]);
  } finally {
    await h[Symbol.asyncDispose]();
  }
});
