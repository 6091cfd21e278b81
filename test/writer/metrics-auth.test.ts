import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readWriterConfig } from '@pga/writer';
import { scrapeMetrics } from '../../bench/src/cases/shared/prom-text';
import { createTestDatabase, type TestDatabase } from '../helpers';
import { startWriterHarness, writerEnv, type WriterHarness } from './helpers';

/**
 * METRICS_TOKEN at the writer's operations port: /metrics answers only a Bearer token of the list
 * (two during a rotation), /healthz and /readyz stay open; unset, /metrics is open as before.
 */
const NEW = 'writer-metrics-new-'.padEnd(40, 'n');
const OLD = 'writer-metrics-old-'.padEnd(40, 'o');

describe('METRICS_TOKEN at the writer', () => {
  let db: TestDatabase;
  let guarded: WriterHarness;
  let open: WriterHarness;

  beforeAll(async () => {
    db = await createTestDatabase();
    guarded = await startWriterHarness(db.url, { METRICS_TOKEN: `${NEW},${OLD}` });
    open = await startWriterHarness(db.url);
  }, 60_000);
  afterAll(async () => {
    await guarded?.close();
    await open?.close();
    await db?.drop();
  });

  const scrape = async (url: string, headers: Record<string, string> = {}) => {
    const res = await fetch(`${url}/metrics`, { headers });
    return { status: res.status, headers: res.headers, text: await res.text() };
  };

  it('without the token: 401, a Bearer challenge, one line saying what is needed, no metric', async () => {
    const none = await scrape(guarded.url);
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toBe('Bearer realm="pganalytics-metrics"');
    expect(none.text).not.toContain('\n');
    expect(JSON.parse(none.text)).toEqual({
      error: { code: 'UNAUTHORIZED', message: '/metrics needs an Authorization: Bearer header with a token of METRICS_TOKEN' },
    });
    expect(none.text).not.toMatch(/writer_|# HELP/);

    const wrong = await scrape(guarded.url, { authorization: `Bearer ${NEW}x` });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get('www-authenticate')).toBe('Bearer realm="pganalytics-metrics", error="invalid_token"');
    expect(wrong.text).not.toMatch(/writer_|# HELP/);

    const basic = await scrape(guarded.url, { authorization: `Basic ${Buffer.from(`p:${NEW}`).toString('base64')}` });
    expect(basic.status).toBe(401);
    expect(basic.text).not.toMatch(/writer_|# HELP/);
  });

  it('HEAD without the token: 401 and no body', async () => {
    const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(`${guarded.url}/metrics`, { method: 'HEAD' }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      });
      req.on('error', reject);
      req.end();
    });
    expect(status).toBe(401);
    expect(body).toBe('');
  });

  it('with either token of the rotation list: 200 and the metrics', async () => {
    for (const token of [NEW, OLD]) {
      const res = await scrape(guarded.url, { authorization: `Bearer ${token}` });
      expect(res.status).toBe(200);
      expect(res.text).toMatch(/^writer_ready 1$/m);
    }
  });

  it("the bench's scrape sends the token it gave the services (BENCH_SERVICE_ENV), and says a 401 as one", async () => {
    expect(await scrapeMetrics(guarded.url, { BENCH_SERVICE_ENV: `WRITER_FLUSH_PARALLELISM=1 METRICS_TOKEN=${OLD}` })).toMatch(
      /^writer_ready 1$/m,
    );
    await expect(scrapeMetrics(guarded.url, {})).rejects.toThrowError(/\/metrics answered 401: .*METRICS_TOKEN/);
    expect(await scrapeMetrics(open.url, {})).toMatch(/^writer_ready 1$/m);
  });

  it('keeps /healthz and /readyz open', async () => {
    expect((await fetch(`${guarded.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${guarded.url}/readyz`)).status).toBe(200);
  });

  it('unset: /metrics open as before', async () => {
    const res = await scrape(open.url);
    expect(res.status).toBe(200);
    expect(res.text).toMatch(/^writer_ready 1$/m);
  });

  it('refuses to start with a token too short to be a secret (one line, the token not shown)', async () => {
    const env = await writerEnv(db.url, 'unused', { METRICS_TOKEN: 'hunter2' });
    expect(() => readWriterConfig(env)).toThrowError(
      /^invalid environment: METRICS_TOKEN: the token is 7 characters; at least 16 .*\(got "\[redacted\]"\)$/,
    );
  });
});
