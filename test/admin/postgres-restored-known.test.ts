import type { PoolClient } from 'pg';
import { expect, it, vi } from 'vitest';
import { freePort } from '@pga/local-stack';
import { createLogger } from '@pga/logger';
import { createWriter, readWriterConfig } from '@pga/writer';
import { reconcileDenyState } from '../../services/admin-api/src/collectors/reconcile-deny-state';
import { call, spawnEdge } from '../edge/harness';
import { testEnv } from '../helpers';
import { createHarness, edgeEnvOf, type Harness } from './harness';
import { form } from './fixtures';

const REGISTERED_AFTER = 'registered after the backup PostgreSQL was restored from';

/** PostgreSQL restored to `backupAt`: the rows of `ids` gone (tokens, commands with them), the audit entries since too. */
async function restoreBefore(h: Harness, backupAt: Date, ids: string[]): Promise<void> {
  const { pool } = h.service.deps;
  await pool.query('DELETE FROM collectors WHERE id = ANY($1::uuid[])', [ids]);
  await pool.query('DELETE FROM collector_audit_log WHERE created_at > $1', [backupAt]);
}

const errorsSaying = (error: { mock: { calls: unknown[][] } }, text: string) =>
  error.mock.calls.filter((c) => String(c[1]).includes(text)).map((c) => c[0] as Record<string, unknown>);

/**
 * PostgreSQL restored from a backup older than a collector's registration, Redis kept: the
 * collector has no row, yet its token verified — the edges refuse what the deny state lists, not
 * what PostgreSQL lacks. Its pushes were accepted and stored without a collector, no admin could see
 * or revoke it, and the only remedy was a SADD by hand and a restart of every edge. Now every
 * registration is recorded in Redis's known set after it commits, and the admin service's repair
 * refuses an id Redis knows and PostgreSQL lacks as a deleted collector (401, change feed).
 */
it(
  'a collector registered after the backup PostgreSQL was restored from is refused (401) by a running edge after the repair; one registered before keeps working',
  { timeout: 120_000 },
  async () => {
    await using h = await createHarness();
    const { deps } = h.service;
    const { redis, keys, pool } = deps;
    const caller = h.caller(h.admin);
    const silent = createLogger({ name: 'writer', level: 'silent', pretty: false });
    const c = deps.config;
    const writer = createWriter({
      config: readWriterConfig({
        DATABASE_URL: c.DATABASE_URL,
        REDIS_URL: c.REDIS_URL,
        REDIS_KEY_PREFIX: c.REDIS_KEY_PREFIX,
        JWT_SECRET: c.JWT_SECRET,
        ENCRYPTION_KEY: c.ENCRYPTION_KEY,
        WRITER_PORT: String(await freePort()),
        WRITER_HOST: '127.0.0.1',
        LOG_LEVEL: 'silent',
      }),
      logger: silent,
    });
    await writer.start();
    let edge = await spawnEdge(edgeEnvOf(h, testEnv.redisUrl));
    try {
      const push = async (token: string, n: number) =>
        call(`${edge.url}/api/v1/metrics/push`, { token, body: JSON.stringify({ metrics: [{ type: 'restore_probe', n }] }) });
      const heartbeat = async (id: string, token: string) =>
        (await call(`${edge.url}/api/v1/collectors/${id}/heartbeat`, { token, body: '{}' })).status;
      const stored = async (id: string) =>
        (await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM collector_metrics WHERE collector_id = $1', [id]))
          .rows[0]!.n;

      const before = await caller.collectors.register(form());
      const { secret } = await caller.enrollment.create({ name: 'fleet', environment: 'production', max_uses: 5 });
      // The "backup" is taken here.
      const backupAt = (await pool.query<{ t: Date }>('SELECT clock_timestamp() AS t')).rows[0]!.t;

      const after = await caller.collectors.register(form());
      const enrolled = await call(`${edge.url}/api/v1/collectors/register`, {
        headers: { 'x-registration-secret': secret },
        body: JSON.stringify({ name: 'enrolled-after-backup', hostname: 'db-9.internal' }),
      });
      expect(enrolled.status).toBe(200);
      const e = enrolled.json as { collector_id: string; token: string };
      const ids = { before: before.collector.id, after: after.collector.id, enrolled: e.collector_id };
      // Each registration is known to Redis once it committed (admin, edge enrollment).
      expect((await redis.smembers(keys.knownCollectors)).toSorted()).toEqual(Object.values(ids).toSorted());
      expect((await push(after.token, 1)).status).toBe(200);
      await expect.poll(() => stored(ids.after), { timeout: 10_000 }).toBe(1);

      await restoreBefore(h, backupAt, [ids.after, ids.enrolled]);
      await pool.query('DELETE FROM collector_metrics WHERE collector_id = $1', [ids.after]);

      // Until the repair: the gap as it was — accepted, and stored without a collector.
      expect((await push(after.token, 2)).status).toBe(200);
      await expect.poll(() => stored(ids.after), { timeout: 10_000 }).toBe(1);
      expect(await heartbeat(ids.enrolled, e.token)).toBe(200);

      // The admin service's repair (at its start, so restarting it after the restore runs it).
      const error = vi.spyOn(deps.logger, 'error');
      expect(await reconcileDenyState(deps)).toBe(2);
      const said = errorsSaying(error, REGISTERED_AFTER);
      expect(said).toHaveLength(1);
      expect(said[0]).toMatchObject({ collectors: 2 });
      expect((said[0]!.ids as string[]).toSorted()).toEqual([ids.after, ids.enrolled].toSorted());
      for (const id of [ids.after, ids.enrolled]) {
        expect(await redis.sismember(keys.deniedCollectors, id)).toBe(1);
        expect(await redis.sismember(keys.deletedCollectors, id)).toBe(1);
      }

      // The running edge refuses both within a second or so (change feed), as a deleted collector: 401.
      await expect.poll(async () => (await push(after.token, 3)).status, { timeout: 5_000 }).toBe(401);
      const refused = await push(after.token, 4);
      expect(refused.json.error).toMatchObject({ code: 'UNAUTHORIZED', message: 'collector was deleted' });
      expect(await heartbeat(ids.enrolled, e.token)).toBe(401);
      expect((await call(`${edge.url}/api/v1/collectors/refresh-token`, { token: after.token, body: '' })).status).toBe(401);
      // The one registered before the backup keeps working, its pushes stored.
      expect((await push(before.token, 5)).status).toBe(200);
      expect(await heartbeat(ids.before, before.token)).toBe(200);
      await expect.poll(() => stored(ids.before), { timeout: 10_000 }).toBe(1);
      expect(await stored(ids.after)).toBe(1); // nothing of the refused pushes

      // Said once: the next repair finds them refused already.
      error.mockClear();
      expect(await reconcileDenyState(deps)).toBe(0);
      expect(errorsSaying(error, REGISTERED_AFTER)).toHaveLength(0);
      expect(await redis.sismember(keys.deletedCollectors, ids.after)).toBe(1);

      // An edge started now (Redis's sets unioned with PostgreSQL's) refuses it too; a new
      // registration is admitted.
      await edge.stop();
      edge = await spawnEdge(edgeEnvOf(h, testEnv.redisUrl));
      expect((await push(after.token, 6)).status).toBe(401);
      const again = await caller.collectors.register(form());
      expect((await push(again.token, 7)).status).toBe(200);
      expect((await push(before.token, 8)).status).toBe(200);
    } finally {
      await edge.stop();
      await writer.stop().catch(() => undefined);
    }
  },
);

/**
 * The known set is written after the registration commits, and the repair reads it before
 * PostgreSQL: a repair running at any point of a registration never takes it for one PostgreSQL
 * lost. Staged at each point: the registration's transaction open, committed but not yet recorded,
 * and recorded between the repair's two reads.
 */
it('a repair running concurrently with a registration never denies it', { timeout: 60_000 }, async () => {
  await using h = await createHarness();
  const { deps } = h.service;
  const { redis, keys, pool } = deps;
  const caller = h.caller(h.admin);
  await caller.collectors.register(form()); // PostgreSQL holds one collector Redis knows
  const error = vi.spyOn(deps.logger, 'error');
  const refused = async (id: string) =>
    (await redis.sismember(keys.deniedCollectors, id)) + (await redis.sismember(keys.deletedCollectors, id));

  // 1. The registration's transaction is open (its INSERT done) while a whole repair runs.
  const connect = pool.connect.bind(pool) as () => Promise<PoolClient>;
  let repaired!: Promise<number>;
  (pool as unknown as { connect: () => Promise<PoolClient> }).connect = async () => {
    (pool as unknown as { connect: () => Promise<PoolClient> }).connect = connect;
    const client = await connect();
    const query = client.query.bind(client) as (...a: unknown[]) => Promise<unknown>;
    client.query = ((text: unknown, ...rest: unknown[]) => {
      if (text === 'COMMIT') {
        client.query = query as PoolClient['query'];
        repaired = reconcileDenyState(deps);
        return repaired.then(() => query(text, ...rest));
      }
      return query(text, ...rest);
    }) as PoolClient['query'];
    return client;
  };
  const first = (await caller.collectors.register(form())).collector.id;
  await repaired;

  // 2. Committed, not yet recorded as known: the repair adds it from PostgreSQL.
  const sadd = redis.sadd.bind(redis) as (...a: unknown[]) => Promise<number>;
  let once = true;
  (redis as unknown as { sadd: typeof sadd }).sadd = async (...args: unknown[]) => {
    if (once && args[0] === keys.knownCollectors) {
      once = false;
      await reconcileDenyState(deps);
    }
    return sadd(...args);
  };
  const second = (await caller.collectors.register(form())).collector.id;
  (redis as unknown as { sadd: typeof sadd }).sadd = sadd;

  // 3. A registration committed and recorded after the repair began, before it read Redis's set.
  const smembers = redis.smembers.bind(redis) as (key: string) => Promise<string[]>;
  let third = '';
  (redis as unknown as { smembers: typeof smembers }).smembers = async (key: string) => {
    if (key === keys.knownCollectors && !third) third = (await caller.collectors.register(form())).collector.id;
    return smembers(key);
  };
  await reconcileDenyState(deps);
  (redis as unknown as { smembers: typeof smembers }).smembers = smembers;
  expect(third).not.toBe('');

  await reconcileDenyState(deps);
  for (const id of [first, second, third]) {
    expect(await refused(id)).toBe(0);
    expect(await redis.sismember(keys.knownCollectors, id)).toBe(1);
  }
  expect(errorsSaying(error, REGISTERED_AFTER)).toHaveLength(0);
});

/**
 * An installation upgraded from before the known set (or a Redis emptied): the set is empty, and an
 * id in neither Redis nor PostgreSQL cannot be told from one never registered: nothing is denied,
 * and the repair fills the set from PostgreSQL. A Redis gone back to an older copy lacks the
 * registrations since; PostgreSQL has them, and the repair adds them back. Bulk imports are
 * recorded too.
 */
it('an empty known set (upgrade) denies nothing and is filled from PostgreSQL; a set missing recent registrations gets them back', async () => {
  await using h = await createHarness();
  const { deps } = h.service;
  const { redis, keys, pool } = deps;
  const caller = h.caller(h.admin);
  const a = (await caller.collectors.register(form())).collector.id;
  const imported = await caller.collectors.bulkImport({ format: 'json', content: JSON.stringify([form(), form()]) });
  expect(imported.created).toBe(2);
  const bulk = imported.rows.map((r) => r.collector_id!);
  expect((await redis.smembers(keys.knownCollectors)).toSorted()).toEqual([a, ...bulk].toSorted());
  const backupAt = (await pool.query<{ t: Date }>('SELECT clock_timestamp() AS t')).rows[0]!.t;
  const b = (await caller.collectors.register(form())).collector.id;

  // As before the upgrade: no known set. Then PostgreSQL restored behind b.
  await redis.del(keys.knownCollectors);
  await restoreBefore(h, backupAt, [b]);
  const error = vi.spyOn(deps.logger, 'error');
  expect(await reconcileDenyState(deps)).toBe(0);
  expect(await redis.sismember(keys.deniedCollectors, b)).toBe(0);
  expect(error).not.toHaveBeenCalled();
  expect((await redis.smembers(keys.knownCollectors)).toSorted()).toEqual([a, ...bulk].toSorted());

  // Redis back to a copy from before c's registration: c is added again, nothing denied.
  const cId = (await caller.collectors.register(form())).collector.id;
  await redis.srem(keys.knownCollectors, cId);
  expect(await reconcileDenyState(deps)).toBe(0);
  expect(await redis.sismember(keys.knownCollectors, cId)).toBe(1);
  expect(await redis.sismember(keys.deniedCollectors, cId)).toBe(0);
  expect(error).not.toHaveBeenCalled();
});

/**
 * A PostgreSQL that holds none of the collectors Redis knows, with this installation's id: a backup
 * older than every registration. Before the installation id the repair denied nothing here (it could
 * be a wrong DATABASE_URL), and one collector registered in that database lifted the guard — for a
 * wrong database too, refusing the whole real fleet (test/admin/installation-id.test.ts). The id
 * tells the two apart: this installation's backup has every lost registration refused at once.
 */
it('a backup of this installation older than every registration: every collector Redis knows is refused', async () => {
  await using h = await createHarness();
  const { deps } = h.service;
  const { redis, keys } = deps;
  const caller = h.caller(h.admin);
  const a = (await caller.collectors.register(form())).collector.id;
  const b = (await caller.collectors.register(form())).collector.id;
  expect(await reconcileDenyState(deps)).toBe(0); // Redis holds the installation id
  await restoreBefore(h, new Date(), [a, b]);
  const error = vi.spyOn(deps.logger, 'error');
  await redis.sadd(keys.knownCollectors, 'not-a-collector-id'); // written by hand: ignored
  expect(await reconcileDenyState(deps)).toBe(2);
  for (const id of [a, b]) expect(await redis.sismember(keys.deletedCollectors, id)).toBe(1);
  expect(errorsSaying(error, 'PostgreSQL holds none of the collectors Redis knows')).toHaveLength(0);
  expect(errorsSaying(error, REGISTERED_AFTER)).toHaveLength(1);
  const c = (await caller.collectors.register(form())).collector.id;
  expect(await reconcileDenyState(deps)).toBe(0);
  expect(await redis.sismember(keys.deniedCollectors, c)).toBe(0);
});
