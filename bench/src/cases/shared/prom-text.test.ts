import { Registry, collectDefaultMetrics } from 'prom-client';
import { expect, it } from 'vitest';
import { lagBeyondSampling, sampleValue } from './prom-text';

/**
 * The edge's event-loop lag figures subtract prom-client's sampling interval: an idle process with
 * the edge's default metrics must read (nearly) no lag — before, the bench reported ~10 ms for it.
 */
it('reads an idle event loop as no lag from prom-client’s default metrics', async () => {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'edge_process_' });
  const read = async () => {
    const text = await registry.metrics();
    const p99 = sampleValue(text, 'edge_process_nodejs_eventloop_lag_p99_seconds')!;
    return { raw: p99 * 1000, beyond: lagBeyondSampling(p99) };
  };
  await read(); // the histogram restarts at every scrape
  await new Promise((r) => setTimeout(r, 500));
  const idle = await read();
  expect(idle.raw).toBeGreaterThan(9.5);
  expect(idle.beyond).toBeLessThan(3);
});
