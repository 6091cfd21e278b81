import { AppError } from '@pga/contracts';

export interface Semaphore {
  /** Runs `fn` when a slot is free; refuses with RATE_LIMITED when too many callers already wait. */
  run<T>(fn: () => Promise<T>): Promise<T>;
  readonly active: number;
}

/** A counting semaphore with a bounded wait queue (default: 50 waiters per slot). */
export function createSemaphore(max: number, maxWaiting = max * 50): Semaphore {
  let active = 0;
  const waiting: (() => void)[] = [];
  const release = () => {
    active--;
    const next = waiting.shift();
    if (next) {
      active++;
      next();
    }
  };
  return {
    get active() {
      return active;
    },
    async run(fn) {
      if (active >= max) {
        if (waiting.length >= maxWaiting)
          throw new AppError('RATE_LIMITED', 'too many connection tests are queued; try again shortly');
        await new Promise<void>((resolve) => waiting.push(resolve));
      } else {
        active++;
      }
      try {
        return await fn();
      } finally {
        release();
      }
    },
  };
}
