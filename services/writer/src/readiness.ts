import { Gauge, type Registry } from 'prom-client';

/** Why the writer is not ready: /readyz's `reason`, and the `reason` label of writer_not_ready_reason. */
export const NOT_READY_REASONS = ['starting', 'draining', 'postgresql unreachable', 'redis unreachable'] as const;
export type NotReadyReason = (typeof NOT_READY_REASONS)[number];
export type Readiness = { ok: true } | { ok: false; reason: NotReadyReason };

export interface ReadinessOptions {
  isDraining: () => boolean;
  isStarted: () => boolean;
  /**
   * A round trip to PostgreSQL: `SELECT 1` on readiness's own connection (pg-probe.ts), not through
   * the writer's pool, whose connections may all be held by statements waiting on a lock.
   */
  pingPostgres: () => Promise<unknown>;
  /** A round trip to Redis (`PING`). */
  pingRedis: () => Promise<unknown>;
  /** Longest each round trip may take before it counts as unreachable. */
  timeoutMs?: number;
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error('timeout')), ms).unref())]);
}

/**
 * The one readiness check behind /readyz and the writer_ready gauge: not draining, started,
 * PostgreSQL (on a connection of its own: a busy pool is not an absent PostgreSQL) and Redis each
 * answering within `timeoutMs` (checked together, so a scrape waits at most that long; PostgreSQL's
 * failure is named first). Calls made while a check is running share its answer, so a frozen
 * PostgreSQL does not collect a pending `SELECT 1` per probe and per scrape.
 */
export function createReadiness(o: ReadinessOptions): () => Promise<Readiness> {
  const timeoutMs = o.timeoutMs ?? 2000;
  let inFlight: Promise<Readiness> | undefined;
  const check = async (): Promise<Readiness> => {
    if (o.isDraining()) return { ok: false, reason: 'draining' };
    if (!o.isStarted()) return { ok: false, reason: 'starting' };
    const reached = (p: () => Promise<unknown>) =>
      withTimeout(Promise.resolve().then(p), timeoutMs).then(
        () => true,
        () => false,
      );
    const [pg, redis] = await Promise.all([reached(o.pingPostgres), reached(o.pingRedis)]);
    if (!pg) return { ok: false, reason: 'postgresql unreachable' };
    if (!redis) return { ok: false, reason: 'redis unreachable' };
    return { ok: true };
  };
  return () =>
    (inFlight ??= check().finally(() => {
      inFlight = undefined;
    }));
}

/**
 * writer_ready (1 when /readyz answers 200, else 0) and writer_not_ready_reason{reason} (1 for the
 * reason /readyz gives, 0 for the others; every reason exported from the start): computed at scrape
 * time by the same check as /readyz, so nothing is done per push.
 */
export function registerReadinessMetrics(registry: Registry, readiness: () => Promise<Readiness>): void {
  // A scrape collects every metric at once: both gauges get the one check in flight.
  new Gauge({
    name: 'writer_ready',
    help: 'Whether this writer is ready, as its /readyz answers (1: 200; 0: 503 - starting, draining, PostgreSQL or Redis not answering within 2 s); writer_not_ready_reason says why',
    registers: [registry],
    async collect() {
      this.set((await readiness()).ok ? 1 : 0);
    },
  });
  new Gauge({
    name: 'writer_not_ready_reason',
    help: 'Why this writer is not ready: 1 for the reason its /readyz gives (starting, draining, postgresql unreachable, redis unreachable), 0 for the others; all 0 when ready',
    labelNames: ['reason'] as const,
    registers: [registry],
    async collect() {
      const r = await readiness();
      for (const reason of NOT_READY_REASONS) this.set({ reason }, !r.ok && r.reason === reason ? 1 : 0);
    },
  });
}
