import { describe, expect, it } from 'vitest';
import { freePort } from '@pga/local-stack';
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
