import path from 'node:path';
import { Redis } from 'ioredis';
import { expect, it } from 'vitest';
import { freePort, startRedis, startOnFreePort } from '@pga/local-stack';
import { capturingLogger, testEnv, uniquePrefix } from '../helpers';
import { call, EdgeWorld } from './harness';

/**
 * Redis answers but refuses every write: a failover left the edge's address on a replica (here
 * `REPLICAOF` a primary that is not there). Before, every push got 503 with nothing in the log and
 * /readyz said ready, so a load balancer kept routing to an edge that refused everything. Now the
 * health check sees `role:slave` within a second: pushes get 503 at once with the reason, /readyz
 * says not ready and why, one warning says so, and all of it ends when Redis takes writes again.
 * Uses a Redis of its own (the replica switch would stop every other suite).
 */
it('Redis a read-only replica: 503 + Retry-After with the reason, /readyz not ready, one warning; back when it takes writes', async () => {
  const server = await startOnFreePort((port) =>
    startRedis({ dataDir: path.join(testEnv.dataDir, uniquePrefix('ro-redis')), port }),
  );
  const { logger, lines } = capturingLogger('edge-test');
  const admin = new Redis(server.url, { maxRetriesPerRequest: 1 });
  await using world = await EdgeWorld.create();
  try {
    const edge = await world.startEdge({ REDIS_URL: server.url }, logger);
    const s = await world.collector();
    const push = (i: number) => call(`${edge.url}/api/v1/metrics/push`, { token: s.token, body: `{"i":${i}}` });
    expect((await push(0)).status).toBe(200);

    await admin.replicaof('127.0.0.1', String(await freePort()));
    await expect
      .poll(async () => {
        const res = await push(1);
        return [res.status, res.json.error?.code, res.json.error?.message, res.headers.get('retry-after')];
      })
      .toEqual([503, 'UNAVAILABLE', 'queue is a read-only replica', expect.stringMatching(/^([5-9]|10)$/)]);
    const ready = await call(`${edge.url}/readyz`, { method: 'GET' });
    expect([ready.status, ready.json.reason]).toEqual([503, 'queue is a read-only replica']);
    for (let i = 2; i < 12; i++) expect((await push(i)).status).toBe(503);

    await admin.replicaof('NO', 'ONE');
    await expect.poll(async () => (await push(99)).status, { timeout: 5000 }).toBe(200);
    expect((await call(`${edge.url}/readyz`, { method: 'GET' })).status).toBe(200);

    const warnings = lines.filter((l) => l.level >= 40).map((l) => l.msg);
    expect(warnings.filter((m) => m === 'Redis is a read-only replica: refusing pushes')).toHaveLength(1);
    // A push that reached Redis before the check saw the switch adds the outage's one line; no
    // line per refused push either way.
    expect(warnings.filter((m) => m !== 'Redis is a read-only replica: refusing pushes')).toEqual(
      warnings.length === 1 ? [] : [expect.stringMatching(/^Redis refusing commands: READONLY /)],
    );
    expect(lines.map((l) => l.msg)).toContain('Redis takes writes again');
  } finally {
    await admin.replicaof('NO', 'ONE').catch(() => undefined);
    admin.disconnect();
    await server.stop();
  }
});
