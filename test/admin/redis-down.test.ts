import { describe, expect, it } from 'vitest';
import { createPool } from '@pga/db';
import { freePort } from '@pga/local-stack';
import { readiness } from '../../services/admin-api/src/http/readiness';
import { createHarness } from './harness';
import { form } from './fixtures';

describe('with Redis unreachable', () => {
  it('still registers (PostgreSQL is the truth) but refuses to record a command it cannot deliver', async () => {
    await using h = await createHarness({ REDIS_URL: `redis://127.0.0.1:${await freePort()}` });
    const admin = h.caller(h.admin);
    const { collector } = await admin.collectors.register(form());
    expect(collector.config_version).toBe(1);
    await expect(admin.collectors.sendCommand({ id: collector.id, action: 'stop' })).rejects.toMatchObject({
      code: 'SERVICE_UNAVAILABLE',
      message: expect.stringMatching(/could not be queued/),
    });
    const { rows } = await h.service.deps.pool.query('SELECT count(*)::int AS n FROM collector_commands');
    expect(rows[0].n).toBe(0);
    const audit = await h.service.deps.pool.query("SELECT 1 FROM collector_audit_log WHERE action = 'collector.command'");
    expect(audit.rowCount).toBe(0);
  });
});

describe('/readyz', () => {
  it('is 200 when PostgreSQL and Redis answer; 503 naming the one that does not, while /healthz stays 200', async () => {
    {
      await using h = await createHarness();
      const url = await h.listen();
      const res = await fetch(`${url}/readyz`);
      expect([res.status, await res.json()]).toEqual([200, { status: 'ready' }]);
    }
    await using h = await createHarness({ REDIS_URL: `redis://127.0.0.1:${await freePort()}` });
    const url = await h.listen();
    const res = await fetch(`${url}/readyz`);
    expect([res.status, await res.json()]).toEqual([503, { status: 'not ready', reason: 'Redis not answering' }]);
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    // PostgreSQL away too (a pool on a port nothing listens on).
    const pool = createPool(`postgres://pga@127.0.0.1:${await freePort()}/pga`, { max: 1 });
    pool.on('error', () => undefined);
    try {
      expect(await readiness({ pool, redis: h.service.deps.redis })).toEqual({
        status: 503,
        body: { status: 'not ready', reason: 'PostgreSQL not answering; Redis not answering' },
      });
    } finally {
      await pool.end();
    }
  });
});
