import { request, type IncomingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';
import { describe, expect, it, vi } from 'vitest';
import { hashSecret } from '@pga/crypto';
import { ADMIN_PASSWORD, createHarness, httpLogin, trpcHttp, type Harness } from './harness';

// ADMIN_SESSION_MAX_IN_FLIGHT and clients that go away (review34 F1, F2): a request's place is held
// until it is answered or gone *and* its session lookup and procedure have settled; a request gone
// starts neither, and a lookup still waiting for its turn leaves the queue. No place leaks.

const within = <T>(p: Promise<T>, ms: number) =>
  Promise.race([p, new Promise<'pending'>((r) => setTimeout(() => r('pending'), ms).unref())]);

/** What the admin service's HTTP server saw: requests arrived, and the client ports whose connection it closed. */
function watchServer(h: Harness) {
  let requests = 0;
  const closed = new Set<number>();
  h.service.server.on('request', () => requests++);
  h.service.server.on('connection', (socket: Socket) => {
    const port = socket.remotePort!;
    socket.once('close', () => closed.add(port));
  });
  return { requests: () => requests, closed: (port: number) => closed.has(port) };
}

type Watched = ReturnType<typeof watchServer>;

/**
 * One /trpc request on its own connection: a GET of `path`, or a POST of `body` (`headersOnly`: its
 * headers sent, its body not). `arrived()` resolves once the server has it; `abort()` once the server
 * has seen its connection close.
 */
function rawRequest(
  h: Harness,
  server: Watched,
  cookie: string,
  path: string,
  { body, headersOnly = false, accept = 'application/json' }: { body?: unknown; headersOnly?: boolean; accept?: string } = {},
) {
  const before = server.requests();
  const text = body === undefined ? undefined : JSON.stringify(body);
  const req = request({
    host: '127.0.0.1',
    port: new URL(h.url).port,
    method: text === undefined ? 'GET' : 'POST',
    path,
    headers: {
      cookie,
      origin: h.url,
      accept,
      ...(text === undefined ? {} : { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) }),
    },
  });
  let port: number | undefined;
  req.on('socket', (socket) => socket.once('connect', () => (port = socket.localPort)));
  req.on('error', () => {});
  const response = new Promise<{ status: number; headers: IncomingHttpHeaders }>((resolve) =>
    req.on('response', (res) => {
      res.resume();
      resolve({ status: res.statusCode!, headers: res.headers });
    }),
  );
  if (headersOnly) req.flushHeaders();
  else req.end(text);
  return {
    response,
    arrived: () => vi.waitFor(() => expect(server.requests()).toBeGreaterThan(before), { timeout: 10_000 }),
    abort: async () => {
      req.destroy();
      await vi.waitFor(() => expect(port !== undefined && server.closed(port)).toBe(true), { timeout: 10_000 });
    },
  };
}

async function secondAdmin(h: Harness): Promise<string> {
  await h.service.deps.pool.query(
    "INSERT INTO users (username, display_name, password_hash, role) VALUES ('bob', 'bob', $1, 'admin')",
    [await hashSecret('bob password 1234')],
  );
  return httpLogin(h.url, 'bob', 'bob password 1234');
}

/** A table locked (ACCESS EXCLUSIVE) until the returned function is called. */
async function lockTable(h: Harness, table: string) {
  const locker = await h.service.deps.pool.connect();
  await locker.query('BEGIN');
  await locker.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
  let locked = true;
  return async () => {
    if (!locked) return;
    locked = false;
    await locker.query('ROLLBACK');
    locker.release();
  };
}

const list = (h: Harness, cookie: string) => trpcHttp(h.url, 'query', 'collectors.list', {}, { cookie });
const lookups = (h: Harness) => h.service.deps.sessionLookup.stats();

describe('ADMIN_SESSION_MAX_IN_FLIGHT and clients that go away', () => {
  it('a request gone while its session lookup runs keeps its place until the lookup settles, and its procedure does not run', async () => {
    const h = await createHarness({ ADMIN_SESSION_MAX_IN_FLIGHT: '1' });
    await h.listen();
    const server = watchServer(h);
    const alice = await httpLogin(h.url, 'alice', ADMIN_PASSWORD);
    const unlock = await lockTable(h, 'admin_sessions');
    try {
      const ghost = rawRequest(h, server, alice, '/trpc/groups.create', { body: { name: 'ghost' } });
      await vi.waitFor(() => expect(lookups(h).active).toBe(1));
      await ghost.abort();
      // Its lookup still runs: the session's one place is still taken (until now: given back, and
      // the next request's lookup queued behind it).
      const next = await within(list(h, alice), 10_000);
      expect(next === 'pending' ? next : next.status).toBe(429);
      await unlock();
      // Settled: the place is free again, and the mutation of a client gone never ran.
      await vi.waitFor(async () => expect((await list(h, alice)).status).toBe(200), { timeout: 10_000 });
      const { rows } = await h.service.deps.pool.query("SELECT 1 FROM collector_groups WHERE name = 'ghost'");
      expect(rows).toHaveLength(0);
    } finally {
      await unlock();
      await h[Symbol.asyncDispose]();
    }
  }, 60_000);

  it('a request gone while waiting for a session lookup leaves the queue at once, and its place is free', async () => {
    // A waiting lookup would give up only after a minute (SESSION_LOOKUP_WAIT_MS).
    const h = await createHarness({
      ADMIN_SESSION_MAX_IN_FLIGHT: '1',
      SESSION_LOOKUP_CONCURRENCY: '1',
      SESSION_LOOKUP_WAIT_MS: '60000',
    });
    await h.listen();
    const server = watchServer(h);
    const alice = await httpLogin(h.url, 'alice', ADMIN_PASSWORD);
    const bob = await secondAdmin(h);
    const unlock = await lockTable(h, 'admin_sessions');
    try {
      const bobs = list(h, bob); // the one lookup running, stalled
      await vi.waitFor(() => expect(lookups(h)).toMatchObject({ active: 1, waiting: 0 }));
      const gone = rawRequest(h, server, alice, '/trpc/collectors.list');
      await vi.waitFor(() => expect(lookups(h).waiting).toBe(1));
      await gone.abort();
      await vi.waitFor(() => expect(lookups(h).waiting).toBe(0), { timeout: 10_000 });
      // Her place is free: her next request waits its turn (not 429).
      const next = list(h, alice);
      await vi.waitFor(() => expect(lookups(h).waiting).toBe(1));
      await unlock();
      expect((await bobs).status).toBe(200);
      expect((await next).status).toBe(200);
      expect((await list(h, alice)).status).toBe(200);
    } finally {
      await unlock();
      await h[Symbol.asyncDispose]();
    }
  }, 60_000);

  it("one session's send-and-close loop does not fill the lookups' queue: another admin's request waits its turn, not 503", async () => {
    // The default cap (16); one lookup at a time, 50 may wait, each for up to a minute; the sessions table locked.
    const h = await createHarness({ SESSION_LOOKUP_CONCURRENCY: '1', SESSION_LOOKUP_WAIT_MS: '60000' });
    await h.listen();
    const server = watchServer(h);
    const alice = await httpLogin(h.url, 'alice', ADMIN_PASSWORD);
    const bob = await secondAdmin(h);
    const unlock = await lockTable(h, 'admin_sessions');
    try {
      // 60 of alice's requests, one connection at a time, each closed once the server has it.
      for (let i = 0; i < 60; i++) {
        const r = rawRequest(h, server, alice, '/trpc/collectors.list');
        await r.arrived();
        await r.abort();
      }
      // Until now: 1 running and 50 waiting (the queue full) and bob answered 503 at once.
      await vi.waitFor(() => expect(lookups(h).waiting).toBe(0), { timeout: 10_000 });
      expect(lookups(h).active).toBeLessThanOrEqual(1);
      const bobs = list(h, bob);
      await vi.waitFor(() => expect(lookups(h).waiting).toBe(1));
      expect(await within(bobs, 0)).toBe('pending');
      await unlock();
      expect((await bobs).status).toBe(200);
      expect((await list(h, alice)).status).toBe(200);
    } finally {
      await unlock();
      await h[Symbol.asyncDispose]();
    }
  }, 120_000);

  it('a request gone while its procedure runs keeps its place until the procedure has finished', async () => {
    const h = await createHarness({ ADMIN_SESSION_MAX_IN_FLIGHT: '1' });
    await h.listen();
    const server = watchServer(h);
    const alice = await httpLogin(h.url, 'alice', ADMIN_PASSWORD);
    const unlock = await lockTable(h, 'collector_groups');
    try {
      const slow = rawRequest(h, server, alice, '/trpc/groups.create', { body: { name: 'slow' } });
      // In its procedure: its statement waits for the table's lock.
      await vi.waitFor(
        async () => {
          const { rows } = await h.service.deps.pool.query<{ n: number }>(
            "SELECT count(*)::int AS n FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE NOT l.granted AND c.relname = 'collector_groups'",
          );
          expect(rows[0]!.n).toBe(1);
        },
        { timeout: 10_000 },
      );
      await slow.abort();
      // Until now its place was given back here while its statement still waited.
      const next = await within(list(h, alice), 10_000);
      expect(next === 'pending' ? next : next.status).toBe(429);
      await unlock();
      await vi.waitFor(async () => expect((await list(h, alice)).status).toBe(200), { timeout: 10_000 });
    } finally {
      await unlock();
      await h[Symbol.asyncDispose]();
    }
  }, 60_000);

  it('a request gone before its body arrived gives its place back', async () => {
    const h = await createHarness({ ADMIN_SESSION_MAX_IN_FLIGHT: '1' });
    await h.listen();
    const server = watchServer(h);
    const alice = await httpLogin(h.url, 'alice', ADMIN_PASSWORD);
    try {
      const headersOnly = rawRequest(h, server, alice, '/trpc/groups.create', { body: { name: 'never' }, headersOnly: true });
      await headersOnly.arrived();
      expect((await list(h, alice)).status).toBe(429);
      await headersOnly.abort();
      await vi.waitFor(async () => expect((await list(h, alice)).status).toBe(200), { timeout: 10_000 });
      const { rows } = await h.service.deps.pool.query("SELECT 1 FROM collector_groups WHERE name = 'never'");
      expect(rows).toHaveLength(0);
    } finally {
      await h[Symbol.asyncDispose]();
    }
  }, 60_000);

  it("counts one session's live-feed requests until their session lookup has settled: they do not fill the lookups' queue", async () => {
    const h = await createHarness({ SESSION_LOOKUP_CONCURRENCY: '1', SESSION_LOOKUP_WAIT_MS: '60000' });
    await h.listen();
    const server = watchServer(h);
    const alice = await httpLogin(h.url, 'alice', ADMIN_PASSWORD);
    const bob = await secondAdmin(h);
    const unlock = await lockTable(h, 'admin_sessions');
    const feeds: ReturnType<typeof rawRequest>[] = [];
    try {
      // 60 of alice's live-feed requests at once: until now none was counted, and each was looked up
      // (1 running, 50 waiting, 9 answered 503) before LIVE_FEED_MAX_PER_SESSION could refuse it.
      const statuses: number[] = [];
      for (let i = 0; i < 60; i++) {
        const feed = rawRequest(h, server, alice, '/trpc/live.collectorStatus', { accept: 'text/event-stream' });
        void feed.response.then((r) => statuses.push(r.status));
        feeds.push(feed);
      }
      await vi.waitFor(() => expect(statuses).toHaveLength(44), { timeout: 20_000 });
      expect(statuses.every((s) => s === 429)).toBe(true);
      expect(lookups(h)).toMatchObject({ active: 1, waiting: 15 });
      const bobs = list(h, bob);
      await vi.waitFor(() => expect(lookups(h).waiting).toBe(16));
      expect(await within(bobs, 0)).toBe('pending'); // waiting its turn, not refused
      await unlock();
      expect((await bobs).status).toBe(200);
      // The 16 looked up have started (5 feeds open, the rest ended by the feed cap) and hold no place.
      await vi.waitFor(() => expect(statuses).toHaveLength(60), { timeout: 20_000 });
      expect(statuses.filter((s) => s === 200)).toHaveLength(16);
      expect((await list(h, alice)).status).toBe(200);
    } finally {
      for (const feed of feeds) await feed.abort();
      await unlock();
      await h[Symbol.asyncDispose]();
    }
  }, 120_000);

  it('an open live feed holds no place once its session is known, and its close leaks none', async () => {
    const h = await createHarness({ ADMIN_SESSION_MAX_IN_FLIGHT: '1' });
    await h.listen();
    const server = watchServer(h);
    const alice = await httpLogin(h.url, 'alice', ADMIN_PASSWORD);
    try {
      for (let i = 0; i < 3; i++) {
        const feed = rawRequest(h, server, alice, '/trpc/live.collectorStatus', { accept: 'text/event-stream' });
        expect((await feed.response).status).toBe(200);
        await vi.waitFor(() => expect(h.service.deps.liveFeed.hub.stats().subscribers).toBe(1));
        expect((await list(h, alice)).status).toBe(200);
        await feed.abort();
        await vi.waitFor(() => expect(h.service.deps.liveFeed.hub.stats().subscribers).toBe(0));
        expect((await list(h, alice)).status).toBe(200);
      }
    } finally {
      await h[Symbol.asyncDispose]();
    }
  }, 60_000);
});
