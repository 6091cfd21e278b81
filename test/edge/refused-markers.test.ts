import path from 'node:path';
import { Redis } from 'ioredis';
import { expect, it } from 'vitest';
import { startRedis, startOnFreePort } from '@pga/local-stack';
import { testEnv, uniquePrefix } from '../helpers';
import { call, EdgeWorld } from './harness';

/**
 * A batch whose claim Redis ran but whose job it refused, and whose markers it then would not free
 * either: what a Redis that starts refusing writes between the two does (an AOF write failing —
 * MISCONF — seen in the Redis fault audit: 3 collectors' retries answered "in flight" until 23 s
 * after Redis was fine again). Reproduced here with an ACL that refuses the job's EVALSHA and the
 * markers' DEL while the claim's EVAL passes. The retry must be stored once Redis takes writes
 * again, not refused until the batch's pending state (30 s) expires. Uses a Redis of its own.
 */
it("a refused batch's markers are freed once Redis takes the DEL again: the retry is stored at once", async () => {
  const server = await startOnFreePort((port) =>
    startRedis({ dataDir: path.join(testEnv.dataDir, uniquePrefix('markers-redis')), port }),
  );
  const admin = new Redis(server.url, { maxRetriesPerRequest: 1 });
  await using world = await EdgeWorld.create({ redisUrl: server.url });
  try {
    const edge = await world.startEdge({ RATE_LIMIT_PER_SECOND: '0' });
    const c = await world.collector();
    const push = (body: string) => call(`${edge.url}/api/v1/metrics/push`, { token: c.token, body });
    expect((await push('{"warm":1}')).status).toBe(200);

    await admin.call('ACL', 'SETUSER', 'default', '-evalsha', '-del');
    const body = '{"refused":1}';
    const refused = await push(body);
    expect([refused.status, refused.json.error.message]).toEqual([503, 'queue unavailable']);
    await admin.call('ACL', 'SETUSER', 'default', '+evalsha', '+del');

    const started = Date.now();
    await expect
      .poll(
        async () => {
          const res = await push(body);
          return [res.status, res.json.duplicate ?? res.json.error?.message];
        },
        { timeout: 5000, interval: 250 },
      )
      .toEqual([200, false]);
    expect(Date.now() - started).toBeLessThan(5000);
    const stored = (await world.queuedPushes()).filter((p) => p.body === body);
    expect(stored).toHaveLength(1);
  } finally {
    await admin.call('ACL', 'SETUSER', 'default', '+@all').catch(() => undefined);
    admin.disconnect();
    await server.stop();
  }
});
