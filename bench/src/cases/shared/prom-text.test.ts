import { Registry, collectDefaultMetrics } from 'prom-client';
import { expect, it } from 'vitest';
import { lagBeyondSampling, metricsHeaders, sampleValue } from './prom-text';

/**
 * The edge's event-loop lag figures subtract prom-client's sampling interval, because its histogram
 * holds the time between two samples, not how late a sample came: its minimum — a sample exactly on
 * time — reads the interval itself (~10 ms) and, less the interval, ~0 (before, the bench reported
 * an idle edge's p99 of 10.2 ms as its lag). Their mean is never below the interval, however busy
 * the machine (samples cannot come more often than every 10 ms on average), where lateness alone
 * would read ~0; the minimum can be: a sample that came late has the next one due 10 ms after its
 * due time, not after it came (a fresh-clone CI on a loaded machine read a minimum of 5.8 ms).
 */
it('reads prom-client’s lag histogram as the time between 10 ms samples: its on-time minimum is ~10 ms, ~0 beyond', async () => {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'edge_' });
  await registry.metrics(); // the histogram restarts at every scrape
  await new Promise((r) => setTimeout(r, 500));
  const text = await registry.metrics();
  const min = sampleValue(text, 'edge_nodejs_eventloop_lag_min_seconds')!;
  const mean = sampleValue(text, 'edge_nodejs_eventloop_lag_mean_seconds')!;
  expect(mean * 1000).toBeGreaterThan(9);
  expect(min * 1000).toBeLessThan(12);
  expect(lagBeyondSampling(min)).toBeLessThan(1);
});

it('scrapes with the METRICS_TOKEN the bench gave its services (BENCH_SERVICE_ENV), its first token of a list', () => {
  expect(metricsHeaders({})).toEqual({});
  expect(metricsHeaders({ BENCH_SERVICE_ENV: 'EDGE_PROCESSES=1' })).toEqual({});
  expect(metricsHeaders({ BENCH_SERVICE_ENV: `EDGE_PROCESSES=1 METRICS_TOKEN=${'n'.repeat(20)},${'o'.repeat(20)}` })).toEqual({
    authorization: `Bearer ${'n'.repeat(20)}`,
  });
});
