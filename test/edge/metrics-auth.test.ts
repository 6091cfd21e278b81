import { freePort } from '@pga/local-stack';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openMetricsWarning, readEdgeConfig } from '@pga/ingest-edge';
import { call, EdgeWorld, freshRequest, spawnEdge, waitUntil, type EdgeProcess, type TestCollector } from './harness';

/**
 * METRICS_TOKEN at the edge: /metrics on the collectors' port answers only a Bearer token of the
 * list (two during a rotation), /healthz and /readyz stay open, the collector routes are untouched;
 * unset, /metrics is open as before.
 */
const NEW = 'metrics-new-'.padEnd(40, 'n');
const OLD = 'metrics-old-'.padEnd(40, 'o');

describe('METRICS_TOKEN at the edge', () => {
  let world: EdgeWorld;
  let guarded: { url: string; port: number };
  let open: { url: string };
  let c: TestCollector;

  beforeAll(async () => {
    world = await EdgeWorld.create();
    guarded = await world.startEdge({ METRICS_TOKEN: `${NEW},${OLD}` });
    open = await world.startEdge();
    c = await world.collector();
  }, 60_000);
  afterAll(async () => {
    await world?.[Symbol.asyncDispose]();
  });

  const scrape = async (url: string, headers: Record<string, string> = {}, method = 'GET') => {
    const res = await fetch(`${url}/metrics`, { method, headers });
    return { status: res.status, headers: res.headers, text: await res.text() };
  };

  it('without an Authorization header: 401, a Bearer challenge, one line saying what is needed, no metric', async () => {
    const res = await scrape(guarded.url);
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Bearer realm="pganalytics-metrics"');
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(res.text).not.toContain('\n');
    expect(JSON.parse(res.text)).toEqual({
      error: { code: 'UNAUTHORIZED', message: '/metrics needs an Authorization: Bearer header with a token of METRICS_TOKEN' },
    });
    expect(res.text).not.toMatch(/edge_|# HELP/);
  });

  it('with a wrong token, another scheme or a collector token: 401, and invalid_token for a wrong Bearer token', async () => {
    const wrong = await scrape(guarded.url, { authorization: `Bearer ${NEW.slice(0, -1)}x` });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get('www-authenticate')).toBe('Bearer realm="pganalytics-metrics", error="invalid_token"');
    expect(JSON.parse(wrong.text).error.message).toBe('the Bearer token is not one of METRICS_TOKEN');
    expect(wrong.text).not.toMatch(/edge_|# HELP/);

    const basic = await scrape(guarded.url, { authorization: `Basic ${Buffer.from(`prometheus:${NEW}`).toString('base64')}` });
    expect(basic.status).toBe(401);
    expect(basic.headers.get('www-authenticate')).toBe('Bearer realm="pganalytics-metrics"');
    expect(basic.text).not.toMatch(/edge_|# HELP/);

    // A collector's token is for the collector routes only.
    const collector = await scrape(guarded.url, { authorization: `Bearer ${c.token}` });
    expect(collector.status).toBe(401);
    expect(collector.text).not.toMatch(/edge_|# HELP/);
  });

  it('HEAD without the token: 401 and no body', async () => {
    const res = await freshRequest(guarded.port, 'HEAD', '/metrics');
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toBe('Bearer realm="pganalytics-metrics"');
    expect(res.body).toBe('');
  });

  it('with either token of the rotation list: 200 and the metrics', async () => {
    for (const token of [NEW, OLD]) {
      const res = await scrape(guarded.url, { authorization: `Bearer ${token}` });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
      expect(res.text).toMatch(/^edge_ready 1$/m);
    }
  });

  it('keeps /healthz and /readyz open, and the collector routes as they were', async () => {
    expect((await fetch(`${guarded.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${guarded.url}/readyz`)).status).toBe(200);
    const push = await call(`${guarded.url}/api/v1/metrics/push`, { token: c.token, body: `{"t":${Date.now()}}` });
    expect(push.status).toBe(200);
    const heartbeat = await call(`${guarded.url}/api/v1/collectors/${c.id}/heartbeat`, { token: c.token, body: '{}' });
    expect(heartbeat.status).toBe(200);
    // The push counted as ever; the refused scrapes are not requests of a collector route.
    const text = (await scrape(guarded.url, { authorization: `Bearer ${NEW}` })).text;
    expect(text).toMatch(/^edge_http_requests_total\{route="push",status="200"\} 1$/m);
    expect(text).not.toMatch(/status="401"/);
  });

  it('unset: /metrics open as before', async () => {
    const res = await scrape(open.url);
    expect(res.status).toBe(200);
    expect(res.text).toMatch(/^edge_ready 1$/m);
    // A header sent anyway changes nothing.
    expect((await scrape(open.url, { authorization: 'Bearer whatever' })).status).toBe(200);
  });

  it('warns at start only when /metrics is open on a non-loopback address', () => {
    const env = world.env();
    expect(openMetricsWarning(readEdgeConfig({ ...env, INGEST_HOST: '0.0.0.0' }))).toMatch(
      /^\/metrics is open to anyone who reaches the collectors' port \(INGEST_HOST 0\.0\.0\.0\): set METRICS_TOKEN/,
    );
    expect(openMetricsWarning(readEdgeConfig({ ...env, INGEST_HOST: '10.1.2.3' }))).toBeDefined();
    expect(openMetricsWarning(readEdgeConfig({ ...env, INGEST_HOST: '0.0.0.0', METRICS_TOKEN: NEW }))).toBeUndefined();
    expect(openMetricsWarning(readEdgeConfig({ ...env, INGEST_HOST: '127.0.0.1' }))).toBeUndefined();
    expect(openMetricsWarning(readEdgeConfig({ ...env, INGEST_HOST: '::1' }))).toBeUndefined();
  });

  it('refuses to start with a token too short to be a secret (one line, the token not shown)', () => {
    expect(() => readEdgeConfig({ ...world.env(), METRICS_TOKEN: 'hunter2' })).toThrowError(
      /^invalid environment: METRICS_TOKEN: the token is 7 characters; at least 16 .*\(got "\[redacted\]"\)$/,
    );
  });

  describe('main.ts, EDGE_PROCESSES=2', () => {
    let edge: EdgeProcess;
    beforeAll(async () => {
      edge = await spawnEdge(
        world.env({ EDGE_PROCESSES: '2', INGEST_PORT: String(await freePort()), METRICS_TOKEN: NEW, LOG_LEVEL: 'info' }),
      );
    }, 60_000);
    afterAll(async () => {
      await edge?.stop();
    });

    it('every process asks for the token, and answers the sum of both with it', async () => {
      // Fresh connections: each may reach either process.
      for (let i = 0; i < 8; i++) expect((await freshRequest(edge.port, 'GET', '/metrics')).status).toBe(401);
      await waitUntil(
        async () =>
          /^edge_processes 2$/m.test((await freshRequest(edge.port, 'GET', '/metrics', { authorization: `Bearer ${NEW}` })).body),
        10_000,
        'both processes in the sum',
      );
      for (let i = 0; i < 8; i++) {
        const res = await freshRequest(edge.port, 'GET', '/metrics', { authorization: `Bearer ${NEW}` });
        expect(res.status).toBe(200);
        expect(res.body).toMatch(/^edge_processes 2$/m);
      }
      expect((await freshRequest(edge.port, 'GET', '/readyz')).status).toBe(200);
      // Listening on 127.0.0.1 with a token: nothing to warn about.
      expect(edge.output()).toContain('ingest edge listening');
      expect(edge.output()).not.toContain('/metrics is open');
    });
  });
});
