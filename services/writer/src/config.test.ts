import { describe, expect, it } from 'vitest';
import { openMetricsWarning, readWriterConfig } from './config';

const env = { DATABASE_URL: 'postgres://pga@127.0.0.1:5432/pga', REDIS_URL: 'redis://127.0.0.1:6379' };
const TOKEN = 't'.repeat(32);

describe("the writer's start-up warning of an open /metrics (as the edge's)", () => {
  it('warns only when /metrics is open on a non-loopback WRITER_HOST', () => {
    expect(openMetricsWarning(readWriterConfig({ ...env, WRITER_HOST: '0.0.0.0' }))).toBe(
      "/metrics is open to anyone who reaches the writer's operations port (WRITER_HOST 0.0.0.0): " +
        'set METRICS_TOKEN (`openssl rand -hex 32`) and scrape with Authorization: Bearer <token>',
    );
    expect(openMetricsWarning(readWriterConfig({ ...env, WRITER_HOST: '10.1.2.3' }))).toBeDefined();
    expect(openMetricsWarning(readWriterConfig({ ...env, WRITER_HOST: '0.0.0.0', METRICS_TOKEN: TOKEN }))).toBeUndefined();
    // The default (127.0.0.1) and other loopback addresses: nothing to say.
    expect(openMetricsWarning(readWriterConfig(env))).toBeUndefined();
    expect(openMetricsWarning(readWriterConfig({ ...env, WRITER_HOST: '::1' }))).toBeUndefined();
  });
});
