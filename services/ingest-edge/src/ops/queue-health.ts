import type { Redis } from 'ioredis';
import { AppError } from '@pga/contracts';
import type { Logger } from '@pga/logger';

/**
 * Whether pushes may be taken: Redis connected, and its memory under the budget (issue 4 §3: a
 * full Redis must turn into 503 + Retry-After at the edge, not into pushes held in edge memory).
 * Memory is polled once a second with `INFO memory`; the budget is REDIS_MEMORY_BUDGET_BYTES, or
 * 90 % of Redis `maxmemory` when that is set and no budget is configured.
 */
export class QueueHealth {
  overBudget = false;
  usedMemory = 0;
  /** False until memory was read once since the last (re)connect: no push is taken blind. */
  checked = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly budgetBytes: number,
    private readonly logger: Logger,
  ) {}

  start(intervalMs = 1000): void {
    this.redis.on('ready', () => void this.poll());
    this.redis.on('close', () => (this.checked = false));
    void this.poll();
    this.timer = setInterval(() => void this.poll(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  get reachable(): boolean {
    return this.redis.status === 'ready' && this.checked;
  }

  assertAccepting(): void {
    if (!this.reachable) throw new AppError('UNAVAILABLE', 'queue unreachable', { retryAfterSeconds: 1 });
    if (this.overBudget) throw new AppError('UNAVAILABLE', 'queue is over its memory budget', { retryAfterSeconds: 5 });
  }

  private async poll(): Promise<void> {
    if (this.redis.status !== 'ready') return;
    try {
      const info = await this.redis.info('memory');
      const used = Number(/^used_memory:(\d+)/m.exec(info)?.[1] ?? 0);
      const max = Number(/^maxmemory:(\d+)/m.exec(info)?.[1] ?? 0);
      const budget = this.budgetBytes > 0 ? this.budgetBytes : max > 0 ? max * 0.9 : 0;
      const over = budget > 0 && used > budget;
      if (over !== this.overBudget)
        this.logger.warn(
          { used, budget },
          over ? 'Redis over its memory budget: refusing pushes' : 'Redis back under its memory budget',
        );
      this.overBudget = over;
      this.usedMemory = used;
      this.checked = true;
    } catch {
      // Connection trouble shows in `reachable`.
    }
  }
}
