import { createServer } from 'node:http';
import { describe, expect, it } from 'vitest';
import { createCentralClient, parseRetryAfter, pushTimeoutMs } from './central-client';

describe('parseRetryAfter', () => {
  it('reads delay-seconds and HTTP dates', () => {
    expect(parseRetryAfter('7')).toBe(7000);
    const now = Date.parse('2026-11-27T10:00:00Z');
    expect(parseRetryAfter('Fri, 27 Nov 2026 10:00:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfter('Fri, 27 Nov 2026 09:00:00 GMT', now)).toBe(0);
    expect(parseRetryAfter(null)).toBeUndefined();
    expect(parseRetryAfter('soon')).toBeUndefined();
  });
});

describe('central client', () => {
  it('turns error answers, timeouts and refused connections into results, never throws', async () => {
    const server = createServer((req, res) => {
      if (req.url === '/healthz') return void setTimeout(() => res.end('{}'), 2000);
      res
        .writeHead(503, { 'content-type': 'application/json', 'retry-after': '3' })
        .end('{"error":{"code":"UNAVAILABLE","message":"queue down"}}');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const clientWith = (timeoutMs: number) =>
      createCentralClient({
        baseUrl: `http://127.0.0.1:${port}/`,
        credentials: () => ({ collectorId: '11111111-2222-4333-8444-555555555555', token: 't' }),
        timeoutMs,
      });
    const client = clientWith(10_000);
    try {
      expect(await client.push(Buffer.from('x'), 'p')).toMatchObject({
        ok: false,
        status: 503,
        code: 'UNAVAILABLE',
        retryAfterMs: 3000,
      });
      expect(await clientWith(300).health()).toMatchObject({
        ok: false,
        status: 0,
        code: 'NETWORK',
        message: expect.stringMatching(/no answer within 300 ms/),
      });
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
    // Refused, or the pooled keep-alive socket found closed: either way a result, not a throw.
    expect(await client.config()).toMatchObject({
      ok: false,
      status: 0,
      code: 'NETWORK',
      message: expect.stringMatching(/ECONNREFUSED|UND_ERR_SOCKET|other side closed/),
    });
  });
});

describe('push timeout', () => {
  it('grows with the body: base + upload time at 4 KiB/s', () => {
    expect(pushTimeoutMs(15_000, 0)).toBe(15_000);
    expect(pushTimeoutMs(15_000, 1024 * 1024)).toBe(15_000 + 256_000);
  });

  it('a push slower than COLLECTOR_HTTP_TIMEOUT_MS alone is still answered when its size allows the time', async () => {
    // The server answers 1 s after the body arrived: a 40 KiB push gets 100 ms + 10 s; a bodyless
    // health check keeps the 100 ms.
    const server = createServer((req, res) => {
      req.resume();
      req.on('end', () =>
        setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end('{"records":1}'), 1000),
      );
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const client = createCentralClient({
      baseUrl: `http://127.0.0.1:${port}`,
      credentials: () => ({ collectorId: '11111111-2222-4333-8444-555555555555', token: 't' }),
      timeoutMs: 100,
    });
    try {
      expect(await client.push(Buffer.alloc(40 * 1024, 1), 'p')).toMatchObject({ ok: true, status: 200 });
      expect(await client.health()).toMatchObject({
        ok: false,
        code: 'NETWORK',
        message: expect.stringMatching(/no answer within 100 ms/),
      });
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});
