import { Redis } from 'ioredis';
import { afterEach, expect, it, vi } from 'vitest';
import { createPushWorker } from '../../services/writer/src/push-worker';
import { createWriterMetrics } from '../../services/writer/src/metrics';
import { capturingLogger, testEnv, uniquePrefix } from '../helpers';

afterEach(() => vi.useRealTimers());

/**
 * A job losing its lock again at each later delivery (a push whose processing stalls the writer, or
 * held jobs redelivered through a long outage) was logged and counted once, however often it
 * recurred: every loss refreshed the memory that silenced it (review32 F3). Now a delivery of the
 * job re-arms it: each delivery's loss is one warning and one count; its end errors stay silent.
 */
it('a job losing its lock at every delivery is logged and counted at every delivery, its end errors still silent', async () => {
  const { logger, lines } = capturingLogger('w');
  const metrics = createWriterMetrics();
  const connection = new Redis(testEnv.redisUrl, { maxRetriesPerRequest: null });
  const outage = vi.fn();
  const w = createPushWorker({
    connection,
    queueName: 'q',
    prefix: uniquePrefix('lost-locks'),
    maxJobs: 16,
    heldBudget: { rows: 1000, bytes: 1e6 },
    lockDurationMs: 30_000,
    stalledIntervalMs: 30_000,
    batcher: {} as never,
    metrics,
    logger,
    redisOutage: { error: outage, recovered: () => undefined } as never,
    deadLetterAgeSeconds: 60,
    pushBlobsKey: 'b',
    putBackMaxMs: 60_000,
  });
  // How BullMQ hands the worker a delivery of job 42 (an empty job: nothing to store).
  const deliver = () =>
    (w.worker as unknown as { callProcessJob(job: unknown, token?: string): Promise<unknown> })
      .callProcessJob({ id: '42', timestamp: Date.now(), attemptsStarted: 1, data: { v: 3, pushes: [] } }, 'tok')
      .catch(() => undefined);
  const warned = () => lines.filter((l) => String(l.msg).startsWith('lost the lock')).length;
  const counted = async () => (await metrics.registry.getSingleMetric('writer_job_locks_lost_total')!.get()).values[0]?.value;
  try {
    vi.useFakeTimers({ toFake: ['Date'] });
    const t0 = Date.now();
    // The same delivery failing renewal round after round: said once.
    for (let i = 0; i < 5; i++) {
      vi.setSystemTime(t0 + i * 1000);
      w.worker.emit('lockRenewalFailed', ['42']);
    }
    expect([warned(), await counted()]).toEqual([1, 1]);
    // Redelivered and losing its lock again, every 2 minutes for an hour: said each time.
    for (let i = 1; i <= 30; i++) {
      vi.setSystemTime(t0 + i * 120_000);
      await deliver();
      w.worker.emit('lockRenewalFailed', ['42']);
      w.worker.emit('lockRenewalFailed', ['42']);
    }
    expect([warned(), await counted()]).toEqual([31, 31]);
    const line = lines.find((l) => String(l.msg).startsWith('lost the lock'))!;
    expect(line.msg).toContain('Redis refused or did not answer the renewal, or this process stalled');
    // The old delivery's end errors stay expected.
    w.worker.emit('error', new Error('Missing lock for job 42. moveToFinished'));
    w.worker.emit('error', new Error('could not renew lock for job 42'));
    expect(outage).not.toHaveBeenCalled();
  } finally {
    vi.useRealTimers();
    await w.close();
    connection.disconnect();
  }
});
