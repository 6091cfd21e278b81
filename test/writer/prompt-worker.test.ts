import { Queue, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '@pga/logger';
import { installPromptLoop } from '../../services/writer/src/prompt-worker';
import { testEnv, uniquePrefix } from '../helpers';
import { waitUntil } from './helpers';

const JOBS = 200;
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/**
 * A worker that holds every job (like the writer until the job's batch commits) in front of a full
 * queue: how many jobs did it fetch after it had started the first one?
 */
async function fetchedAfterFirstStart(prompt: boolean) {
  const prefix = uniquePrefix('prompt');
  const redis = new Redis(testEnv.redisUrl, { maxRetriesPerRequest: null });
  const queue = new Queue('q', { connection: redis, prefix });
  cleanups.push(
    () => redis.quit(),
    () => queue.close(),
    () => queue.obliterate({ force: true }),
  );
  await queue.addBulk(Array.from({ length: JOBS }, (_, i) => ({ name: 'j', data: { i } })));

  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let firstStart = 0;
  const started: Job[] = [];
  const workerRedis = redis.duplicate();
  const worker = new Worker(
    'q',
    async (job: Job) => {
      firstStart ||= Date.now();
      started.push(job);
      await released;
      return job.data.i;
    },
    { connection: workerRedis, prefix, concurrency: 1000, autorun: false },
  );
  cleanups.push(
    () => workerRedis.quit(),
    () => worker.close(),
  );
  let completed = 0;
  worker.on('completed', () => completed++);
  const installed = prompt ? installPromptLoop(worker, createLogger({ name: 't', level: 'silent' })) : false;
  void worker.run();

  await waitUntil('every job started', async () => started.length === JOBS);
  release();
  await waitUntil('every job completed', async () => completed === JOBS);
  expect(await queue.getJobCounts('completed', 'active', 'wait', 'failed')).toEqual({
    completed: JOBS,
    active: 0,
    wait: 0,
    failed: 0,
  });
  expect(new Set(started.map((j) => j.id)).size).toBe(JOBS);
  // processedOn: when BullMQ moved the job to active (fetched it), by this process's clock.
  return { installed, after: started.filter((j) => (j.processedOn ?? 0) > firstStart).length };
}

describe('writer: prompt worker loop', () => {
  it("starts each job as soon as it is fetched, while BullMQ's loop first fetches up to its concurrency", async () => {
    const prompt = await fetchedAfterFirstStart(true);
    expect(prompt.installed).toBe(true);
    // 200 fetches are 200 Redis round trips: most happen after the first job has started.
    expect(prompt.after).toBeGreaterThan(JOBS / 2);

    const stock = await fetchedAfterFirstStart(false);
    expect(stock.after).toBeLessThan(JOBS / 10);
  });
});
