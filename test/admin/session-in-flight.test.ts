import { request, type IncomingHttpHeaders } from 'node:http';
import { describe, expect, it, vi } from 'vitest';
import { hashSecret } from '@pga/crypto';
import { ADMIN_PASSWORD, createHarness, httpLogin, trpcHttp, type Harness } from './harness';

interface Answer {
  status: number;
  body: any;
  headers: IncomingHttpHeaders;
}

/** A signed-in groups.create declaring `bytes` bytes of which only the first KiB is sent: in progress until `finish()`. */
function heldPost(url: string, cookie: string, name: string, bytes = 100_000) {
  const json = JSON.stringify({ name });
  const body = Buffer.from(json + ' '.repeat(bytes - json.length));
  const req = request({
    host: '127.0.0.1',
    port: new URL(url).port,
    method: 'POST',
    path: '/trpc/groups.create',
    headers: { 'content-type': 'application/json', origin: url, 'content-length': String(body.length), cookie },
  });
  req.on('error', () => {});
  const answer = new Promise<Answer>((resolve) => {
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text), headers: res.headers }));
    });
  });
  req.write(body.subarray(0, 1024));
  return { answer, finish: () => (req.end(body.subarray(1024)), answer), abort: () => req.destroy() };
}

const within = <T>(p: Promise<T>, ms: number) =>
  Promise.race([p, new Promise<'pending'>((r) => setTimeout(() => r('pending'), ms).unref())]);

async function secondAdmin(h: Harness): Promise<string> {
  await h.service.deps.pool.query(
    "INSERT INTO users (username, display_name, password_hash, role) VALUES ('bob', 'bob', $1, 'admin')",
    [await hashSecret('bob password 1234')],
  );
  return httpLogin(h.url, 'bob', 'bob password 1234');
}

const list = (h: Harness, cookie: string) => trpcHttp(h.url, 'query', 'collectors.list', {}, { cookie });

describe('requests in progress per session (ADMIN_SESSION_MAX_IN_FLIGHT)', () => {
  it("answers one session's request past the cap 429 with Retry-After, before its lookup; its other sessions and other admins are served", async () => {
    const h = await createHarness({ ADMIN_SESSION_MAX_IN_FLIGHT: '4' });
    const held: ReturnType<typeof heldPost>[] = [];
    try {
      await h.listen();
      const alice = await httpLogin(h.url, 'alice', ADMIN_PASSWORD);
      const aliceElsewhere = await httpLogin(h.url, 'alice', ADMIN_PASSWORD);
      const bob = await secondAdmin(h);
      // Four of alice's requests in progress (bodies still arriving).
      for (let i = 0; i < 4; i++) held.push(heldPost(h.url, alice, `held-${i}`));
      for (const p of held) expect(await within(p.answer, 300)).toBe('pending');
      // A fifth of that session, a query or a mutation, is refused at once, without a session lookup.
      const queries = vi.spyOn(h.service.deps.pool, 'query');
      const refused = await list(h, alice);
      expect(refused.status).toBe(429);
      expect(refused.headers.get('retry-after')).toBe('1');
      expect(refused.body).toEqual({
        error: {
          code: 'RATE_LIMITED',
          message:
            'this session has 4 requests in progress already (ADMIN_SESSION_MAX_IN_FLIGHT); send this one when one of them has been answered',
        },
      });
      expect((await trpcHttp(h.url, 'mutation', 'groups.create', { name: 'fifth' }, { cookie: alice })).status).toBe(429);
      expect(queries).not.toHaveBeenCalled();
      queries.mockRestore();
      // Her other session, another admin, and a request without a session are served.
      expect((await list(h, aliceElsewhere)).status).toBe(200);
      expect((await list(h, bob)).status).toBe(200);
      expect((await trpcHttp(h.url, 'query', 'auth.me')).status).toBe(200);
      // One answered: room for one more.
      expect((await held.shift()!.finish()).status).toBe(200);
      expect((await list(h, alice)).status).toBe(200);
      // A held request whose client went away frees its place too.
      held.shift()!.abort();
      await vi.waitFor(async () => expect((await list(h, alice)).status).toBe(200));
      for (const p of held) expect((await p.finish()).status).toBe(200);
    } finally {
      for (const p of held) p.abort();
      await h[Symbol.asyncDispose]();
    }
  });

  it("keeps one session's flood out of the session lookups' queue: another admin's request waits its turn instead of 503", async () => {
    // One lookup at a time, 50 may wait; the sessions table locked so that lookups stall.
    const h = await createHarness({ SESSION_LOOKUP_CONCURRENCY: '1', SESSION_LOOKUP_WAIT_MS: '5000' });
    await h.listen();
    const alice = await httpLogin(h.url, 'alice', ADMIN_PASSWORD);
    const bob = await secondAdmin(h);
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
      // 60 of alice's requests at once: until now one looked up, 50 waiting, 9 answered 503, and
      // bob's answered 503 at once (the queue full). Now 16 (the default cap) get in, 44 get 429.
      const answered: number[] = [];
      const flood = Array.from({ length: 60 }, () => list(h, alice).then((a) => (answered.push(a.status), a)));
      // Every one of them arrived: 16 in the lookups (one running, 15 waiting), 44 answered 429.
      await vi.waitFor(() => expect(answered).toHaveLength(44), { timeout: 20_000 });
      expect(answered.every((s) => s === 429)).toBe(true);
      expect(h.service.deps.sessionLookup.stats()).toMatchObject({ active: 1, waiting: 15 });
      const bobs = list(h, bob);
      await new Promise((r) => setTimeout(r, 300));
      expect(await within(bobs, 10)).toBe('pending'); // waiting its turn, not refused
      await unlock();
      expect((await bobs).status).toBe(200);
      const statuses = (await Promise.all(flood)).map((a) => a.status);
      expect(statuses.filter((s) => s === 200)).toHaveLength(16);
      expect(statuses.filter((s) => s === 429)).toHaveLength(44);
    } finally {
      await unlock();
      await h[Symbol.asyncDispose]();
    }
  }, 60_000);

  it('defaults to 16 requests in progress per session, at least 1', async () => {
    const { readAdminConfig } = await import('@pga/admin-api');
    const env = {
      DATABASE_URL: 'postgresql://u@127.0.0.1:5432/d',
      REDIS_URL: 'redis://127.0.0.1:6379',
      JWT_SECRET: 'x'.repeat(40),
      ENCRYPTION_KEY: `k1:${Buffer.alloc(32, 1).toString('base64')}`,
    };
    expect(readAdminConfig(env).ADMIN_SESSION_MAX_IN_FLIGHT).toBe(16);
    expect(readAdminConfig({ ...env, ADMIN_SESSION_MAX_IN_FLIGHT: '32' }).ADMIN_SESSION_MAX_IN_FLIGHT).toBe(32);
    expect(() => readAdminConfig({ ...env, ADMIN_SESSION_MAX_IN_FLIGHT: '0' })).toThrow(/ADMIN_SESSION_MAX_IN_FLIGHT/);
  });
});
