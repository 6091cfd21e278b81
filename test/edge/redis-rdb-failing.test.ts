import { randomUUID } from 'node:crypto';
import { expect, it } from 'vitest';
import { capturingLogger } from '../helpers';
import { call, EdgeWorld, startFailingDiskRedis, waitUntil } from './harness';

/**
 * Redis's RDB save fails (its file-size limit lowered with `prlimit`, SIGXFSZ ignored: the save's
 * write fails with EFBIG). With `stop-writes-on-bgsave-error yes` (the default) Redis then answers
 * every write `MISCONF … unable to persist to disk` until a save succeeds: every push got 503, and
 * /readyz said ready all along. With it off, Redis takes writes as ever, and so must the edge. CONFIG
 * is renamed away, as managed Redis (ElastiCache) refuses it: the edge must not need it.
 */
it('Redis failing its RDB save: not ready and 503 only while Redis refuses writes for it (stop-writes-on-bgsave-error), without CONFIG', async () => {
  const config = `config-${randomUUID()}`;
  const { url, admin, fsize, stop } = await startFailingDiskRedis('rdb-fail-redis', [
    // A save point no test run reaches: Redis does not retry the failed save by itself.
    '--save',
    '3600 1',
    '--appendonly',
    'no',
    '--maxmemory-policy',
    'noeviction',
    '--rename-command',
    'CONFIG',
    config,
  ]);
  const save = async (status: 'ok' | 'err') => {
    await admin.bgsave();
    await waitUntil(
      async () => (await admin.info('persistence')).includes(`rdb_last_bgsave_status:${status}\r`),
      10_000,
      `save ${status}`,
    );
  };
  const { logger, lines } = capturingLogger('edge-test');
  await using world = await EdgeWorld.create();
  try {
    const edge = await world.startEdge({ REDIS_URL: url }, logger);
    const c = await world.collector();
    let i = 0;
    const push = async () => {
      const res = await call(`${edge.url}/api/v1/metrics/push`, {
        token: c.token,
        body: `{"i":${i++},"pad":"${'x'.repeat(2000)}"}`,
      });
      return [res.status, res.json.error?.message, res.headers.get('retry-after')];
    };
    const ready = async () => {
      const res = await call(`${edge.url}/readyz`, { method: 'GET' });
      return [res.status, res.json.reason];
    };
    expect(await push()).toEqual([200, undefined, null]);

    fsize('1024');
    await save('err');
    await expect
      .poll(push, { timeout: 10_000 })
      .toEqual([503, 'queue cannot save its RDB snapshot', expect.stringMatching(/^([5-9]|10)$/)]);
    expect(await ready()).toEqual([503, 'queue cannot save its RDB snapshot']);

    // stop-writes-on-bgsave-error off: the save still failed, but Redis takes writes, and so does the edge.
    await admin.call(config, 'SET', 'stop-writes-on-bgsave-error', 'no');
    await expect.poll(push, { timeout: 10_000 }).toEqual([200, undefined, null]);
    expect(await ready()).toEqual([200, undefined]);
    expect(await admin.info('persistence')).toContain('rdb_last_bgsave_status:err');
    await admin.call(config, 'SET', 'stop-writes-on-bgsave-error', 'yes');
    await expect
      .poll(push, { timeout: 10_000 })
      .toEqual([503, 'queue cannot save its RDB snapshot', expect.stringMatching(/^([5-9]|10)$/)]);

    // A save that succeeds ends it.
    fsize('unlimited');
    await save('ok');
    await expect.poll(push, { timeout: 10_000 }).toEqual([200, undefined, null]);
    expect(await ready()).toEqual([200, undefined]);
    const said = lines.map((l) => l.msg);
    expect(said.filter((m) => /^Redis cannot save its RDB snapshot/.test(m))).toHaveLength(2);
    expect(said.filter((m) => m === 'Redis takes writes again after its failed RDB save')).toHaveLength(2);
  } finally {
    stop();
  }
});
