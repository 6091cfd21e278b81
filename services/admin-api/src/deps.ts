import { Redis } from 'ioredis';
import { Queue } from 'bullmq';
import { createPool, type Pool } from '@pga/db';
import { createOutageLog, type Logger } from '@pga/logger';
import { createSecretBox, type SecretBox } from '@pga/crypto';
import { createCollectorTokens, type CollectorTokens } from '@pga/tokens';
import { redisKeys, type RedisKeys } from '@pga/redis-keys';
import type { AdminConfig } from './config';
import { createSemaphore, type Semaphore } from './connection-test/semaphore';
import { createLiveFeed, type LiveFeed } from './live/live-feed';
import { loadAuditMarkerKey } from './audit/marker-key';
import { validSessions } from './auth/sessions';
import { createSessionLookup, type SessionLookup } from './auth/session-lookup';
import { createSessionSigner } from './auth/session-signer';

/** Everything a procedure may use; built once per process by `createDeps`. */
export interface Deps {
  config: AdminConfig;
  logger: Logger;
  pool: Pool;
  redis: Redis;
  keys: RedisKeys;
  secretBox: SecretBox;
  tokens: CollectorTokens;
  /** Bounds concurrent connection tests across every caller. */
  connectionTests: Semaphore;
  liveFeed: LiveFeed;
  /**
   * Session lookups of requests: only cookies this installation signed (a MAC under a key derived
   * from ENCRYPTION_KEY), bounded concurrency and wait, unknown ids remembered a few seconds.
   */
  sessionLookup: SessionLookup;
  /** The key of the audit log's `unknown user #…` markers (audit/marker-key.ts), read once (again after a failure). */
  auditMarkerKey(): Promise<Buffer>;
  /** The BullMQ push queue (dead letters), opened on first use. */
  pushQueue(): Queue;
  /**
   * A committed change did not reach Redis (publish or config_version): calls `onRedisWriteLost`,
   * which the admin service sets to schedule its repair from PostgreSQL.
   */
  redisWriteLost(): void;
  onRedisWriteLost: (() => void) | undefined;
  close(): Promise<void>;
}

export function createDeps(config: AdminConfig, logger: Logger): Deps {
  const pool = createPool(config.DATABASE_URL, { max: 10, applicationName: 'pga-admin', logger });
  const redis = new Redis(config.REDIS_URL, { maxRetriesPerRequest: 3, lazyConnect: false });
  // One line when Redis goes away (for every connection of this process), one a minute while it
  // stays away, one when it is back: not one per reconnect attempt and connection.
  const redisOutage = createOutageLog(logger, 'Redis');
  redis.on('error', (err) => redisOutage.error(err, 'redis error'));
  redis.on('ready', () => redisOutage.recovered());
  const keys = redisKeys(config.REDIS_KEY_PREFIX);
  const liveFeed = createLiveFeed({
    redisUrl: config.REDIS_URL,
    channel: keys.statusChannel,
    sessionsChannel: keys.sessionsEndedChannel,
    checkSessions: (hashes) => validSessions(pool, hashes),
    sessionCheckMs: config.LIVE_FEED_SESSION_CHECK_MS,
    limits: {
      perSession: config.LIVE_FEED_MAX_PER_SESSION,
      perUser: config.LIVE_FEED_MAX_PER_USER,
      perProcess: config.LIVE_FEED_MAX_SUBSCRIBERS,
    },
    logger,
    redisOutage,
  });
  let queue: Queue | undefined;
  const secretBox = createSecretBox(config.ENCRYPTION_KEY);
  let markerKey: Promise<Buffer> | undefined;
  return {
    onRedisWriteLost: undefined,
    redisWriteLost() {
      this.onRedisWriteLost?.();
    },
    config,
    logger,
    pool,
    redis,
    keys,
    secretBox,
    tokens: createCollectorTokens({ secret: config.JWT_SECRET, issuer: config.JWT_ISSUER, audience: config.JWT_AUDIENCE }),
    connectionTests: createSemaphore(config.CONNECTION_TEST_CONCURRENCY),
    liveFeed,
    sessionLookup: createSessionLookup(pool, createSessionSigner(config.ENCRYPTION_KEY), {
      maxConcurrent: config.SESSION_LOOKUP_CONCURRENCY,
      waitMs: config.SESSION_LOOKUP_WAIT_MS,
    }),
    auditMarkerKey() {
      markerKey ??= loadAuditMarkerKey(pool, secretBox, logger).catch((err: unknown) => {
        markerKey = undefined;
        throw err;
      });
      return markerKey;
    },
    pushQueue() {
      if (!queue) {
        queue = new Queue(keys.pushQueue, {
          connection: new Redis(config.REDIS_URL, { maxRetriesPerRequest: null }),
          prefix: keys.bullPrefix,
        });
        queue.on('error', (err) => redisOutage.error(err, 'push queue error'));
      }
      return queue;
    },
    async close() {
      await liveFeed.close();
      if (queue) {
        const connection = await queue.client;
        await queue.close();
        connection.disconnect();
      }
      redis.disconnect();
      await pool.end();
    },
  };
}
