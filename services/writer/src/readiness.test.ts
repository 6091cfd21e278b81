import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { createReadiness, registerReadinessMetrics, type ReadinessOptions } from './readiness';

const never = () => new Promise<never>(() => undefined);

function setup(over: Partial<ReadinessOptions> = {}) {
  const state = { draining: false, started: true, pgCalls: 0 };
  const readiness = createReadiness({
    isDraining: () => state.draining,
    isStarted: () => state.started,
    pingPostgres: async () => state.pgCalls++,
    pingRedis: async () => 'PONG',
    timeoutMs: 50,
    ...over,
  });
  const registry = new Registry();
  registerReadinessMetrics(registry, readiness);
  return { state, readiness, registry };
}

describe('writer readiness (/readyz and writer_ready)', () => {
  it('exports writer_ready 1 and every writer_not_ready_reason at 0 when ready', async () => {
    const { registry } = setup();
    const text = await registry.metrics();
    expect(text).toMatch(/^writer_ready 1$/m);
    expect(text.match(/^writer_not_ready_reason\{reason="[^"]+"\} 0$/gm)).toEqual([
      'writer_not_ready_reason{reason="starting"} 0',
      'writer_not_ready_reason{reason="draining"} 0',
      'writer_not_ready_reason{reason="postgresql unreachable"} 0',
      'writer_not_ready_reason{reason="redis unreachable"} 0',
    ]);
  });

  it('gives the reason /readyz gives: starting, draining, PostgreSQL before Redis, a silent one after the timeout', async () => {
    const starting = setup();
    starting.state.started = false;
    expect(await starting.readiness()).toEqual({ ok: false, reason: 'starting' });
    starting.state.draining = true;
    expect(await starting.readiness()).toEqual({ ok: false, reason: 'draining' });

    const both = setup({ pingPostgres: () => Promise.reject(new Error('ECONNREFUSED')), pingRedis: never });
    const t0 = Date.now();
    expect(await both.readiness()).toEqual({ ok: false, reason: 'postgresql unreachable' });
    expect(Date.now() - t0).toBeLessThan(1000); // checked together: one timeout, not one each
    const text = await both.registry.metrics();
    expect(text).toMatch(/^writer_ready 0$/m);
    expect(text).toMatch(/^writer_not_ready_reason\{reason="postgresql unreachable"\} 1$/m);
    expect(text.match(/\} 1$/gm)).toHaveLength(1);

    const redisFrozen = setup({ pingRedis: never });
    expect(await redisFrozen.readiness()).toEqual({ ok: false, reason: 'redis unreachable' });
    expect(await redisFrozen.registry.metrics()).toMatch(/^writer_not_ready_reason\{reason="redis unreachable"\} 1$/m);
  });

  it('runs one check for calls made while one is running (a scrape and probes during a PostgreSQL freeze)', async () => {
    const { state, readiness, registry } = setup();
    await Promise.all([readiness(), readiness(), registry.metrics()]);
    expect(state.pgCalls).toBe(1);
    await readiness();
    expect(state.pgCalls).toBe(2);
  });
});
