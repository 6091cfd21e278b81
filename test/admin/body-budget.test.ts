import { request, type IncomingHttpHeaders } from 'node:http';
import { connect, type Socket } from 'node:net';
import { describe, expect, it, vi } from 'vitest';
import { hashSecret } from '@pga/crypto';
import { ADMIN_PASSWORD, createHarness, httpLogin, trpcHttp, type Harness } from './harness';

const KiB = 1024;
const MiB = 1024 * KiB;

interface Answer {
  status: number;
  body: any;
  headers: IncomingHttpHeaders;
  /** Milliseconds from the request's start to its answer. */
  ms: number;
}

/**
 * A POST to /trpc/`path` of `body` (its Content-Length declared), of which only the first `first`
 * bytes are written until `finish()` writes the rest. `answer` settles with whatever comes first.
 */
function slowPost(url: string, path: string, body: string, { first, cookie }: { first: number; cookie: string }) {
  const { port } = new URL(url);
  const bytes = Buffer.from(body);
  const started = Date.now();
  const req = request({
    host: '127.0.0.1',
    port,
    method: 'POST',
    path: `/trpc/${path}`,
    headers: { 'content-type': 'application/json', origin: url, 'content-length': String(bytes.length), cookie },
  });
  const answer = new Promise<Answer>((resolve, reject) => {
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () =>
        resolve({ status: res.statusCode!, body: JSON.parse(text), headers: res.headers, ms: Date.now() - started }),
      );
    });
    req.on('error', reject);
  });
  req.write(bytes.subarray(0, first));
  return {
    answer,
    finish() {
      req.end(bytes.subarray(first));
      return answer;
    },
    abort: () => req.destroy(),
  };
}

/** Resolves with `p`'s value, or 'pending' when it has not settled within `ms`. */
const within = <T>(p: Promise<T>, ms: number) =>
  Promise.race([p, new Promise<'pending'>((r) => setTimeout(() => r('pending'), ms).unref())]);

/** A groups.create body of about `bytes` bytes (JSON padded with spaces). */
const groupBody = (name: string, bytes: number) => {
  const json = JSON.stringify({ name });
  return json + ' '.repeat(bytes - json.length);
};

/** Another admin than the harness's alice, signed in over HTTP: their cookie. */
async function secondAdmin(h: Harness): Promise<string> {
  await h.service.deps.pool.query(
    "INSERT INTO users (username, display_name, password_hash, role) VALUES ('bob', 'bob', $1, 'admin')",
    [await hashSecret('bob password 1234')],
  );
  return httpLogin(h.url, 'bob', 'bob password 1234');
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The head of a raw POST to /trpc/`path` declaring `length` bytes (review33's repros). */
const rawHead = (url: string, path: string, length: number, cookie?: string) => {
  const { host } = new URL(url);
  const auth = cookie ? `Cookie: ${cookie}\r\n` : '';
  return `POST /trpc/${path} HTTP/1.1\r\nHost: ${host}\r\nOrigin: ${url}\r\n${auth}Content-Type: application/json\r\nContent-Length: ${length}\r\n\r\n`;
};

/** A raw connection to the service, its errors ignored (the service may close it). */
function rawSocket(url: string): Socket {
  const s = connect(Number(new URL(url).port), '127.0.0.1');
  s.on('error', () => {});
  return s;
}

/**
 * One connection: a request answered slowly (GET /readyz asks PostgreSQL and Redis), a POST
 * pipelined behind it declaring `length` bytes and sending none, then the connection reset. The
 * POST's response waits in Node's queue with no socket and never emits 'close' (review33 F1).
 */
async function pipelinedThenGone(url: string, path: string, length: number, cookie: string) {
  const s = rawSocket(url);
  await new Promise((r) => s.once('connect', r));
  s.write(`GET /readyz HTTP/1.1\r\nHost: ${new URL(url).host}\r\n\r\n` + rawHead(url, path, length, cookie));
  await sleep(5);
  s.destroy();
}

/** A POST of `body` written in `pieces` parts `everyMs` apart (a slow but steady link); with `stallAfter`, nothing after that many parts. */
function trickle(
  url: string,
  path: string,
  body: string,
  opts: { pieces: number; everyMs: number; cookie: string; stallAfter?: number },
) {
  const bytes = Buffer.from(body);
  const started = Date.now();
  const req = request({
    host: '127.0.0.1',
    port: new URL(url).port,
    method: 'POST',
    path: `/trpc/${path}`,
    headers: { 'content-type': 'application/json', origin: url, 'content-length': String(bytes.length), cookie: opts.cookie },
  });
  req.on('error', () => {});
  const answer = new Promise<Answer>((resolve) => {
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () =>
        resolve({ status: res.statusCode!, body: JSON.parse(text), headers: res.headers, ms: Date.now() - started }),
      );
    });
  });
  const size = Math.ceil(bytes.length / opts.pieces);
  let sent = 0;
  void (async () => {
    for (let i = 0; i < opts.pieces; i++) {
      if (opts.stallAfter !== undefined && i === opts.stallAfter) return; // and nothing more
      if (i > 0) await sleep(opts.everyMs);
      if (req.destroyed) return;
      const piece = bytes.subarray(i * size, (i + 1) * size);
      sent += piece.length;
      if (sent >= bytes.length) req.end(piece);
      else req.write(piece);
    }
  })();
  return { answer, abort: () => req.destroy() };
}

describe('request bodies in flight share one budget (ADMIN_BODY_BUDGET_BYTES) and a receive timeout (ADMIN_BODY_TIMEOUT_MS)', () => {
  it('answers 503 with Retry-After before reading a body that would pass the budget, and cuts none it took', async () => {
    // One user fills the whole budget here: their share is all of it.
    const h = await createHarness({
      ADMIN_MAX_BODY_BYTES: String(2 * MiB),
      ADMIN_BODY_BUDGET_BYTES: String(3 * MiB),
      ADMIN_BODY_BUDGET_PER_USER_BYTES: String(3 * MiB),
    });
    const slow: ReturnType<typeof slowPost>[] = [];
    try {
      await h.listen();
      const cookie = await httpLogin(h.url, 'alice', ADMIN_PASSWORD);
      // Three slow 1,000,000-byte uploads: 3,000,000 of the 3 MiB (3,145,728) held, nothing answered yet.
      for (const name of ['slow-1', 'slow-2', 'slow-3'])
        slow.push(slowPost(h.url, 'groups.create', groupBody(name, 1_000_000), { first: 64 * KiB, cookie }));
      for (const s of slow) expect(await within(s.answer, 500)).toBe('pending');
      // A fourth is refused at once, before its body: what it would take, what is held, the setting.
      const fourth = slowPost(h.url, 'groups.create', groupBody('fourth', 1_000_000), { first: 0, cookie });
      const refused = await within(fourth.answer, 5000);
      expect(refused).not.toBe('pending');
      const { status, body, headers } = refused as Answer;
      expect(status).toBe(503);
      expect(headers['retry-after']).toBe('2');
      expect(body.error.code).toBe('UNAVAILABLE');
      expect(body.error.message).toBe(
        'the service holds 3000000 bytes of request bodies already; a 1000000-byte body would pass ADMIN_BODY_BUDGET_BYTES (3145728): send it again shortly',
      );
      fourth.abort();
      // A small one still fits (145,728 bytes free), and a body-less GET needs none.
      const small = slowPost(h.url, 'groups.create', groupBody('small', 100_000), { first: 0, cookie });
      expect((await small.finish()).status).toBe(200);
      // The three taken are read to their end and answered.
      for (const s of slow) expect((await s.finish()).status).toBe(200);
      const { rows } = await h.service.deps.pool.query(
        "SELECT count(*)::int AS n FROM collector_groups WHERE name LIKE 'slow-%'",
      );
      expect(rows[0].n).toBe(3);
      // Their bytes are free again: the fourth goes through now.
      const again = slowPost(h.url, 'groups.create', groupBody('fourth', 1_000_000), { first: 0, cookie });
      expect((await again.finish()).status).toBe(200);
    } finally {
      for (const s of slow) s.abort();
      await h[Symbol.asyncDispose]();
    }
  });

  it("holds one user's bodies to ADMIN_BODY_BUDGET_PER_USER_BYTES: their next one gets 429 with Retry-After, another admin's still fits", async () => {
    const h = await createHarness({
      ADMIN_MAX_BODY_BYTES: String(2 * MiB),
      ADMIN_BODY_BUDGET_BYTES: String(4 * MiB),
      ADMIN_BODY_BUDGET_PER_USER_BYTES: String(2 * MiB),
    });
    const slow: ReturnType<typeof slowPost>[] = [];
    try {
      await h.listen();
      const alice = await httpLogin(h.url, 'alice', ADMIN_PASSWORD);
      const aliceAgain = await httpLogin(h.url, 'alice', ADMIN_PASSWORD); // a second session of hers
      const bob = await secondAdmin(h);
      // Alice's two slow 1,000,000-byte uploads: 2,000,000 of her 2 MiB (2,097,152) held, of the 4 MiB budget.
      for (const name of ['alice-1', 'alice-2'])
        slow.push(slowPost(h.url, 'groups.create', groupBody(name, 1_000_000), { first: 64 * KiB, cookie: alice }));
      for (const s of slow) expect(await within(s.answer, 500)).toBe('pending');
      // Her third, from either of her sessions, is refused before its body: 429, what she holds, the setting.
      for (const cookie of [alice, aliceAgain]) {
        const third = slowPost(h.url, 'groups.create', groupBody('alice-3', 1_000_000), { first: 0, cookie });
        const refused = await within(third.answer, 5000);
        expect(refused).not.toBe('pending');
        const { status, body, headers } = refused as Answer;
        expect(status).toBe(429);
        expect(headers['retry-after']).toBe('2');
        expect(body.error).toEqual({
          code: 'RATE_LIMITED',
          message:
            "your requests hold 2000000 bytes of request bodies already; a 1000000-byte body would pass ADMIN_BODY_BUDGET_PER_USER_BYTES (2097152), one user's share of the service's request-body budget: send it when one of them has been answered",
        });
        third.abort();
      }
      // Another admin's body of the same size still fits the budget (it got 503 when one user could hold all of it) …
      const bobs = slowPost(h.url, 'groups.create', groupBody('bob-1', 1_000_000), { first: 64 * KiB, cookie: bob });
      slow.push(bobs);
      expect(await within(bobs.answer, 500)).toBe('pending');
      expect((await bobs.finish()).status).toBe(200);
      // … and her own small bodies take no share.
      expect((await trpcHttp(h.url, 'mutation', 'groups.create', { name: 'alice-small' }, { cookie: alice })).status).toBe(200);
      // Hers taken are answered, and her share is free again.
      for (const s of slow.slice(0, 2)) expect((await s.finish()).status).toBe(200);
      const again = slowPost(h.url, 'groups.create', groupBody('alice-3', 1_000_000), { first: 0, cookie: aliceAgain });
      expect((await again.finish()).status).toBe(200);
      expect(h.service.deps.config.ADMIN_BODY_BUDGET_PER_USER_BYTES).toBe(2 * MiB);
    } finally {
      for (const s of slow) s.abort();
      await h[Symbol.asyncDispose]();
    }
  }, 60_000);

  it("looks a large body's session up once, before reading it; again only when the body took over 5 s (a user disabled meanwhile is refused)", async () => {
    const h = await createHarness({});
    const slow: ReturnType<typeof slowPost>[] = [];
    const queries = vi.spyOn(h.service.deps.pool, 'query');
    const sessionLookups = () =>
      queries.mock.calls.filter(([sql]) => typeof sql === 'string' && /FROM admin_sessions s JOIN users/.test(sql)).length;
    try {
      await h.listen();
      const cookie = await httpLogin(h.url, 'alice', ADMIN_PASSWORD);
      // Five bodies over 64 KiB (looked up before reading) and five small ones (looked up by the
      // context only): one lookup each. Until now the large ones cost two.
      let before = sessionLookups();
      for (let i = 0; i < 5; i++) {
        const large = slowPost(h.url, 'groups.create', groupBody(`large-${i}`, 100_000), { first: 0, cookie });
        expect((await large.finish()).status).toBe(200);
      }
      expect(sessionLookups() - before).toBe(5);
      before = sessionLookups();
      for (let i = 0; i < 5; i++)
        expect((await trpcHttp(h.url, 'mutation', 'groups.create', { name: `small-${i}` }, { cookie })).status).toBe(200);
      expect(sessionLookups() - before).toBe(5);
      // A body still arriving 5 s after its session was looked up: looked up again, and alice,
      // disabled meanwhile, is refused (401) rather than acting on the session of its start.
      before = sessionLookups();
      const late = slowPost(h.url, 'groups.create', groupBody('late', 100_000), { first: 64 * KiB, cookie });
      slow.push(late);
      expect(await within(late.answer, 500)).toBe('pending');
      await h.service.deps.pool.query("UPDATE users SET disabled = true WHERE username = 'alice'");
      await sleep(5200);
      const refused = await late.finish();
      expect(refused.status).toBe(401);
      expect(sessionLookups() - before).toBe(2);
      const { rows } = await h.service.deps.pool.query("SELECT count(*)::int AS n FROM collector_groups WHERE name = 'late'");
      expect(rows[0].n).toBe(0);
    } finally {
      queries.mockRestore();
      for (const s of slow) s.abort();
      await h[Symbol.asyncDispose]();
    }
  }, 60_000);

  it('answers 408 to a body of which no byte arrives for ADMIN_BODY_TIMEOUT_MS, and frees its share of the budget', async () => {
    const h = await createHarness({
      ADMIN_MAX_BODY_BYTES: String(1 * MiB),
      ADMIN_BODY_BUDGET_BYTES: String(1 * MiB),
      ADMIN_BODY_TIMEOUT_MS: '1500',
    });
    try {
      await h.listen();
      const cookie = await httpLogin(h.url, 'alice', ADMIN_PASSWORD);
      // Slowloris: half a body, then nothing (the server's requestTimeout is 300 s).
      const stalled = slowPost(h.url, 'groups.create', groupBody('stalled', 1_000_000), { first: 500_000, cookie });
      const answer = await within(stalled.answer, 6000);
      expect(answer).not.toBe('pending');
      const { status, body, ms } = answer as Answer;
      expect(status).toBe(408);
      expect(body.error).toEqual({
        code: 'REQUEST_TIMEOUT',
        message: 'no byte of the request body arrived for 1500 ms (ADMIN_BODY_TIMEOUT_MS)',
      });
      expect(ms).toBeGreaterThanOrEqual(1400);
      stalled.abort();
      // The whole budget is free again: a body of all of it is taken.
      const next = slowPost(h.url, 'groups.create', groupBody('next', 1_000_000), { first: 0, cookie });
      expect((await next.finish()).status).toBe(200);
    } finally {
      await h[Symbol.asyncDispose]();
    }
  });

  it('defaults to a budget of 64 MiB whatever ADMIN_MAX_BODY_BYTES (bulk imports are not in it), at least 1 MiB', async () => {
    const { readAdminConfig } = await import('@pga/admin-api');
    const env = {
      DATABASE_URL: 'postgresql://u@127.0.0.1:5432/d',
      REDIS_URL: 'redis://127.0.0.1:6379',
      JWT_SECRET: 'x'.repeat(40),
      ENCRYPTION_KEY: `k1:${Buffer.alloc(32, 1).toString('base64')}`,
    };
    expect(readAdminConfig(env).ADMIN_BODY_BUDGET_BYTES).toBe(64 * MiB);
    expect(readAdminConfig({ ...env, ADMIN_MAX_BODY_BYTES: String(100 * MiB) }).ADMIN_BODY_BUDGET_BYTES).toBe(64 * MiB);
    expect(readAdminConfig(env).ADMIN_BODY_TIMEOUT_MS).toBe(60_000);
    // One user's share: a quarter of the budget, at least 1 MiB; a value of its own is kept.
    expect(readAdminConfig(env).ADMIN_BODY_BUDGET_PER_USER_BYTES).toBe(16 * MiB);
    expect(readAdminConfig({ ...env, ADMIN_BODY_BUDGET_BYTES: String(100 * MiB) }).ADMIN_BODY_BUDGET_PER_USER_BYTES).toBe(
      25 * MiB,
    );
    expect(readAdminConfig({ ...env, ADMIN_BODY_BUDGET_BYTES: String(2 * MiB) }).ADMIN_BODY_BUDGET_PER_USER_BYTES).toBe(MiB);
    expect(readAdminConfig({ ...env, ADMIN_BODY_BUDGET_PER_USER_BYTES: String(8 * MiB) }).ADMIN_BODY_BUDGET_PER_USER_BYTES).toBe(
      8 * MiB,
    );
    expect(() => readAdminConfig({ ...env, ADMIN_BODY_BUDGET_PER_USER_BYTES: String(MiB - 1) })).toThrow(
      /ADMIN_BODY_BUDGET_PER_USER_BYTES/,
    );
    // Below ADMIN_MAX_BODY_BYTES is fine now: imports hold slots, not budget.
    expect(
      readAdminConfig({ ...env, ADMIN_MAX_BODY_BYTES: String(8 * MiB), ADMIN_BODY_BUDGET_BYTES: String(4 * MiB) })
        .ADMIN_BODY_BUDGET_BYTES,
    ).toBe(4 * MiB);
    expect(() => readAdminConfig({ ...env, ADMIN_BODY_BUDGET_BYTES: String(MiB - 1) })).toThrow(/ADMIN_BODY_BUDGET_BYTES/);
  });

  it('frees the share (and the bulk-import slot) of a pipelined request whose connection died before its turn (review33 F1)', async () => {
    const h = await createHarness({
      ADMIN_MAX_BODY_BYTES: String(2 * MiB),
      ADMIN_BODY_BUDGET_BYTES: String(4 * MiB),
      ADMIN_BODY_BUDGET_PER_USER_BYTES: String(4 * MiB),
      ADMIN_BODY_TIMEOUT_MS: '5000',
      ADMIN_BULK_IMPORTS_AT_ONCE: '1',
    });
    const slow: ReturnType<typeof slowPost>[] = [];
    try {
      await h.listen();
      const cookie = await httpLogin(h.url, 'alice', ADMIN_PASSWORD);
      // Before: about one in four of these kept 1 MiB (or the one slot) for the life of the process.
      for (let i = 0; i < 20; i++) {
        await pipelinedThenGone(h.url, 'groups.create', 1 * MiB, cookie);
        await pipelinedThenGone(h.url, 'collectors.bulkImport', 2 * MiB, cookie);
      }
      await sleep(500);
      // The whole budget is free: four bodies of 1,000,000 bytes (4,000,000 of 4,194,304) are all taken.
      for (let i = 0; i < 4; i++)
        slow.push(slowPost(h.url, 'groups.create', groupBody(`after-${i}`, 1_000_000), { first: 64 * KiB, cookie }));
      for (const s of slow) expect(await within(s.answer, 300)).toBe('pending');
      for (const s of slow) expect((await s.finish()).status).toBe(200);
      // And the one slot: a large import is read (pending), not refused with 429.
      const bulk = slowPost(h.url, 'collectors.bulkImport', groupBody('import', (3 * MiB) >> 1), { first: 64 * KiB, cookie });
      slow.push(bulk);
      bulk.answer.catch(() => {}); // aborted below
      expect(await within(bulk.answer, 1000)).toBe('pending');
    } finally {
      for (const s of slow) s.abort();
      await h[Symbol.asyncDispose]();
    }
  }, 60_000);

  it('takes no share for anonymous requests: 65 sending headers only get 413 and hold nothing (review33 F2, defaults)', async () => {
    const h = await createHarness({}); // ADMIN_BODY_BUDGET_BYTES 64 MiB, ADMIN_BODY_TIMEOUT_MS 60 s
    const socks: Socket[] = [];
    try {
      await h.listen();
      const cookie = await httpLogin(h.url, 'alice', ADMIN_PASSWORD);
      const answers: string[] = [];
      for (let i = 0; i < 65; i++) {
        const s = rawSocket(h.url);
        answers.push('');
        s.setEncoding('utf8');
        s.on('data', (d: string) => (answers[i] += d));
        s.write(rawHead(h.url, 'groups.create', 1 * MiB));
        socks.push(s);
      }
      await sleep(1000);
      // Each refused before a byte of its body, none holding a share.
      expect(answers.filter((a) => a.startsWith('HTTP/1.1 413 '))).toHaveLength(65);
      expect(answers[0]).toMatch(/^HTTP\/1\.1 413 /);
      const message = `request body of ${MiB} bytes is over the ${64 * KiB}-byte limit of a request without a session (sign in first)`;
      expect(answers[0]).toContain(JSON.stringify({ error: { code: 'PAYLOAD_TOO_LARGE', message } }));
      // An admin's small and large bodies, and a sign-in, all answered.
      expect((await trpcHttp(h.url, 'mutation', 'groups.create', { name: 'admin-group' }, { cookie })).status).toBe(200);
      const large = slowPost(h.url, 'groups.create', groupBody('admin-large', 1_000_000), { first: 0, cookie });
      expect((await large.finish()).status).toBe(200);
      expect((await trpcHttp(h.url, 'mutation', 'auth.login', { username: 'alice', password: ADMIN_PASSWORD })).status).toBe(200);
    } finally {
      for (const s of socks) s.destroy();
      await h[Symbol.asyncDispose]();
    }
  }, 60_000);

  it('caps a chunked body without a session at 64 KiB, and reads a small anonymous one with no share (review33 F2)', async () => {
    const h = await createHarness({ ADMIN_MAX_BODY_BYTES: String(1 * MiB), ADMIN_BODY_BUDGET_BYTES: String(1 * MiB) });
    const held: ReturnType<typeof slowPost>[] = [];
    try {
      await h.listen();
      const cookie = await httpLogin(h.url, 'alice', ADMIN_PASSWORD);
      // The whole budget held by a signed-in upload: 1,048,576 of 1,048,576.
      held.push(slowPost(h.url, 'groups.create', groupBody('holder', 1 * MiB), { first: 64 * KiB, cookie }));
      expect(await within(held[0]!.answer, 500)).toBe('pending');
      // A sign-in (a small body) still gets through; a chunked anonymous body is cut at 64 KiB.
      expect((await trpcHttp(h.url, 'mutation', 'auth.login', { username: 'alice', password: ADMIN_PASSWORD })).status).toBe(200);
      const s = rawSocket(h.url);
      const answer = new Promise<string>((r) => {
        let text = '';
        s.setEncoding('utf8').on('data', (d: string) => {
          text += d;
          if (text.includes('}}')) r(text);
        });
      });
      const { host } = new URL(h.url);
      const chunk = ' '.repeat(16 * KiB);
      s.write(
        `POST /trpc/auth.login HTTP/1.1\r\nHost: ${host}\r\nOrigin: ${h.url}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n` +
          `${(16 * KiB).toString(16)}\r\n${chunk}\r\n`.repeat(5),
      );
      const text = await answer;
      s.destroy();
      expect(text).toMatch(/^HTTP\/1\.1 413 /);
      expect(text).toContain(
        `request body (chunked) is over the ${64 * KiB}-byte limit of a request without a session (sign in first)`,
      );
      expect((await held[0]!.finish()).status).toBe(200);
    } finally {
      for (const s of held) s.abort();
      await h[Symbol.asyncDispose]();
    }
  }, 60_000);

  it('leaves bulk imports to their slots: two at ADMIN_MAX_BODY_BYTES take no budget from other bodies (review33 F3, defaults)', async () => {
    const h = await createHarness({});
    const socks: Socket[] = [];
    try {
      await h.listen();
      const cookie = await httpLogin(h.url, 'alice', ADMIN_PASSWORD);
      for (let i = 0; i < 2; i++) {
        const s = rawSocket(h.url);
        s.write(rawHead(h.url, 'collectors.bulkImport', 32 * MiB, cookie) + ' '.repeat(64 * KiB));
        socks.push(s);
      }
      await sleep(1000);
      // A third import waits for a slot (429), but a signed-in body over 64 KiB is taken (it got 503).
      const third = slowPost(h.url, 'collectors.bulkImport', groupBody('third', 2 * MiB), { first: 0, cookie });
      expect((await within(third.answer, 5000)) as Answer).toMatchObject({ status: 429 });
      third.abort();
      const other = slowPost(h.url, 'groups.create', groupBody('during-import', 100_000), { first: 0, cookie });
      expect((await other.finish()).status).toBe(200);
      expect(
        (await trpcHttp(h.url, 'mutation', 'auth.login', { username: 'victor', password: 'viewer password 123' })).status,
      ).toBe(200);
    } finally {
      for (const s of socks) s.destroy();
      await h[Symbol.asyncDispose]();
    }
  }, 60_000);

  it('times out on silence, not on the whole body: a steady trickle longer than ADMIN_BODY_TIMEOUT_MS completes, a stall gets 408 (review33 F4)', async () => {
    const h = await createHarness({ ADMIN_BODY_TIMEOUT_MS: '1000' });
    const sent: ReturnType<typeof trickle>[] = [];
    try {
      await h.listen();
      const cookie = await httpLogin(h.url, 'alice', ADMIN_PASSWORD);
      // 300,000 bytes in 10 parts 400 ms apart: 3.6 s in all, never 1 s without a byte.
      const steady = trickle(h.url, 'groups.create', groupBody('steady', 300_000), { pieces: 10, everyMs: 400, cookie });
      sent.push(steady);
      const done = await steady.answer;
      expect(done.status).toBe(200);
      expect(done.ms).toBeGreaterThanOrEqual(3500);
      // Three parts 600 ms apart, then nothing: 408 about 1 s after the last byte, not 1 s after the start.
      const stalled = trickle(h.url, 'groups.create', groupBody('stalled', 300_000), {
        pieces: 10,
        everyMs: 600,
        cookie,
        stallAfter: 3,
      });
      sent.push(stalled);
      const timedOut = await stalled.answer;
      expect(timedOut.status).toBe(408);
      expect(timedOut.body.error).toEqual({
        code: 'REQUEST_TIMEOUT',
        message: 'no byte of the request body arrived for 1000 ms (ADMIN_BODY_TIMEOUT_MS)',
      });
      expect(timedOut.ms).toBeGreaterThanOrEqual(2 * 600 + 900);
    } finally {
      for (const s of sent) s.abort();
      await h[Symbol.asyncDispose]();
    }
  }, 60_000);
});
