import { createHash, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import type { PushItem, PushJob } from '@pga/contracts';
import { createPool, migrateDatabase, type Pool } from '@pga/db';
import { createLogger, type Logger } from '@pga/logger';
import { freePort, startOnFreePort, startPostgres } from '@pga/local-stack';
import { redisKeys, type RedisKeys } from '@pga/redis-keys';
import { createWriter, readWriterConfig, type Writer } from '@pga/writer';
import { testEnv, uniquePrefix } from '../helpers';

export const root = path.resolve(import.meta.dirname, '../..');
export const fixture = readFileSync(new URL('../fixtures/pganalytics-v3-push.sample.json', import.meta.url), 'utf8');

export const sha256 = (s: string | Buffer) => createHash('sha256').update(s).digest('hex');

export function pushItem(body: string, collectorId: string = randomUUID(), receivedAt = new Date()): PushItem {
  return {
    push_id: randomUUID(),
    collector_id: collectorId,
    received_at: receivedAt.toISOString(),
    checksum: sha256(body),
    body,
  };
}

/** Inserts a collector (status pending) and returns its id. */
export async function insertCollector(pool: Pool, fields: { interval?: number; status?: string; registeredAt?: Date } = {}) {
  const { rows } = await pool.query<{ id: string }>(
    `INSERT INTO collectors (name, type, environment, host, database, username, password_encrypted, collection_interval, status, registered_at)
     VALUES ($1, 'postgresql', 'production', 'db.local', 'app', 'u', 'x', $2, $3, $4) RETURNING id`,
    [`c-${randomUUID().slice(0, 8)}`, fields.interval ?? 60, fields.status ?? 'pending', fields.registeredAt ?? new Date()],
  );
  return rows[0]!.id;
}

/** Env for a writer of one test: its own Redis prefix and a free ops port. */
export async function writerEnv(
  dbUrl: string,
  prefix: string,
  extra: Record<string, string> = {},
): Promise<Record<string, string>> {
  return {
    DATABASE_URL: dbUrl,
    REDIS_URL: testEnv.redisUrl,
    REDIS_KEY_PREFIX: prefix,
    WRITER_PORT: String(await freePort()),
    WRITER_HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    WRITER_MIGRATE: 'false',
    ...extra,
  };
}

export interface WriterHarness extends AsyncDisposable {
  writer: Writer;
  pool: Pool;
  redis: Redis;
  queue: Queue<PushJob>;
  keys: RedisKeys;
  prefix: string;
  url: string;
  enqueue(pushes: PushItem[], opts?: { attempts?: number; jobId?: string }): Promise<string>;
  /** Resolves when the job is in `state`. */
  waitForJob(id: string, state: 'completed' | 'failed' | 'delayed', timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

/** An in-process writer on the test database with its own Redis prefix, plus a producer queue. */
export async function startWriterHarness(
  dbUrl: string,
  extra: Record<string, string> = {},
  logger?: Logger,
): Promise<WriterHarness> {
  const prefix = extra.REDIS_KEY_PREFIX ?? uniquePrefix('writer');
  const env = await writerEnv(dbUrl, prefix, extra);
  const config = readWriterConfig(env);
  const writer = createWriter({
    config,
    logger: logger ?? createLogger({ name: 'writer-test', level: env.LOG_LEVEL, pretty: false }),
  });
  await writer.start();
  const keys = redisKeys(prefix);
  const redis = new Redis(config.REDIS_URL, { maxRetriesPerRequest: null });
  const queue = new Queue<PushJob>(keys.pushQueue, { connection: redis, prefix: keys.bullPrefix });
  const pool = createPool(dbUrl, { max: 3 });
  const close = async () => {
    await writer.stop();
    await queue.close();
    await redis.quit();
    await pool.end();
  };
  return {
    writer,
    pool,
    redis,
    queue,
    keys,
    prefix,
    url: `http://127.0.0.1:${config.WRITER_PORT}`,
    async enqueue(pushes, opts = {}) {
      const job = await queue.add(
        'push',
        { v: 1, pushes },
        {
          attempts: opts.attempts ?? 3,
          backoff: { type: 'fixed', delay: 100 },
          removeOnComplete: false,
          ...(opts.jobId ? { jobId: opts.jobId } : {}),
        },
      );
      return job.id!;
    },
    async waitForJob(id, state, timeoutMs = 20_000) {
      await waitUntil(`job ${id} ${state}`, async () => (await queue.getJobState(id)) === state, timeoutMs);
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

export async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 20_000, everyMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/**
 * A PostgreSQL of the test's own, to stop and start again without touching the shared one: one
 * migrated database `database`; `restart()` starts it again on the same port and folder. `dataDir`:
 * the cluster's folder (to copy while it is stopped).
 */
export async function ownPostgres(
  database: string,
): Promise<{ url: string; dataDir: string; stop(): Promise<void>; restart(): Promise<void> }> {
  const dataDir = path.join(testEnv.dataDir, uniquePrefix(`pg-${database}`));
  // Any port first; restart() must take the same one (its clients know it).
  let pg = await startOnFreePort((port) => startPostgres({ dataDir, port, ephemeral: true }));
  const port = pg.port;
  const admin = createPool(pg.url, { max: 1 });
  await admin.query(`CREATE DATABASE ${database}`);
  await admin.end();
  const url = pg.urlFor(database);
  await migrateDatabase(url);
  return {
    url,
    dataDir: pg.dataDir,
    stop: () => pg.stop(),
    async restart() {
      pg = await startPostgres({ dataDir, port, ephemeral: true });
    },
  };
}

/**
 * What the edge's heartbeat MULTI writes (services/ingest-edge/src/routes/heartbeat-route.ts) for a
 * heartbeat of collector `id` at `seen` reporting a collection time of `ms`: the hash (replaced),
 * the dirty mark and the report, capped to the newest 200.
 */
export async function writeHeartbeatReport(
  h: { redis: Redis; keys: RedisKeys },
  id: string,
  seen: Date,
  ms: number,
): Promise<void> {
  const times = h.keys.heartbeatCollectionTimes(id);
  await h.redis
    .multi()
    .del(h.keys.heartbeat(id))
    .hset(h.keys.heartbeat(id), {
      last_seen: seen.toISOString(),
      status: 'active',
      collection_times: 'reports',
      collection_time_ms: String(ms),
    })
    .sadd(h.keys.heartbeatDirty, id)
    .zadd(times, seen.getTime(), `${seen.getTime()}:${ms}`)
    .zremrangebyrank(times, 0, -201)
    .exec();
}
