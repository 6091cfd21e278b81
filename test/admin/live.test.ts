import { connect } from 'node:net';
import { once } from 'node:events';
import { describe, expect, it, beforeAll, afterAll, vi } from 'vitest';
import { Redis } from 'ioredis';
import { ADMIN_PASSWORD, VIEWER_PASSWORD, createHarness, httpLogin, type Harness } from './harness';

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
    await vi.waitFor(() => expect(h.service.deps.liveFeed.hub.stats().subscribers).toBe(1));
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
    // Read before the next update of the same collector: one not yet read is replaced by the next.
    await vi.waitFor(() => expect(received).toHaveLength(1));
    await publish({ collector_id: A, status: 'inactive', metrics_collected: 12 });
    await reading; // leaving the loop ends the subscription
    expect(h.service.deps.liveFeed.hub.stats().subscribers).toBe(0);
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

  it('keeps only the latest update per collector for a subscriber that stops reading, without holding up the others', async () => {
    const h2 = await createHarness();
    try {
      const url = new URL(await h2.listen());
      await h2.service.deps.liveFeed.ready();
      const { hub } = h2.service.deps.liveFeed;
      const cookie = await httpLogin(url.origin, 'victor', VIEWER_PASSWORD);
      // The slow subscriber: a raw socket that stops reading once its stream is open.
      const socket = connect(Number(url.port), url.hostname);
      await once(socket, 'connect');
      socket.setEncoding('utf8');
      const slow = { text: '', ended: false };
      socket.on('data', (chunk: string) => (slow.text += chunk));
      socket.on('end', () => (slow.ended = true));
      socket.on('error', () => undefined);
      socket.write(
        `GET /trpc/live.collectorStatus HTTP/1.1\r\nHost: ${url.host}\r\nCookie: ${cookie}\r\nAccept: text/event-stream\r\n\r\n`,
      );
      await vi.waitFor(() => expect(slow.text).toContain('connected'), { timeout: 10_000 });
      socket.pause(); // stops reading: the kernel buffers fill up, then the server's writes wait for 'drain'
      // The fast subscriber reads everything; only the tail of what it read is kept.
      const controller = new AbortController();
      const res = await fetch(`${url.origin}/trpc/live.collectorStatus`, {
        headers: { cookie, accept: 'text/event-stream' },
        signal: controller.signal,
      });
      const reader = res.body!.getReader();
      const decoder = new TextDecoder();
      let fast = '';
      const readFast = async (until: string) => {
        while (!fast.includes(until)) {
          const { value, done } = await reader.read();
          if (done) throw new Error("the fast subscriber's stream ended");
          fast += decoder.decode(value, { stream: true });
          if (fast.length > 200_000) fast = fast.slice(-100_000);
        }
      };
      await readFast('connected');
      await vi.waitFor(() => expect(hub.stats().subscribers).toBe(2));

      // 1,500 updates of 30 KB (45 MB: far more than the loopback socket buffers hold), collectors
      // A and B in turn. Redis cuts off a pub/sub client whose output buffer passes 32 MB: publish only
      // while the service's subscription holds under 8 MB there.
      const pad = 'x'.repeat(30_000);
      const pubsubBuffered = async () =>
        Math.max(
          0,
          ...String(await pub.call('CLIENT', 'LIST', 'TYPE', 'pubsub'))
            .split('\n')
            .map((l) => Number(/ omem=(\d+)/.exec(l)?.[1] ?? 0)),
        );
      const total = 1500;
      let sent = 0;
      const flooding = (async () => {
        while (sent < total) {
          if ((await pubsubBuffered()) > 8 * 1024 * 1024) {
            await new Promise((r) => setTimeout(r, 20));
            continue;
          }
          const pipe = pub.pipeline();
          for (const end = sent + 50; sent < end; sent++)
            pipe.publish(
              h2.service.deps.keys.statusChannel,
              JSON.stringify({ collector_id: sent % 2 ? B : A, status: 'active', last_heartbeat: pad, metrics_collected: sent }),
            );
          await pipe.exec();
        }
      })();
      // The fast subscriber gets the last update while the slow one still reads nothing.
      await readFast(`"metrics_collected":${total - 1}}`);
      await flooding;
      // What the service holds for the slow one: at most the latest update of each collector.
      expect(hub.stats()).toEqual({ subscribers: 2, pending: expect.any(Number) });
      expect(hub.stats().pending).toBeLessThanOrEqual(2);
      socket.resume();
      await vi.waitFor(() => expect(slow.text).toContain(`"metrics_collected":${total - 1}}`), { timeout: 20_000 });
      await vi.waitFor(() => expect(slow.text).toContain(`"metrics_collected":${total - 2}}`), { timeout: 20_000 });
      const delivered = slow.text.split('\n').filter((l) => l.startsWith('data: {"collector_id"')).length;
      console.log(`slow subscriber: ${delivered} of ${total} updates delivered (the rest coalesced)`);
      expect(delivered).toBeLessThan(total);
      expect(slow.text).not.toMatch(/serialized-error/);
      expect(slow.ended).toBe(false);
      controller.abort();
      socket.destroy();
      await vi.waitFor(() => expect(hub.stats()).toEqual({ subscribers: 0, pending: 0 }));
    } finally {
      await h2[Symbol.asyncDispose]();
    }
  });

  it('caps open feeds per session, per user and per process, naming the cap that refused', async () => {
    const h2 = await createHarness({
      LIVE_FEED_MAX_PER_SESSION: '2',
      LIVE_FEED_MAX_PER_USER: '3',
      LIVE_FEED_MAX_SUBSCRIBERS: '4',
    });
    try {
      const url = await h2.listen();
      const { hub } = h2.service.deps.liveFeed;
      const open = async (cookie: string) => {
        const controller = new AbortController();
        const res = await fetch(`${url}/trpc/live.collectorStatus`, {
          headers: { cookie, accept: 'text/event-stream' },
          signal: controller.signal,
        });
        const reader = res.body!.getReader();
        const decoder = new TextDecoder();
        let text = '';
        while (!text.includes('connected')) text += decoder.decode((await reader.read()).value);
        return {
          close: () => controller.abort(),
          /** The rest of a stream that ends (a refused one). */
          async rest() {
            for (;;) {
              const { value, done } = await reader.read();
              if (done) return text;
              text += decoder.decode(value);
            }
          },
        };
      };
      const accepted = async (cookie: string) => {
        const before = hub.stats().subscribers;
        const feed = await open(cookie);
        await vi.waitFor(() => expect(hub.stats().subscribers).toBe(before + 1));
        return feed;
      };
      const refused = async (cookie: string, setting: string) => {
        const text = await (await open(cookie)).rest();
        expect(text).toMatch(/event: serialized-error/);
        expect(text).toContain('"code":"TOO_MANY_REQUESTS"');
        expect(text).toContain(`(${setting})`);
        expect(text).not.toMatch(/^data: \{"collector_id"/m);
      };
      const session1 = await httpLogin(url, 'victor', VIEWER_PASSWORD);
      const session2 = await httpLogin(url, 'victor', VIEWER_PASSWORD);
      const admin = await httpLogin(url, 'alice', ADMIN_PASSWORD);
      const a = await accepted(session1);
      const b = await accepted(session1);
      await refused(session1, 'LIVE_FEED_MAX_PER_SESSION');
      const c = await accepted(session2);
      await refused(session2, 'LIVE_FEED_MAX_PER_USER');
      const d = await accepted(admin);
      await refused(admin, 'LIVE_FEED_MAX_SUBSCRIBERS');
      expect(hub.stats().subscribers).toBe(4);
      // A closed feed frees its slot.
      a.close();
      await vi.waitFor(() => expect(hub.stats().subscribers).toBe(3));
      const e = await accepted(session1);
      for (const feed of [b, c, d, e]) feed.close();
      await vi.waitFor(() => expect(hub.stats().subscribers).toBe(0));
    } finally {
      await h2[Symbol.asyncDispose]();
    }
  });
});
