import type { Logger } from 'pino';

/** Offsets beyond this many ms are logged (and alerted on: monitoring/alerts.yml PgaClockSkew). */
export const CLOCK_SKEW_WARN_MS = 5_000;
/** A reading whose round trip took longer than this says too little about the offset: skipped. */
export const CLOCK_READING_MAX_ROUND_TRIP_MS = 250;
/** A reading older than this no longer stands for the offset. */
export const CLOCK_READING_STALE_MS = 60_000;

/**
 * This host's clock against a server's (Redis for the edge, PostgreSQL for the writer), read
 * from a round trip the service makes anyway: `server − local`, the local time taken as the
 * midpoint of the round trip (NTP's estimate, off by at most half the round trip).
 *
 * Why it matters: the edge stamps heartbeats and pushes with its own clock and the writer's
 * inactivity sweep compares them with PostgreSQL's, so a host far behind never revives an
 * inactive collector, and one far ahead keeps a silent one active. Managed servers (RDS,
 * ElastiCache) keep their clocks; a host that drifted is what this finds. Logged once when it
 * crosses {@link CLOCK_SKEW_WARN_MS} and once when it is back.
 */
export class ClockSkewWatch {
  /** The last reading's offset in ms (server − this host), or undefined before the first. */
  offsetMs: number | undefined;
  private readAt = -Infinity;
  private skewed = false;

  constructor(
    private readonly logger: Logger,
    /** The server's name in the log line, e.g. "Redis". */
    private readonly server: string,
    private readonly warnMs = CLOCK_SKEW_WARN_MS,
    /** How long a reading stands for the offset: after it, none (a gauge then exports nothing). */
    private readonly staleMs = CLOCK_READING_STALE_MS,
    private readonly now: () => number = Date.now,
  ) {}

  /** One reading: local ms before the request, the server's ms in its answer, local ms after it. */
  observe(sentAt: number, serverMs: number, answeredAt: number): void {
    if (!Number.isFinite(serverMs) || answeredAt - sentAt > CLOCK_READING_MAX_ROUND_TRIP_MS || answeredAt < sentAt) return;
    const offset = serverMs - (sentAt + answeredAt) / 2;
    this.offsetMs = offset;
    this.readAt = this.now();
    const skewed = Math.abs(offset) > this.warnMs;
    if (skewed && !this.skewed)
      this.logger.warn(
        { offset_ms: Math.round(offset) },
        `this host's clock is ${Math.abs(offset / 1000).toFixed(1)} s ${offset > 0 ? 'behind' : 'ahead of'} ${this.server}'s: ` +
          "heartbeat and push times are this clock's, compared with PostgreSQL's; fix the host's time sync (NTP/chrony)",
      );
    else if (!skewed && this.skewed)
      this.logger.info({ offset_ms: Math.round(offset) }, `this host's clock agrees with ${this.server}'s again`);
    this.skewed = skewed;
  }

  /**
   * For a gauge: the offset in seconds, or undefined without a reading in the last `staleMs` (none
   * yet, every round trip too slow, a server that does not say its time): not a 0 that reads as
   * "in sync" (review 29).
   */
  get offsetSeconds(): number | undefined {
    return this.offsetMs !== undefined && this.now() - this.readAt <= this.staleMs ? this.offsetMs / 1000 : undefined;
  }
}
