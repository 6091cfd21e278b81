import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import { capturingLogger } from '../helpers';
import { call, EdgeWorld, startFailingDiskRedis } from './harness';

/**
 * Redis cannot write its append-only file (a full disk, here: its file-size limit lowered with
 * `prlimit`, with SIGXFSZ ignored so that the write fails with EFBIG instead of killing it). Redis
 * then answers every write `MISCONF Errors writing to the AOF file` until a write succeeds again.
 * Every push got 503 (right), but /readyz said ready all along, unlike for a replica or a Redis over
 * its memory budget. Now the health check sees `aof_last_write_status:err`: 503 + Retry-After with
 * the reason, /readyz not ready and why, one warning; all of it ends when Redis writes again.
 */
it('Redis failing its AOF writes: /readyz not ready with the reason, pushes 503 + Retry-After; back by itself', async () => {
  const { url, dir, fsize, stop } = await startFailingDiskRedis('aof-fail-redis', [
    '--save',
    '',
    '--appendonly',
    'yes',
    '--appendfsync',
    'everysec',
    '--maxmemory-policy',
    'noeviction',
  ]);
  const { logger, lines } = capturingLogger('edge-test');
  await using world = await EdgeWorld.create();
  try {
    const edge = await world.startEdge({ REDIS_URL: url }, logger);
    const c = await world.collector();
    const push = (i: number) =>
      call(`${edge.url}/api/v1/metrics/push`, { token: c.token, body: `{"i":${i},"pad":"${'x'.repeat(2000)}"}` });
    expect((await push(0)).status).toBe(200);

    const aofDir = path.join(dir, 'appendonlydir');
    fsize(String(Math.max(...readdirSync(aofDir).map((f) => statSync(path.join(aofDir, f)).size)) + 4096));
    let i = 1;
    await expect
      .poll(
        async () => {
          const res = await push(i++);
          return [res.status, res.json.error?.message, res.headers.get('retry-after')];
        },
        { timeout: 10_000 },
      )
      .toEqual([503, 'queue cannot write its append-only file', expect.stringMatching(/^([5-9]|10)$/)]);
    const ready = await call(`${edge.url}/readyz`, { method: 'GET' });
    expect([ready.status, ready.json.reason]).toEqual([503, 'queue cannot write its append-only file']);

    fsize('unlimited');
    await expect.poll(async () => (await push(i++)).status, { timeout: 10_000 }).toBe(200);
    expect((await call(`${edge.url}/readyz`, { method: 'GET' })).status).toBe(200);
    const said = lines.map((l) => l.msg);
    expect(said.filter((m) => /^Redis cannot write its append-only file/.test(m))).toHaveLength(1);
    expect(said).toContain('Redis writes its append-only file again');
  } finally {
    stop();
  }
});
