import { describe, expect, it, beforeAll, afterAll } from 'vitest';
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
});
