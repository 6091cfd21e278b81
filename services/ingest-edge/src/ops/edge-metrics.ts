import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { ERROR_HTTP_STATUS, type ErrorCode } from '@pga/contracts';
import { LARGE_PUSH_BYTES } from '../push/large-push-thread';
import { PUSH_QUOTA_REASON } from '../push/push-quota';

/** Prometheus metrics of one edge process (issue 4 §4); main.ts aggregates them across processes. */
export interface MetricSources {
  ready(): boolean;
  inflightBytes(): number;
  cache(): { hits: number; verified: number; invalid: number; size: number };
  /** JWT_SECRET's keys with their counts (a fixed, small set: the configured key ids). */
  tokenKeys?(): readonly { id: string; verifications: number; requests: number }[];
  /** Redis `used_memory` and the budget above which pushes get 503 (0: none), as the health check last read them. */
  redisMemory?(): { used: number; budget: number };
  /** Redis's clock minus this host's, in seconds, as the health check last read it (undefined: no reading in the last minute). */
  clockOffsetSeconds?(): number | undefined;
}

/**
 * A counter bumped on the hot path as a plain number and handed to prom-client only when scraped:
 * prom-client hashes the label set on every `inc` (about a microsecond), several times per request.
 */
export class Tally<L extends string> {
  private readonly counts = new Map<string, { labels: Record<L, string>; n: number }>();
  add(labels: Record<L, string>, key: string, n = 1): void {
    const entry = this.counts.get(key);
    if (entry) entry.n += n;
    else this.counts.set(key, { labels, n });
  }
  /** For a Counter's `collect()`: replaces its values with the running totals. */
  report(counter: Counter<L>): void {
    counter.reset();
    for (const { labels, n } of this.counts.values()) counter.inc(labels, n);
  }
}

export function createEdgeMetrics(sources: MetricSources) {
  const registry = new Registry();
  // Process metrics (CPU, memory, heap, GC, event-loop lag) as `edge_process_*` and `edge_nodejs_*`;
  // /metrics averages or sums them over the edge processes as prom-client's aggregator for each says.
  collectDefaultMetrics({ register: registry, prefix: 'edge_' });
  const requestTally = new Tally<'route' | 'status'>();
  const bytesTally = new Tally<'route'>();
  new Counter({
    name: 'edge_http_requests_total',
    help: 'HTTP requests answered, by route and status (0 = client went away).',
    labelNames: ['route', 'status'] as const,
    registers: [registry],
    collect() {
      requestTally.report(this);
    },
  });
  new Counter({
    name: 'edge_request_body_bytes_total',
    help: 'Request body bytes received (as sent, before gunzip), by route.',
    labelNames: ['route'] as const,
    registers: [registry],
    collect() {
      bytesTally.report(this);
    },
  });
  /** Counts one answered request (hot path). */
  const request = (route: string, status: number) => requestTally.add({ route, status: String(status) }, `${route} ${status}`);
  /** Adds body bytes received on a route (hot path). */
  const bytesIn = (route: string, n: number) => bytesTally.add({ route }, route, n);
  const rejections = new Counter({
    name: 'edge_rejections_total',
    help: 'Requests refused, by error code; PUSH_QUOTA: pushes of a collector past its push quota (PUSH_QUOTA_PER_HOUR, answered 429 RATE_LIMITED).',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  // Every code at 0 from the start: an alert on rate(…{reason="UNAVAILABLE"}) missed the first 503s,
  // the series appearing with them. (/metrics sums the processes' series, zeros included.)
  for (const reason of [...(Object.keys(ERROR_HTTP_STATUS) as ErrorCode[]), PUSH_QUOTA_REASON]) rejections.inc({ reason }, 0);
  const enrollmentFailures = new Counter({
    name: 'edge_enrollment_failures_total',
    help: 'Enrollments refused, by reason: missing_secret, invalid_secret (wrong, expired, revoked or used up), rate_limited (a secret that is not live, from an address past its failed-enrollment limit).',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  for (const reason of ['missing_secret', 'invalid_secret', 'rate_limited']) enrollmentFailures.inc({ reason }, 0);
  const enqueueLatency = new Histogram({
    name: 'edge_enqueue_latency_seconds',
    help: 'Time from a push being ready to Redis confirming its job (includes the packing window).',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  const pushesPerJob = new Histogram({
    name: 'edge_pushes_per_job',
    help: 'Pushes packed into one BullMQ job.',
    buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000],
    registers: [registry],
  });
  const largePushPrepare = new Histogram({
    name: 'edge_large_push_prepare_seconds',
    help: `Time to validate, hash and encode a push body of ${LARGE_PUSH_BYTES} bytes or more in the large-push thread, off the event loop (waiting for the thread included).`,
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const pushes = new Counter({
    name: 'edge_pushes_total',
    help: 'Pushes answered 200, by outcome: accepted (stored in Redis; counted also when the client hung up before its 200 went out) or duplicate.',
    labelNames: ['outcome'] as const,
    registers: [registry],
  });
  const redisDataLost = new Counter({
    name: 'edge_redis_data_lost_total',
    help: 'Times this edge found Redis emptied (FLUSHALL, a failover to an unsynced replica, a restart without persistence) or gone back to an older copy of its data (an older AOF/RDB restored, a lagging replica promoted): accepted pushes not yet stored were lost with it. Alert on any increase.',
    registers: [registry],
  });
  redisDataLost.inc(0);
  const cacheLookups = new Counter({
    name: 'edge_token_cache_lookups_total',
    help: 'Verified-token cache lookups, by result: hit, miss (then verified), invalid (a miss whose token failed verification). Hit ratio = hit / (hit + miss).',
    labelNames: ['result'] as const,
    registers: [registry],
    collect() {
      const { hits, verified, invalid } = sources.cache();
      this.reset();
      this.inc({ result: 'hit' }, hits);
      this.inc({ result: 'miss' }, verified);
      this.inc({ result: 'invalid' }, invalid);
    },
  });
  // Labelled by the configured key ids only (a token naming another one is refused, and counted
  // invalid above): a handful of series, for rotating JWT_SECRET (README "Rotating JWT_SECRET").
  new Counter({
    name: 'edge_token_verifications_total',
    help: 'Collector tokens verified (signature checked on a token-cache miss), by the JWT_SECRET key id that verified them ("k1" for tokens without a kid).',
    labelNames: ['key_id'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const key of sources.tokenKeys?.() ?? []) this.inc({ key_id: key.id }, key.verifications);
    },
  });
  new Counter({
    name: 'edge_token_key_requests_total',
    help: 'Requests authenticated, by the JWT_SECRET key id that verified their token: an old key may be dropped once its rate stays 0 on every edge.',
    labelNames: ['key_id'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const key of sources.tokenKeys?.() ?? []) this.inc({ key_id: key.id }, key.requests);
    },
  });
  const inflightBytes = new Gauge({
    name: 'edge_inflight_body_bytes',
    help: 'Request body bytes held in memory right now.',
    registers: [registry],
    collect() {
      this.set(sources.inflightBytes());
    },
  });
  new Gauge({
    name: 'edge_token_cache_entries',
    help: 'Verified tokens cached right now (each process holds at most TOKEN_CACHE_SIZE; /metrics sums the processes).',
    registers: [registry],
    collect() {
      this.set(sources.cache().size);
    },
  });
  const ready = new Gauge({
    name: 'edge_ready',
    help: 'Edge processes answering /readyz with 200 (each counts 1; /metrics sums them): compare with edge_processes.',
    registers: [registry],
    collect() {
      this.set(sources.ready() ? 1 : 0);
    },
  });
  // Read from Redis, the same on every process and edge of one Redis: the processes' values are
  // aggregated with max (not summed), and so should be an alert's over several edges.
  new Gauge({
    name: 'edge_redis_used_memory_bytes',
    help: "Redis used_memory as the edge's health check last read it (every second); the same on every edge of one Redis: aggregate with max().",
    aggregator: 'max',
    registers: [registry],
    collect() {
      this.set(sources.redisMemory?.().used ?? 0);
    },
  });
  new Gauge({
    name: 'edge_redis_memory_budget_bytes',
    help: 'Redis used_memory above which pushes get 503 (REDIS_MEMORY_BUDGET_BYTES, or 90 % of Redis maxmemory; 0 = no budget); aggregate with max().',
    aggregator: 'max',
    registers: [registry],
    collect() {
      this.set(sources.redisMemory?.().budget ?? 0);
    },
  });
  // The processes of one edge share its clock: averaged, not summed.
  new Gauge({
    name: 'edge_clock_offset_seconds',
    help: "Redis's clock minus this edge's (seconds; positive: the edge is behind), read from the health check's INFO every second; heartbeat and push times are the edge's clock, compared with PostgreSQL's by the writer's sweep (PgaClockSkew).",
    aggregator: 'average',
    registers: [registry],
    collect() {
      // No recent reading: no sample (a 0 would read as "in sync"; the processes that have one are averaged).
      const offset = sources.clockOffsetSeconds?.();
      if (offset === undefined) this.reset();
      else this.set(offset);
    },
  });
  new Gauge({
    name: 'edge_processes',
    help: 'Edge processes serving (each counts 1; /metrics sums them over the processes that answered the scrape).',
    registers: [registry],
    collect() {
      this.set(1);
    },
  });
  return {
    registry,
    request,
    bytesIn,
    rejections,
    enrollmentFailures,
    enqueueLatency,
    pushesPerJob,
    largePushPrepare,
    pushes,
    cacheLookups,
    redisDataLost,
    inflightBytes,
    ready,
  };
}

export type EdgeMetrics = ReturnType<typeof createEdgeMetrics>;
