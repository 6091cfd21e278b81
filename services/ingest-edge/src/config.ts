import { availableParallelism } from 'node:os';
import { z } from 'zod';
import {
  loadConfig,
  commonSchema,
  jwtSchema,
  encryptionSchema,
  trustProxySchema,
  metricsTokenSchema,
  openMetricsWarningFor,
  port,
  listenHost,
  url,
  int,
} from '@pga/config';

const MiB = 1024 * 1024;

export const EdgeConfigSchema = commonSchema
  .extend(jwtSchema.shape)
  .extend(encryptionSchema.shape)
  // TRUST_PROXY, TRUST_PROXY_HOPS: the client address (enrollment limit, audit) behind load balancers
  // that write X-Forwarded-For, read as the admin service reads it (@pga/config clientAddress).
  .extend(trustProxySchema.shape)
  // METRICS_TOKEN: when set, /metrics answers only `Authorization: Bearer <one of its tokens>`.
  .extend(metricsTokenSchema.shape)
  .extend({
    /** Port collectors push to; default 8080. */
    INGEST_PORT: port(8080),
    /** Address to listen on; default 0.0.0.0 (`npm start` uses 127.0.0.1). */
    INGEST_HOST: listenHost('0.0.0.0'),
    /** Public URL collectors use, shown in setup instructions; default http://127.0.0.1:8080. */
    CENTRAL_API_URL: url('http', 'https').default('http://127.0.0.1:8080'),
    /** Prefix of every shared Redis key (@pga/redis-keys); default "pga". */
    REDIS_KEY_PREFIX: z.string().min(1).default('pga'),
    /** Edge processes sharing the port (SO_REUSEPORT); default = CPU cores. 1 = no fork. */
    EDGE_PROCESSES: int(availableParallelism(), 1, 64),
    /** Largest request body, compressed and decompressed, in bytes; default 64 MiB. */
    MAX_BODY_BYTES: int(64 * MiB, 1024, 1024 * MiB),
    /** Body bytes held in memory across all requests of one process before answering 503; default 256 MiB. */
    MAX_INFLIGHT_BYTES: int(256 * MiB, 1024, 16 * 1024 * MiB),
    /**
     * One collector's share of MAX_INFLIGHT_BYTES: past it, its further concurrent pushes get 429
     * (its only push in flight always passes); 0 = half of MAX_INFLIGHT_BYTES; default 0.
     */
    MAX_INFLIGHT_BYTES_PER_COLLECTOR: int(0, 0, 16 * 1024 * MiB),
    /** Longest wait for Redis to confirm a push before answering 503, in ms; default 2000. */
    ENQUEUE_TIMEOUT_MS: int(2000, 50, 60_000),
    /** Packing: while a job is in Redis, the next one waits at most this many ms (default 5) … */
    PACK_WINDOW_MS: int(5, 0, 1000),
    /** … or this many pushes (default 100) … */
    PACK_MAX_PUSHES: int(100, 1, 10_000),
    /** … or this many body bytes (default 8 MiB), whichever comes first. */
    PACK_MAX_BYTES: int(8 * MiB, 1024, 1024 * MiB),
    /** Replay window of idempotency keys in seconds; default 86400 (24 h). */
    IDEMPOTENCY_TTL_SECONDS: int(86_400, 60, 30 * 86_400),
    /** Verified tokens kept in memory per process; default 100000. */
    TOKEN_CACHE_SIZE: int(100_000, 1, 10_000_000),
    /** Per-collector requests/s per edge process (token bucket refill); 0 disables; default 50. */
    RATE_LIMIT_PER_SECOND: int(50, 0, 1_000_000),
    /** Token bucket size (burst) per collector; default 100. */
    RATE_LIMIT_BURST: int(100, 1, 1_000_000),
    /** Per-collector push bytes/s (decoded) per edge process; 0 disables; default 4 MiB. */
    RATE_LIMIT_BYTES_PER_SECOND: int(4 * MiB, 0, Number.MAX_SAFE_INTEGER),
    /** Byte bucket size (burst) per collector; a push larger than what is left still passes, leaving debt; default 16 MiB. */
    RATE_LIMIT_BYTES_BURST: int(16 * MiB, 1, Number.MAX_SAFE_INTEGER),
    /**
     * New pushes per collector per hour, across all edge processes (each keeps an idempotency marker
     * in Redis for IDEMPOTENCY_TTL_SECONDS); past it 429 + Retry-After until the hour's end; replays
     * do not count; 0 disables; default 3600 (10× a 10 s collection interval, the admin's shortest).
     */
    PUSH_QUOTA_PER_HOUR: int(3600, 0, 1_000_000_000),
    /** Redis used_memory above which pushes get 503, in bytes; 0 = 90 % of Redis maxmemory (if set); default 0. */
    REDIS_MEMORY_BUDGET_BYTES: int(0, 0, Number.MAX_SAFE_INTEGER),
    /** Longest SIGTERM drain of in-flight requests, in ms; default 10000. */
    DRAIN_TIMEOUT_MS: int(10_000, 0, 600_000),
    /** PostgreSQL connections per edge process (enrollment, config, refresh, deny-state loads; never a push); default 2. */
    DB_POOL_SIZE: int(2, 1, 50),
  });
export type EdgeConfig = z.infer<typeof EdgeConfigSchema>;

export const readEdgeConfig = (env: Record<string, string | undefined> = process.env): EdgeConfig =>
  loadConfig(EdgeConfigSchema, env);

/**
 * The start-up warning of an edge whose `/metrics` anyone reaching the collectors' port may read:
 * no METRICS_TOKEN, and INGEST_HOST not a loopback address. Undefined when there is nothing to say.
 */
export function openMetricsWarning(config: Pick<EdgeConfig, 'METRICS_TOKEN' | 'INGEST_HOST'>): string | undefined {
  return openMetricsWarningFor(
    config.METRICS_TOKEN,
    config.INGEST_HOST,
    `the collectors' port (INGEST_HOST ${config.INGEST_HOST})`,
  );
}
