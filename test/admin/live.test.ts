import { connect } from 'node:net';
import { once } from 'node:events';
import { describe, expect, it, beforeAll, afterAll, vi } from 'vitest';
import { Redis } from 'ioredis';
import { VIEWER_PASSWORD, createHarness, httpLogin, type Harness } from './harness';

const A = '11111111-1111-4111-8111-111111111111';
const B = '22222222-2222-4222-8222-222222222222';

describe('live.collectorStatus', () => {
  let h: Harness;
  let pub: Redis;
  beforeAll(async () => {
    h = await createHarness();
    await h.listen();
    await h.service.deps.liveFeed.ready();
    pub = new Redis(process.env.PGA_TEST_REDIS_URL!);
  });
  afterAll(async () => {
    pub?.disconnect();
    await h?.[Symbol.asyncDispose]();
  });
  const publish = (event: Record<string, unknown>) => pub.publish(h.service.deps.keys.statusChannel, JSON.stringify(event));

  it('streams the writer’s status messages to a caller, filtered, dropping malformed ones', async () => {
    const stream = await h.caller(h.viewer).live.collectorStatus({ collector_ids: [A] });
    const received: any[] = [];
    const reading = (async () => {
      for await (const event of stream) {
        received.push(event);
        if (received.length === 2) break;
      }
    })();
    await new Promise((r) => setTimeout(r, 50));
    await publish({ collector_id: B, status: 'active' });
    await publish({ collector_id: A, status: 'bogus' });
    await pub.publish(h.service.deps.keys.statusChannel, 'not json');
    await publish({
      collector_id: A,
      status: 'active',
      last_heartbeat: '2026-01-01T00:00:00.000Z',
      last_metric_at: null,
      metrics_collected: 12,
    });
    await publish({ collector_id: A, status: 'inactive', metrics_collected: 12 });
    await reading; // leaving the loop ends the subscription
    expect(h.service.deps.liveFeed.events.listenerCount('status')).toBe(0);
    expect(received).toEqual([
      {
        collector_id: A,
        status: 'active',
        last_heartbeat: '2026-01-01T00:00:00.000Z',
        last_metric_at: null,
        metrics_collected: 12,
      },
      { collector_id: A, status: 'inactive', metrics_collected: 12 },
    ]);
  });

  it('delivers a status change to an SSE subscriber over HTTP, and refuses anonymous subscribers', async () => {
    // SSE carries errors inside the stream: an anonymous subscriber gets an UNAUTHORIZED error event, no data
    const anonymous = await fetch(`${h.url}/trpc/live.collectorStatus`, { headers: { accept: 'text/event-stream' } });
    const anonText = await anonymous.text();
    expect(anonText).toMatch(/event: serialized-error/);
    expect(anonText).toContain('UNAUTHORIZED');
    expect(anonText).not.toMatch(/^data: \{"collector_id"/m);

    const cookie = await httpLogin(h.url, 'victor', VIEWER_PASSWORD);
    const controller = new AbortController();
    const res = await fetch(
      `${h.url}/trpc/live.collectorStatus?input=${encodeURIComponent(JSON.stringify({ collector_ids: [B] }))}`,
      {
        headers: { cookie, accept: 'text/event-stream' },
        signal: controller.signal,
      },
    );
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    // wait for the stream to open (tRPC sends a "connected" event first)
    while (!text.includes('connected')) text += decoder.decode((await reader.read()).value);
    const sent = performance.now();
    await publish({ collector_id: B, status: 'error', metrics_collected: 7 });
    while (!text.includes('"status":"error"')) text += decoder.decode((await reader.read()).value);
    const elapsed = performance.now() - sent;
    controller.abort();
    // Not asserted (no timed assertions in tests, common.md): the bound is 2 s.
    console.log(`status change reached the SSE subscriber in ${Math.round(elapsed)} ms`);
    const data = text
      .split('\n')
      .filter((l) => l.startsWith('data: ') && l.includes(B))
      .map((l) => JSON.parse(l.slice(6)));
    expect(data).toEqual([{ collector_id: B, status: 'error', metrics_collected: 7 }]);
  });

  it('ends open SSE streams when the service shuts down, instead of waiting for the clients', async () => {
    const h2 = await createHarness();
    const url = await h2.listen();
    const cookie = await httpLogin(url, 'victor', VIEWER_PASSWORD);
    const res = await fetch(`${url}/trpc/live.collectorStatus`, { headers: { cookie, accept: 'text/event-stream' } });
    const reader = res.body!.getReader();
    let text = '';
    while (!text.includes('connected')) text += new TextDecoder().decode((await reader.read()).value);
    const closing = h2[Symbol.asyncDispose]();
    for (;;) {
      const { done } = await reader.read().catch(() => ({ done: true }));
      if (done) break;
    }
    const started = performance.now();
    await closing;
    console.log(`service closed ${Math.round(performance.now() - started)} ms after its SSE stream ended`);
  });

  it('cuts off a subscriber that stops reading once it is too far behind, instead of buffering without limit', async () => {
    const h2 = await createHarness({ LIVE_FEED_MAX_BACKLOG: '100', LIVE_FEED_CUTOFF_GRACE_MS: '5000' });
    try {
      const url = new URL(await h2.listen());
      await h2.service.deps.liveFeed.ready();
      const cookie = await httpLogin(url.origin, 'victor', VIEWER_PASSWORD);
      const { events } = h2.service.deps.liveFeed;
      const subscribe = async () => {
        const socket = connect(Number(url.port), url.hostname);
        await once(socket, 'connect');
        socket.setEncoding('utf8');
        const read = { text: '', ended: false, closed: false };
        socket.on('data', (chunk: string) => (read.text += chunk));
        socket.on('end', () => (read.ended = true));
        socket.on('close', () => (read.closed = true));
        socket.on('error', () => undefined);
        socket.write(
          `GET /trpc/live.collectorStatus HTTP/1.1\r\nHost: ${url.host}\r\nCookie: ${cookie}\r\nAccept: text/event-stream\r\n\r\n`,
        );
        await vi.waitFor(() => expect(read.text).toContain('connected'), { timeout: 10_000 });
        socket.pause(); // stops reading: the kernel buffers fill up, then the server's writes wait for 'drain'
        return { socket, read };
      };
      // Large events (30 KB each), up to 3,000 of them (90 MB: far more than the loopback socket
      // buffers hold, so the server's writes wait for 'drain'), until the subscriber is cut off.
      const pad = 'x'.repeat(30_000);
      // Redis cuts off a subscriber whose output buffer passes 32 MB (client-output-buffer-limit
      // pubsub): on a busy machine the service reads slower than this publishes, and lost the feed
      // instead of falling behind. So publish only while the subscribers' buffers hold under 8 MB.
      const pubsubBuffered = async () =>
        Math.max(
          0,
          ...String(await pub.call('CLIENT', 'LIST', 'TYPE', 'pubsub'))
            .split('\n')
            .map((l) => Number(/ omem=(\d+)/.exec(l)?.[1] ?? 0)),
        );
      const flood = async () => {
        let sent = 0;
        while (sent < 3000 && events.listenerCount('status') > 0) {
          if ((await pubsubBuffered()) > 8 * 1024 * 1024) {
            await new Promise((r) => setTimeout(r, 20));
            continue;
          }
          const pipe = pub.pipeline();
          for (const end = sent + 50; sent < end; sent++)
            pipe.publish(
              h2.service.deps.keys.statusChannel,
              JSON.stringify({ collector_id: A, status: 'active', last_heartbeat: pad, metrics_collected: sent }),
            );
          await pipe.exec();
        }
        return sent;
      };

      // 1. A subscriber that stops reading, then catches up: its subscription ended while it was
      // behind (the feed holds nothing more for it), and once it reads it gets the reason and the end.
      const slow = await subscribe();
      expect(events.listenerCount('status')).toBe(1);
      const sent = await flood();
      await vi.waitFor(() => expect(events.listenerCount('status')).toBe(0), { timeout: 20_000 });
      slow.socket.resume();
      await vi.waitFor(() => expect(slow.read.ended).toBe(true), { timeout: 20_000 });
      const delivered = slow.read.text.split('\n').filter((l) => l.startsWith('data: {"collector_id"')).length;
      expect(delivered).toBeLessThan(sent);
      expect(slow.read.text).toMatch(/event: serialized-error/);
      expect(slow.read.text).toContain('fell more than 100 status updates behind');

      // 2. A subscriber that never reads again is disconnected after the grace period.
      const stuck = await subscribe();
      await flood();
      await vi.waitFor(() => expect(events.listenerCount('status')).toBe(0), { timeout: 20_000 });
      await vi.waitFor(async () => expect(await new Promise((r) => h2.service.server.getConnections((_e, n) => r(n)))).toBe(0), {
        timeout: 20_000,
      });
      stuck.socket.destroy();
      slow.socket.destroy();
    } finally {
      await h2[Symbol.asyncDispose]();
    }
  });
});
