import cluster from 'node:cluster';
import uWS from 'uWebSockets.js';
import { Redis } from 'ioredis';
import { EncodedQueue } from './push/encoded-queue';
import { createSecretBox } from '@pga/crypto';
import { checkStoredKeyIds, createPool, readDatabaseDenyState } from '@pga/db';
import { AppError } from '@pga/contracts';
import { metricsAuth } from '@pga/config';
import { createOutageLog, type Logger } from '@pga/logger';
import {
  checkRedisVersion,
  dataEpoch,
  dataEpochMessage,
  RedisTooOldError,
  recordKnownCollectors,
  redisKeys,
} from '@pga/redis-keys';
import { createCollectorTokens } from '@pga/tokens';
import { createAuthenticator } from './auth/authenticate';
import { DenyList } from './auth/deny-list';
import { ByteRateLimiter, RateLimiter } from './auth/rate-limiter';
import { TokenCache } from './auth/token-cache';
import type { EdgeConfig } from './config';
import { CollectorShares } from './http/collector-shares';
import { InflightBudget } from './http/read-body';
import { RouteKit } from './http/route';
import { createEdgeMetrics } from './ops/edge-metrics';
import { opsRoutes } from './ops/ops-routes';
import { QueueHealth } from './ops/queue-health';
import { createPushHandler, PUSH_HEADERS } from './push/push-route';
import { LargePushThread } from './push/large-push-thread';
import { PushPacker } from './push/push-packer';
import { PushQuota } from './push/push-quota';
import { createConfigHandler, createV3ConfigHandler } from './routes/config-routes';
import { undecryptableSecretLog } from './routes/load-collector-config';
import { createEnrollHandler, createRefreshHandler, SMALL_BODY } from './routes/enroll-routes';
import { createHeartbeatHandler, HEARTBEAT_MAX_BODY } from './routes/heartbeat-route';
import { mountRoutes } from './routes/mount-routes';
import { withTimeout } from './with-timeout';

/** How often an edge process checks that Redis still holds its data (`dataEpoch`). */
const DATA_EPOCH_CHECK_MS = 5000;
/**
 * Longest statement of the edge's pool (in `options`, pool.ts). Behind a pooler that drops `options`
 * it does not reach the server: the start checks (main.ts, `statementTimeoutDropped`) and says so.
 */
export const EDGE_STATEMENT_TIMEOUT_MS = 10_000;
export interface Edge {
  /** The port actually listened on. */
  port: number;
  /** SIGTERM path: readiness off, stop accepting, finish in-flight requests, close Redis and PostgreSQL. */
  drain(): Promise<void>;
  metrics: ReturnType<typeof createEdgeMetrics>;
}

export interface CreateEdgeOptions {
  config: EdgeConfig;
  logger: Logger;
  /** Prometheus text for /metrics; default this process's own registry (main.ts aggregates processes). */
  metricsText?: () => Promise<string>;
  /**
   * Join the port only once ready (queue reachable, deny state loaded). For the forked processes of
   * a multi-process edge: a (re)started worker would otherwise get its share of new connections
   * from the kernel and answer them 503 while its siblings could take them.
   */
  listenWhenReady?: boolean;
}

/**
 * Builds and starts one edge process (issue 4). Unless `listenWhenReady`, listening does not wait
 * for Redis: /readyz says when it is usable.
 */
export async function createEdge({ config, logger, metricsText, listenWhenReady = false }: CreateEdgeOptions): Promise<Edge> {
  const keys = redisKeys(config.REDIS_KEY_PREFIX);
  const metrics = createEdgeMetrics({
    ready: () => isReady().ready,
    inflightBytes: () => budget.used,
    cache: () => cache,
    tokenKeys: () => authenticate.keyUses,
    redisMemory: () => ({ used: queueHealth.usedMemory, budget: queueHealth.memoryBudget }),
    clockOffsetSeconds: () => queueHealth.clock.offsetSeconds,
  });
  const redisOptions = {
    // Fail fast instead of queueing commands in edge memory while Redis is away (→ 503).
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2000,
    // No auto-pipelining: ioredis builds a Pipeline for every event-loop turn that sends a command,
    // and a Pipeline copies each script defined on the connection (BullMQ defines ~50) into itself —
    // ~50 µs each, measured, for two or three commands per packed batch. Commands written one by
    // one keep their order on the connection all the same (the claim still runs before the add).
    retryStrategy: (attempt: number) => Math.min(attempt * 100, 1000),
  };
  const redis = new Redis(config.REDIS_URL, redisOptions);
  const subscriber = new Redis(config.REDIS_URL, { ...redisOptions, enableOfflineQueue: true });
  // Batches of one large push (push/large-push-thread.ts) go on their own connection: on the shared
  // one, every small batch behind a 20–85 MB job waited until Redis had read all of it.
  const bulk = new Redis(config.REDIS_URL, redisOptions);
  // One warning when Redis goes away (whichever connection notices first), one summary a minute
  // while it stays away, one line when both connections are back: not one per reconnect attempt.
  // Redis up but refusing writes (out of memory, read-only) reconnects nothing: a SET every 2 s
  // while it lasts tells when it takes writes again (not before the change feed's connection is back).
  const redisOutage = createOutageLog(logger, 'Redis', {
    probe: async () => {
      if (subscriber.status !== 'ready') throw new Error('change feed not connected');
      return redis.set(keys.writeProbe, '1', 'EX', 10);
    },
  });
  for (const [name, client] of [
    ['redis', redis],
    ['subscriber', subscriber],
    ['bulk', bulk],
  ] as const) {
    client.on('error', (err: Error) => redisOutage.error(err, 'Redis error', { client: name }));
    client.on(
      'ready',
      () => redis.status === 'ready' && subscriber.status === 'ready' && bulk.status === 'ready' && redisOutage.connected(),
    );
  }
  const queue = new EncodedQueue(keys.pushQueue, { connection: redis, prefix: keys.bullPrefix });
  queue.on('error', (err) => redisOutage.error(err, 'queue error'));
  const bulkQueue = new EncodedQueue(keys.pushQueue, { connection: bulk, prefix: keys.bullPrefix });
  bulkQueue.on('error', (err) => redisOutage.error(err, 'queue error'));
  // A PostgreSQL outage (enrollment, config, refresh answer 503; idle clients cut off) is one warning,
  // a summary a minute and one line when a connection succeeds again: a fleet polling its config is
  // not a line a request, nor a restart a line per pooled client.
  // Nothing else connects while no request needs PostgreSQL: a probe every 2 s ends the outage.
  const pgOutage = createOutageLog(logger, 'PostgreSQL', { probe: () => pool.query('SELECT 1') });
  const pool = createPool(config.DATABASE_URL, {
    max: config.DB_POOL_SIZE,
    applicationName: 'pga-ingest-edge',
    logger,
    statementTimeoutMs: EDGE_STATEMENT_TIMEOUT_MS,
    onIdleError: (err) => pgOutage.error(err, 'idle PostgreSQL client error'),
  });
  pool.on('connect', () => pgOutage.recovered());

  const tokens = createCollectorTokens({ secret: config.JWT_SECRET, issuer: config.JWT_ISSUER, audience: config.JWT_AUDIENCE });
  const cache = new TokenCache(config.TOKEN_CACHE_SIZE);
  // PostgreSQL's own deny state is unioned with Redis's at every load (Redis may have lost its data
  // while no admin runs to repair it), bounded so a PostgreSQL outage never keeps the edge from ready.
  const deny = new DenyList(subscriber, redis, keys, logger.child({ module: 'deny-list' }), {
    readDatabase: (collectorId) => readDatabaseDenyState(pool, collectorId ? { collectorId } : {}),
  });
  const authenticate = createAuthenticator({ tokens, cache, deny });
  const limiter = new RateLimiter(config.RATE_LIMIT_PER_SECOND, config.RATE_LIMIT_BURST);
  const byteLimiter = new ByteRateLimiter(config.RATE_LIMIT_BYTES_PER_SECOND, config.RATE_LIMIT_BYTES_BURST);
  const budget = new InflightBudget(config.MAX_INFLIGHT_BYTES);
  const shares = new CollectorShares(
    config.MAX_INFLIGHT_BYTES_PER_COLLECTOR || Math.floor(config.MAX_INFLIGHT_BYTES / 2),
    config.MAX_BODY_BYTES,
  );
  const queueHealth = new QueueHealth(redis, config.REDIS_MEMORY_BUDGET_BYTES, logger);
  const quota = new PushQuota(config.PUSH_QUOTA_PER_HOUR);
  const packer = new PushPacker(
    { redis, queue, keys, metrics, logger, budget, redisOutage, bulk: { redis: bulk, queue: bulkQueue }, quota },
    {
      windowMs: config.PACK_WINDOW_MS,
      maxPushes: config.PACK_MAX_PUSHES,
      maxBytes: config.PACK_MAX_BYTES,
      enqueueTimeoutMs: config.ENQUEUE_TIMEOUT_MS,
      idempotencyTtlSeconds: config.IDEMPOTENCY_TTL_SECONDS,
    },
  );
  const largePushes = new LargePushThread({ logger, metrics });
  const box = createSecretBox(config.ENCRYPTION_KEY);
  const onUndecryptable = undecryptableSecretLog(logger.child({ module: 'config' }));
  const kit = new RouteKit({
    metrics,
    budget,
    logger,
    pgOutage,
    proxies: { trustProxy: config.TRUST_PROXY, hops: config.TRUST_PROXY_HOPS },
  });
  // Enrollment needs only PostgreSQL: a Redis away (or silent) delays its answer by 1 s at most and
  // leaves the id to the admin's repair, which adds every id PostgreSQL holds to the known set.
  const recordKnown = (collectorId: string): Promise<void> =>
    withTimeout(recordKnownCollectors(redis, keys, [collectorId]), 1000).catch((err: unknown) =>
      logger.warn(
        { err: err instanceof Error ? err.message : String(err), collectorId },
        'enrolled collector not recorded as known in Redis; the admin service records it at its next repair',
      ),
    );

  function isReady(): { ready: boolean; reason?: string } {
    if (kit.draining) return { ready: false, reason: 'draining' };
    if (!queueHealth.reachable) return { ready: false, reason: 'queue unreachable' };
    // Every push would get 503: a load balancer should know (all edges share the one Redis, so all say it).
    const refusal = queueHealth.refusal;
    if (refusal) return { ready: false, reason: refusal };
    if (!deny.trusted) return { ready: false, reason: 'revocation state loading' };
    return { ready: true };
  }

  const app = uWS.App();
  const authHeaders = ['authorization', 'x-collector-id', 'content-encoding'] as const;
  mountRoutes(app, {
    push: kit.route(
      { name: 'push', headers: PUSH_HEADERS, maxBody: config.MAX_BODY_BYTES, auth: 'bearer' },
      createPushHandler({
        authenticate,
        limiter,
        byteLimiter,
        packer,
        quota,
        largePushes,
        queueHealth,
        budget,
        shares,
        maxBodyBytes: config.MAX_BODY_BYTES,
      }),
    ),
    heartbeat: kit.route(
      { name: 'heartbeat', headers: authHeaders, params: 1, maxBody: HEARTBEAT_MAX_BODY, auth: 'bearer' },
      createHeartbeatHandler({ authenticate, limiter, redis, keys, pool, logger, timeoutMs: config.ENQUEUE_TIMEOUT_MS }),
    ),
    config: kit.route(
      { name: 'config', headers: authHeaders, params: 1, auth: 'bearer' },
      createConfigHandler({ authenticate, limiter, pool, box, onUndecryptable, centralApiUrl: config.CENTRAL_API_URL }),
    ),
    v3Config: kit.route(
      { name: 'config_v3', headers: authHeaders, params: 1, auth: 'bearer' },
      createV3ConfigHandler({ authenticate, limiter, pool, box, onUndecryptable, centralApiUrl: config.CENTRAL_API_URL }),
    ),
    register: kit.route(
      {
        name: 'register',
        headers: ['x-registration-secret', 'content-encoding', 'user-agent'],
        maxBody: SMALL_BODY,
        auth: 'registration-secret',
        clientAddress: true,
      },
      createEnrollHandler({ pool, tokens, box, recordKnown, onFailure: (reason) => metrics.enrollmentFailures.inc({ reason }) }),
    ),
    refresh: kit.route(
      {
        name: 'refresh_token',
        headers: [...authHeaders, 'user-agent'],
        maxBody: SMALL_BODY,
        auth: 'bearer',
        clientAddress: true,
      },
      createRefreshHandler({ pool, tokens, box, authenticate }),
    ),
    // Thrown like every other refusal: answered and counted in edge_rejections_total by the kit.
    notFound: kit.route({ name: 'not_found' }, () => {
      throw new AppError('NOT_FOUND', 'no such endpoint');
    }),
    wrongMethod: (allow) =>
      kit.route({ name: 'not_found' }, () => {
        throw new AppError('METHOD_NOT_ALLOWED', `method not allowed on this endpoint (allowed: ${allow})`, { allow });
      }),
    ops: opsRoutes({
      isReady,
      processes: config.EDGE_PROCESSES,
      metricsText: metricsText ?? (() => metrics.registry.metrics()),
      metricsContentType: metrics.registry.contentType,
      ...(config.METRICS_TOKEN.length > 0 ? { metricsAuth: metricsAuth(config.METRICS_TOKEN) } : {}),
    }),
  });

  // A Redis older than MIN_REDIS_VERSION is refused at start, one line (main.ts exits), when it
  // answers within connectTimeout; one met later (away at start, or a failover onto an older
  // server) is said as an error on each connection.
  const redisAnswers = await new Promise<boolean>((resolve) => {
    if (redis.status === 'ready') return resolve(true);
    const timer = setTimeout(() => (redis.off('ready', onReady), resolve(false)), redisOptions.connectTimeout);
    const onReady = () => (clearTimeout(timer), resolve(true));
    redis.once('ready', onReady);
  });
  if (redisAnswers)
    await checkRedisVersion(redis).catch((err: unknown) => {
      if (err instanceof RedisTooOldError) {
        redis.disconnect();
        subscriber.disconnect();
        bulk.disconnect();
        throw err;
      }
    });
  redis.on(
    'ready',
    () => void checkRedisVersion(redis).catch((err: unknown) => err instanceof RedisTooOldError && logger.error(err.message)),
  );

  queueHealth.start();
  // Redis emptied under the running edges (FLUSHALL, a failover to an unsynced replica) used to go
  // unnoticed here: one error line per process and a counter.
  const epoch = dataEpoch(redis, keys.dataEpoch);
  const checkEpoch = () =>
    void epoch.check().then(
      (finding) => {
        if (!finding) return;
        logger.error(dataEpochMessage(finding));
        metrics.redisDataLost.inc();
      },
      () => undefined, // Redis away: queue health and the outage log say so
    );
  redis.on('ready', checkEpoch);
  checkEpoch();
  const epochTimer = setInterval(checkEpoch, DATA_EPOCH_CHECK_MS);
  epochTimer.unref();
  void deny.start().catch((err: unknown) => logger.warn({ err }, 'change feed subscription failed; retrying on reconnect'));
  // Secrets under a key id this ring lacks: the config endpoint cannot answer their collectors. Said
  // once per edge (its primary), not once per process.
  const keyCheck = cluster.isPrimary ? checkStoredKeyIds(pool, box.keyIds, logger) : Promise.resolve();
  if (listenWhenReady && !isReady().ready) {
    // Nothing to drain meanwhile: a SIGTERM before this resolves simply ends the process. A fresh
    // process is not ready for its first few milliseconds (no Redis poll answered yet): that is not
    // worth a line; still not ready after 5 s is, with the reason.
    const since = Date.now();
    let said = false;
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        const state = isReady();
        if (state.ready) return (clearInterval(timer), resolve());
        if (!said && Date.now() - since >= 5000) {
          said = true;
          logger.warn({ reason: state.reason }, 'not ready after 5 s: joining the port once ready');
        }
      }, 20);
    });
  }
  const listenSocket = await new Promise<uWS.us_listen_socket>((resolve, reject) =>
    app.listen(config.INGEST_HOST, config.INGEST_PORT, (socket) =>
      socket ? resolve(socket) : reject(new Error(`cannot listen on ${config.INGEST_HOST}:${config.INGEST_PORT}`)),
    ),
  );
  const port = uWS.us_socket_local_port(listenSocket);

  let drained: Promise<void> | undefined;
  const drain = () =>
    (drained ??= (async () => {
      kit.draining = true;
      uWS.us_listen_socket_close(listenSocket);
      await kit.whenIdle(config.DRAIN_TIMEOUT_MS);
      // Large pushes still in the thread are refused (503) rather than sent to a closing queue.
      await largePushes.close();
      await packer.drain();
      queueHealth.stop();
      clearInterval(epochTimer);
      deny.stop();
      pgOutage.close();
      redisOutage.close();
      await Promise.all([queue.close().catch(() => undefined), bulkQueue.close().catch(() => undefined)]);
      await keyCheck;
      await Promise.all([closeRedis(redis), closeRedis(subscriber), closeRedis(bulk), pool.end().catch(() => undefined)]);
      (app as unknown as { close?: () => void }).close?.();
    })());
  return { port, drain, metrics };
}

/** QUIT waits for Redis's answer, which a paused Redis or a half-open socket never gives: cut it short. */
async function closeRedis(client: Redis, ms = 1000): Promise<void> {
  await withTimeout(client.quit(), ms).catch(() => undefined);
  client.disconnect();
}
