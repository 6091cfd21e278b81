import type { Redis } from 'ioredis';
import { AppError } from '@pga/contracts';
import { ClockSkewWatch, type Logger } from '@pga/logger';
import { loopClock, withTimeout } from '../with-timeout';

/** Polls that may go unanswered before Redis counts as unreachable (≈ 3 s at the default interval). */
const STALE_AFTER_POLLS = 3;

/**
 * Whether pushes may be taken: Redis connected, not a read-only replica, able to persist (its AOF
 * written, no failed RDB save it refuses writes for), and its memory under the budget (issue 4 §3: a
 * full Redis must turn into 503 + Retry-After at the edge, not into pushes held in edge memory).
 * Memory is polled once a second with `INFO memory`; the budget is REDIS_MEMORY_BUDGET_BYTES, or
 * 90 % of Redis `maxmemory` when that is set and no budget is configured. A connection that says
 * `ready` but stopped answering (CLIENT PAUSE, a frozen Redis, a half-open socket) never closes:
 * Redis counts as unreachable once no poll has answered for STALE_AFTER_POLLS intervals — of loop
 * time (`loopClock`): a few seconds this process spent on one large push are not Redis's silence.
 */
export class QueueHealth {
  overBudget = false;
  /** Redis is a replica (`role:slave`): it refuses every write, so no push can be taken. */
  readOnly = false;
  /**
   * Redis cannot write its append-only file (`aof_last_write_status:err`: a full disk, EIO): it
   * answers every write MISCONF until a write succeeds again, so no push can be taken.
   */
  cannotPersist = false;
  /**
   * Redis's last RDB save failed (`rdb_last_bgsave_status:err`: a full disk, EIO) and it refuses
   * writes with MISCONF for it (`stop-writes-on-bgsave-error yes`, the default, with save points).
   */
  cannotSave = false;
  usedMemory = 0;
  /** The budget last applied: REDIS_MEMORY_BUDGET_BYTES, or 90 % of Redis `maxmemory`; 0 = none. */
  memoryBudget = 0;
  /**
   * This host's clock against Redis's (`server_time_usec` in the INFO every poll reads anyway):
   * heartbeat and push times are this clock's (edge_clock_offset_seconds, PgaClockSkew).
   */
  readonly clock: ClockSkewWatch;
  /** When a poll last answered (`loopClock` ms); none since the last (re)connect: no push is taken blind. */
  private lastAnsweredAt: number | undefined;
  private intervalMs = 1000;
  private polling = false;
  private stale = false;
  private pollRefused = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly budgetBytes: number,
    private readonly logger: Logger,
  ) {
    this.clock = new ClockSkewWatch(logger, 'Redis');
  }

  start(intervalMs = 1000): void {
    this.intervalMs = intervalMs;
    this.redis.on('ready', () => void this.poll());
    this.redis.on('close', () => (this.lastAnsweredAt = undefined));
    void this.poll();
    this.timer = setInterval(() => void this.poll(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  get reachable(): boolean {
    return this.redis.status === 'ready' && this.answering();
  }

  private answering(): boolean {
    return this.lastAnsweredAt !== undefined && loopClock() - this.lastAnsweredAt <= STALE_AFTER_POLLS * this.intervalMs;
  }

  assertAccepting(): void {
    if (!this.reachable) throw new AppError('UNAVAILABLE', 'queue unreachable', { retryAfterSeconds: 1 });
    if (this.overBudget) throw new AppError('UNAVAILABLE', 'queue is over its memory budget', { retryAfterSeconds: 5 });
    if (this.readOnly) throw new AppError('UNAVAILABLE', 'queue is a read-only replica', { retryAfterSeconds: 5 });
    if (this.cannotPersist)
      throw new AppError('UNAVAILABLE', 'queue cannot write its append-only file', { retryAfterSeconds: 5 });
    if (this.cannotSave) throw new AppError('UNAVAILABLE', 'queue cannot save its RDB snapshot', { retryAfterSeconds: 5 });
  }

  /** Why no push can be taken though Redis answers (over budget, read-only), or undefined. */
  get refusal(): string | undefined {
    if (this.overBudget) return 'queue over its memory budget';
    if (this.readOnly) return 'queue is a read-only replica';
    if (this.cannotPersist) return 'queue cannot write its append-only file';
    if (this.cannotSave) return 'queue cannot save its RDB snapshot';
    return undefined;
  }

  /**
   * An INFO answer, on time or late: Redis is alive (busy, not silent, if late), and its memory and
   * role are as it says — also from a late answer, so that the first one after a reconnect does not
   * take pushes on what was known before it.
   */
  private answered(info: string, sentAt: number): void {
    // Redis 6.2+ (the minimum, README) says its time in every INFO's server section.
    const serverUsec = /^server_time_usec:(\d+)/m.exec(info)?.[1];
    if (serverUsec !== undefined) this.clock.observe(sentAt, Number(serverUsec) / 1000, Date.now());
    const used = Number(/^used_memory:(\d+)/m.exec(info)?.[1] ?? 0);
    const max = Number(/^maxmemory:(\d+)/m.exec(info)?.[1] ?? 0);
    const budget = this.budgetBytes > 0 ? this.budgetBytes : max > 0 ? Math.floor(max * 0.9) : 0;
    const over = budget > 0 && used > budget;
    if (over !== this.overBudget)
      this.logger.warn(
        { used, budget },
        over
          ? 'Redis over its memory budget: refusing pushes'
          : budget > 0
            ? 'Redis back under its memory budget'
            : 'Redis memory budget gone (no REDIS_MEMORY_BUDGET_BYTES, and Redis maxmemory is 0 now): taking pushes again',
      );
    this.overBudget = over;
    this.memoryBudget = budget;
    // A failover that left this address on a replica, or REPLICAOF run by mistake: every claim
    // and add fails with READONLY, so refuse pushes up front and say so once.
    const readOnly = /^role:slave/m.test(info);
    if (readOnly && !this.readOnly) this.logger.warn('Redis is a read-only replica: refusing pushes');
    else if (!readOnly && this.readOnly) this.logger.info('Redis takes writes again');
    this.readOnly = readOnly;
    // AOF writes failing (the default INFO's persistence section): every write is refused with
    // MISCONF, and /readyz said ready while every push got 503 — as for a replica, say so and why.
    const cannotPersist = /^aof_enabled:1/m.test(info) && /^aof_last_write_status:err/m.test(info);
    if (cannotPersist && !this.cannotPersist)
      this.logger.warn(
        "Redis cannot write its append-only file (full disk?): refusing pushes until it can (Redis's log says why)",
      );
    else if (!cannotPersist && this.cannotPersist) this.logger.info('Redis writes its append-only file again');
    this.cannotPersist = cannotPersist;
    // A failed RDB save refuses writes only with stop-writes-on-bgsave-error yes (and save points):
    // with it off, pushes are taken as ever. CONFIG GET would tell, but managed Redis (ElastiCache)
    // refuses CONFIG; Redis refuses PING with MISCONF exactly when it refuses writes for a failed
    // save or AOF write (a master's writeCommandsDeniedByDiskError), so the PING asks Redis itself.
    if (/^rdb_last_bgsave_status:err/m.test(info))
      this.redis.ping().then(
        () => this.saveFailing(false),
        (err: unknown) => {
          // A connection error tells nothing: `reachable` covers it.
          if (err instanceof Error && /^MISCONF /.test(err.message)) this.saveFailing(true);
        },
      );
    else this.saveFailing(false);
    this.usedMemory = used;
    this.pollRefused = false;
    this.lastAnsweredAt = loopClock();
    if (this.stale) this.logger.info('queue health: Redis answering again');
    this.stale = false;
  }

  private saveFailing(refusing: boolean): void {
    if (refusing && !this.cannotSave)
      this.logger.warn(
        "Redis cannot save its RDB snapshot and refuses writes (stop-writes-on-bgsave-error): refusing pushes until a save succeeds (Redis's log says why)",
      );
    else if (!refusing && this.cannotSave) this.logger.info('Redis takes writes again after its failed RDB save');
    this.cannotSave = refusing;
  }

  private async poll(): Promise<void> {
    if (this.redis.status !== 'ready') return;
    if (this.lastAnsweredAt !== undefined && !this.answering() && !this.stale) {
      this.stale = true;
      this.logger.warn(
        { silentMs: Math.round(loopClock() - this.lastAnsweredAt) },
        'queue health: Redis stopped answering; refusing pushes',
      );
    }
    // One poll at a time, each given one interval: a hung one is abandoned, not waited on.
    if (this.polling) return;
    this.polling = true;
    try {
      // Plain INFO (its default sections hold memory and replication): `INFO memory replication`
      // needs Redis 7, and on 6.x every poll failed — never ready, every push a 503.
      const sentAt = Date.now();
      const asked = this.redis.info();
      // An answer after its poll gave up still shows Redis alive: busy (a script taking in a large
      // job holds it for a second or more), not silent. Counting only answers within the interval,
      // a Redis answering every poll in 1.5 s was "not answering" and every push refused for seconds.
      asked.then(
        (info) => this.answered(info, sentAt),
        () => undefined,
      );
      await withTimeout(asked, this.intervalMs);
    } catch (err) {
      // Connection trouble and silence show in `reachable`; an error reply (a Redis that refuses
      // INFO) would too, as "unreachable": say why, once.
      if (err instanceof Error && !this.pollRefused && /^[A-Z]+ /.test(err.message)) {
        this.pollRefused = true;
        this.logger.warn({ err: err.message }, 'queue health: Redis refused INFO; refusing pushes');
      }
    } finally {
      this.polling = false;
    }
  }
}
