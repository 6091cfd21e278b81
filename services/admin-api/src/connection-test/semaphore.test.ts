import { describe, expect, it } from 'vitest';
import { createSemaphore } from './semaphore';

describe('createSemaphore', () => {
  it('runs at most `max` tasks at once and refuses when the wait queue is full', async () => {
    const sem = createSemaphore(2, 3);
    let running = 0;
    let peak = 0;
    const releases: (() => void)[] = [];
    const task = () =>
      sem.run(async () => {
        running++;
        peak = Math.max(peak, running);
        await new Promise<void>((r) => releases.push(r));
        running--;
      });
    const tasks = Array.from({ length: 5 }, task);
    await expect(task()).rejects.toMatchObject({ code: 'RATE_LIMITED' });
    while (releases.length || running) {
      await new Promise((r) => setTimeout(r, 1));
      releases.shift()?.();
    }
    await Promise.all(tasks);
    expect(peak).toBe(2);
    expect(sem.active).toBe(0);
  });
});
