import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EdgeWorld, hangUp, rawRequest, waitUntil, type TestCollector } from './harness';

const CAP = 65536;

/** HTTP/1.1 details of CONTRACT.md, sent over bare sockets (fetch cannot shape these requests). */
describe('edge HTTP/1.1 handling (raw sockets)', () => {
  let world: EdgeWorld;
  let port: number;
  let c: TestCollector;
  const head = (extra: string) =>
    `POST /api/v1/metrics/push HTTP/1.1\r\nHost: edge\r\nAuthorization: Bearer ${c.token}\r\nContent-Type: application/json\r\n${extra}\r\n`;
  const chunk = (s: string) => `${Buffer.byteLength(s).toString(16)}\r\n${s}\r\n`;
  const pause = (ms: number) => () => new Promise<void>((r) => setTimeout(r, ms));

  beforeAll(async () => {
    world = await EdgeWorld.create();
    port = (await world.startEdge({ MAX_BODY_BYTES: String(CAP) })).port;
    c = await world.collector();
  });
  afterAll(async () => world?.[Symbol.asyncDispose]());

  it('closes a connection whose client pipelines requests and never reads the answers (they no longer pile up in memory); one that reads gets every answer', async () => {
    const request = 'GET /healthz HTTP/1.1\r\nHost: edge\r\n\r\n';
    // Reading: 2,000 pipelined requests, 2,000 answers.
    const reader = net.connect(port, '127.0.0.1');
    let answers = '';
    reader.on('data', (d: Buffer) => (answers += d.toString('latin1')));
    reader.write(request.repeat(2000));
    await waitUntil(() => answers.split('HTTP/1.1 200 OK').length === 2001, 10_000, '2,000 answers');
    reader.destroy();

    // Not reading: before, uWS.js kept every answer (~20 s, 60-80 MB) until its idle timeout.
    expect(await closedWhenNotReading(request)).toBe(true);
  });

  /** Pipelines `request` for up to 8 s without reading any answer: whether the edge closed the connection. */
  async function closedWhenNotReading(request: string): Promise<boolean> {
    const socket = net.connect(port, '127.0.0.1');
    socket.pause();
    let closed = false;
    socket.on('error', () => (closed = true));
    socket.on('close', () => (closed = true));
    await new Promise((r) => socket.once('connect', r));
    const batch = request.repeat(1000);
    const started = Date.now();
    while (!closed && Date.now() - started < 8000) {
      if (!socket.write(batch)) await new Promise((r) => (socket.once('drain', r), setTimeout(r, 50)));
      else await new Promise((r) => setImmediate(r));
    }
    socket.destroy();
    return closed;
  }

  it('accepts a chunked body written piece by piece', async () => {
    const parts = ['{"database":"app",', '"queryid":-5266580654608644134,', `"t":${Date.now()}}`];
    const res = await rawRequest(port, [
      head('Transfer-Encoding: chunked\r\n'),
      chunk(parts[0]!),
      pause(30),
      chunk(parts[1]!),
      pause(30),
      chunk(parts[2]!),
      '0\r\n\r\n',
    ]);
    expect(res.status).toBe(200);
    const answer = JSON.parse(res.body);
    expect(answer).toMatchObject({ status: 'accepted', records: 1, duplicate: false });
    const queued = (await world.queuedPushes()).find((p) => p.push_id === answer.push_id);
    expect(queued!.body).toBe(parts.join(''));
    expect(res.closed).toBe(false);
  });

  it('answers an empty chunked body with 400 INVALID_JSON', async () => {
    const res = await rawRequest(port, [head('Transfer-Encoding: chunked\r\n'), '0\r\n\r\n']);
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body).error.code).toBe('INVALID_JSON');
  });

  it('answers Expect: 100-continue before the body is sent', async () => {
    const body = `{"expect":${Date.now()}}`;
    const res = await rawRequest(port, [
      head(`Content-Length: ${body.length}\r\nExpect: 100-continue\r\n`),
      (s) => s.waitFor('100 Continue'),
      body,
    ]);
    expect(res.interim).toEqual([100]);
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body).status).toBe('accepted');
  });

  it('refuses an oversize Content-Length with 413 before reading the body, and closes', async () => {
    const res = await rawRequest(port, [head(`Content-Length: ${CAP * 100}\r\n`), '{"x":"']);
    expect(res.status).toBe(413);
    expect(JSON.parse(res.body).error.code).toBe('PAYLOAD_TOO_LARGE');
    expect(res.closed).toBe(true);
  });

  it('stops a chunked body without Content-Length at the cap with 413', async () => {
    const piece = chunk('a'.repeat(16 * 1024));
    let sent = 0;
    const limit = CAP * 32;
    const res = await rawRequest(port, [
      head('Transfer-Encoding: chunked\r\n'),
      chunk('{"x":"'),
      async (s) => {
        // Keep sending (never the terminating chunk) until the edge answers: it must answer
        // while the body is still arriving, long before `limit`.
        while (!s.received().includes('HTTP/1.1') && sent < limit) {
          sent += 16 * 1024;
          await s.write(piece);
          await new Promise((r) => setTimeout(r, 2));
        }
      },
    ]);
    expect(res.status).toBe(413);
    expect(sent).toBeLessThan(limit);
    expect(res.closed).toBe(true);
    expect(await world.queuedPushes()).not.toContainEqual(expect.objectContaining({ body: expect.stringContaining('aaaa') }));
  });

  it('refuses a deciding header sent twice with different values with 400 (two Content-Lengths: unread, and closed); the same value twice is one', async () => {
    const body = `{"twice":${Date.now()}}`;
    const base = (lines: string[]) =>
      `POST /api/v1/metrics/push HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\n${lines.map((l) => `${l}\r\n`).join('')}\r\n`;
    const auth = `Authorization: Bearer ${c.token}`;
    const length = `Content-Length: ${body.length}`;
    const refused = async (lines: string[], extra = '') => {
      const res = await rawRequest(port, [base(lines) + body + extra]);
      return [res.status, JSON.parse(res.body).error, res.closed];
    };
    const twice = (name: string) => ({ code: 'INVALID_PAYLOAD', message: `${name} header sent twice with different values` });
    // RFC 9112 §6.3: which length frames the body is unknown. uWS.js took the first (a proxy in
    // front may take the other).
    expect(await refused([auth, length, `Content-Length: ${body.length + 40}`])).toEqual([400, twice('Content-Length'), true]);
    // What follows the first length's body was read as a further request on the connection (smuggled
    // past a proxy that took the second): never served.
    const smuggled = 'GET /healthz HTTP/1.1\r\nHost: edge\r\n\r\n';
    const smuggle = async (lines: string[]) => {
      const socket = net.connect(port, '127.0.0.1');
      let received = '';
      let closed = false;
      socket.on('data', (d: Buffer) => (received += d.toString('latin1')));
      socket.on('error', () => undefined);
      socket.on('close', () => (closed = true));
      socket.write(base(lines) + body + smuggled);
      await waitUntil(() => closed, 5000, 'the connection closed');
      // uWS.js closes the connection with the first request unanswered: neither is answered.
      return received.includes('"status":"ok"');
    };
    const longer = `Content-Length: ${body.length + smuggled.length}`;
    expect(await smuggle([auth, length, longer])).toBe(false);
    // The same behind another header sent twice and named first (that one was answered at once, and
    // the smuggled request served on the connection left open).
    expect(await smuggle([auth, `Authorization: Bearer ${c.token}x`, length, longer])).toBe(false);
    expect(await refused([auth, `Authorization: Bearer ${c.token}x`, length])).toEqual([400, twice('Authorization'), true]);
    expect(
      await refused([auth, 'X-Collector-ID: ' + c.id, 'X-Collector-ID: 00000000-0000-4000-8000-000000000000', length]),
    ).toEqual([400, twice('X-Collector-ID'), true]);
    expect(await refused([auth, 'Idempotency-Key: a', 'Idempotency-Key: b', length])).toEqual([
      400,
      twice('Idempotency-Key'),
      true,
    ]);
    expect(await refused([auth, 'Content-Encoding: gzip', 'Content-Encoding: identity', length])).toEqual([
      400,
      twice('Content-Encoding'),
      true,
    ]);
    expect(await world.queuedPushes()).not.toContainEqual(expect.objectContaining({ body }));
    // The same value twice is no ambiguity (RFC 9110 §8.6 for Content-Length).
    const same = await rawRequest(port, [
      base([auth, auth, length, length, 'Idempotency-Key: k1', 'Idempotency-Key: k1']) + body,
    ]);
    expect([same.status, JSON.parse(same.body).status, same.closed]).toEqual([200, 'accepted', false]);
  });

  it('keeps the connection alive across requests', async () => {
    const one = `{"k":1,"t":${Date.now()}}`;
    const two = `{"k":2,"t":${Date.now()}}`;
    let received = '';
    const res = await rawRequest(port, [
      head(`Content-Length: ${one.length}\r\n`) + one,
      (s) => s.waitFor('accepted'),
      head(`Content-Length: ${two.length}\r\n`) + two,
      async (s) => {
        await waitUntil(() => s.received().split('"status":"accepted"').length === 3, 5000, 'two answers');
        received = s.received();
      },
    ]);
    expect(res.status).toBe(200);
    expect(received.match(/HTTP\/1\.1 200 OK/g)).toHaveLength(2);
    expect(res.closed).toBe(false);
  });

  it('does not count a client that hangs up mid-body as a refused request', async () => {
    const text = async () => (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const count = (metrics: string, series: string) =>
      Number(
        metrics
          .split('\n')
          .find((line) => line.startsWith(`${series} `))
          ?.slice(series.length + 1) ?? 0,
      );
    const invalid = 'edge_rejections_total{reason="INVALID_PAYLOAD"}';
    const gone = 'edge_http_requests_total{route="push",status="0"}';
    const before = await text();
    await hangUp(port, head('Content-Length: 100\r\n') + '{"half":"' + 'x'.repeat(41));
    // Seen as a request whose client went away (status 0), not as a 400.
    await waitUntil(async () => count(await text(), gone) === count(before, gone) + 1, 5000, 'the hang-up counted');
    const after = await text();
    expect(count(after, invalid)).toBe(count(before, invalid));
    expect(count(after, 'edge_http_requests_total{route="push",status="400"}')).toBe(
      count(before, 'edge_http_requests_total{route="push",status="400"}'),
    );
  });

  it('keeps the connection after refusing a small body (401), then serves the next request', async () => {
    const body = `{"after401":${Date.now()}}`;
    const bad = `POST /api/v1/metrics/push HTTP/1.1\r\nHost: edge\r\nAuthorization: Bearer nope\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`;
    let received = '';
    const res = await rawRequest(port, [
      bad,
      pause(50),
      body,
      (s) => s.waitFor('UNAUTHORIZED'),
      head(`Content-Length: ${body.length}\r\n`) + body,
      async (s) => {
        await s.waitFor('accepted');
        received = s.received();
      },
    ]);
    expect(res.status).toBe(401);
    expect(res.closed).toBe(false);
    expect(received).toMatch(/HTTP\/1\.1 401[\s\S]*HTTP\/1\.1 200 OK/);
  });
});
