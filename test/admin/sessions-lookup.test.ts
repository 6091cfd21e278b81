import { randomBytes } from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import { ADMIN_PASSWORD, createHarness, httpLogin, restartedService, trpcHttp } from './harness';

const fakeCookie = () => `pga_session=${randomBytes(32).toString('base64url')}`;

/** Session lookups of requests: a made-up cookie repeated costs one query; lookups wait a bounded time for the pool. */
describe('session lookups', () => {
  it('asks PostgreSQL once about a made-up session id sent again and again, and never refuses a new session', async () => {
    const h = await createHarness();
    const other = restartedService(h, {});
    try {
      await h.listen();
      const otherUrl = `http://127.0.0.1:${await other.listen()}`;
      const lookups = vi.spyOn(h.service.deps.pool, 'query');
      const sessionQueries = () =>
        lookups.mock.calls.filter(([sql]) => typeof sql === 'string' && /FROM admin_sessions s JOIN users/.test(sql)).length;
      const fake = fakeCookie();
      for (let i = 0; i < 20; i++) {
        const me = await trpcHttp(h.url, 'query', 'auth.me', undefined, { cookie: fake });
        expect(me.status).toBe(200);
        expect(me.body.result.data).toEqual({ user: null });
      }
      expect(sessionQueries()).toBe(1);
      // Sessions created by a login here and in another process work at once, made-up ids or not.
      for (const url of [h.url, otherUrl]) {
        const cookie = await httpLogin(url, 'alice', ADMIN_PASSWORD);
        const me = await trpcHttp(h.url, 'query', 'auth.me', undefined, { cookie });
        expect(me.body.result.data.user.username).toBe('alice');
      }
      lookups.mockRestore();
    } finally {
      await other[Symbol.asyncDispose]();
      await h[Symbol.asyncDispose]();
    }
  });

  it('answers 503 with Retry-After when session lookups cannot get to PostgreSQL in time, instead of queueing', async () => {
    const h = await createHarness({ SESSION_LOOKUP_CONCURRENCY: '1', SESSION_LOOKUP_WAIT_MS: '300' });
    await h.listen();
    const admin = await httpLogin(h.url, 'alice', ADMIN_PASSWORD);
    // Lookups stall: the sessions table is locked.
    const locker = await h.service.deps.pool.connect();
    let locked = true;
    const unlock = async () => {
      if (!locked) return;
      locked = false;
      await locker.query('ROLLBACK');
      locker.release();
    };
    try {
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE admin_sessions IN ACCESS EXCLUSIVE MODE');
      const me = (cookie: string) =>
        trpcHttp(h.url, 'query', 'auth.me', undefined, { cookie }).catch((err: unknown) => ({ err }));
      const first = me(fakeCookie());
      await vi.waitFor(async () => {
        const { rows } = await h.service.deps.pool.query(
          "SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%admin_sessions s JOIN%'",
        );
        expect(rows[0].n).toBe(1);
      });
      const answers = await Promise.all(
        [...Array.from({ length: 5 }, () => me(fakeCookie())), me(admin)].map((p) => withTimeout(p)),
      );
      for (const answer of answers) {
        expect(answer).toMatchObject({ status: 503 });
        const { body, headers } = answer as { body: any; headers: Headers };
        expect(body.error.data.appCode).toBe('UNAVAILABLE');
        expect(body.error.message).toContain('SESSION_LOOKUP_CONCURRENCY');
        expect(headers.get('retry-after')).toBe('1');
      }
      await unlock();
      expect(await first).toMatchObject({ status: 200 });
      const after = await trpcHttp(h.url, 'query', 'auth.me', undefined, { cookie: admin });
      expect(after.body.result.data.user.username).toBe('alice');
    } finally {
      await unlock();
      await h[Symbol.asyncDispose]();
    }
  });
});

/** Fails instead of hanging when an answer does not come (the old behaviour: queued behind the lock). */
function withTimeout<T>(p: Promise<T>): Promise<T | { timedOut: true }> {
  return Promise.race([p, new Promise<{ timedOut: true }>((r) => setTimeout(() => r({ timedOut: true }), 8000).unref())]);
}
