import { request, type IncomingHttpHeaders } from 'node:http';
import { describe, expect, it } from 'vitest';
import { ADMIN_PASSWORD, createHarness, httpLogin } from './harness';

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

describe('request bodies in flight share one budget (ADMIN_BODY_BUDGET_BYTES) and a receive timeout (ADMIN_BODY_TIMEOUT_MS)', () => {
  it('answers 503 with Retry-After before reading a body that would pass the budget, and cuts none it took', async () => {
    const h = await createHarness({ ADMIN_MAX_BODY_BYTES: String(2 * MiB), ADMIN_BODY_BUDGET_BYTES: String(3 * MiB) });
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

  it('answers 408 to a body that does not arrive within ADMIN_BODY_TIMEOUT_MS, and frees its share of the budget', async () => {
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
        message: 'the request body did not arrive within 1500 ms (ADMIN_BODY_TIMEOUT_MS)',
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

  it('refuses a budget below ADMIN_MAX_BODY_BYTES at start, and defaults to ADMIN_MAX_BODY_BYTES + 32 MiB, at least 64 MiB', async () => {
    const { readAdminConfig } = await import('@pga/admin-api');
    const env = {
      DATABASE_URL: 'postgresql://u@127.0.0.1:5432/d',
      REDIS_URL: 'redis://127.0.0.1:6379',
      JWT_SECRET: 'x'.repeat(40),
      ENCRYPTION_KEY: `k1:${Buffer.alloc(32, 1).toString('base64')}`,
    };
    expect(readAdminConfig(env).ADMIN_BODY_BUDGET_BYTES).toBe(64 * MiB);
    expect(readAdminConfig({ ...env, ADMIN_MAX_BODY_BYTES: String(100 * MiB) }).ADMIN_BODY_BUDGET_BYTES).toBe(132 * MiB);
    expect(readAdminConfig(env).ADMIN_BODY_TIMEOUT_MS).toBe(60_000);
    expect(() =>
      readAdminConfig({ ...env, ADMIN_MAX_BODY_BYTES: String(8 * MiB), ADMIN_BODY_BUDGET_BYTES: String(4 * MiB) }),
    ).toThrow(/ADMIN_BODY_BUDGET_BYTES.*must be at least ADMIN_MAX_BODY_BYTES/);
  });
});
