/**
 * The edge's CPU per push on the way into Redis, alone: the push packer (idempotency claim, packed
 * BullMQ add, settle) against a real Redis (AOF on, as the product runs it), without HTTP, auth or
 * a load generator competing for the cores. Prints this process's CPU (user + system) per push and
 * Redis's, for each setting of ioredis' auto-pipelining, alternating rounds so drift hits both.
 *
 *   node --single-threaded-gc --import tsx services/ingest-edge/bench/packer-cost.ts [pushes] [concurrent] [rounds] [modes]
 *
 * `concurrent` pushes are submitted at once, the next wave when they are all answered (a closed loop
 * of that many clients), so a packed job holds up to that many pushes. `modes`: `on`, `off` or
 * `on,off` (the default), the auto-pipelining settings measured. With PACKER_COST_STATS=1 it also
 * prints Redis's `INFO commandstats` lines of each round (the commands that took ≥ 10 ms in all).
 * PACKER_COST_QUOTA: the push quota the claim counts (PUSH_QUOTA_PER_HOUR; default 1000000000, so
 * it counts every push and refuses none, as an edge with a quota does below it; 0: no quota).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { freePort, startRedis } from '@pga/local-stack';
import { createLogger } from '@pga/logger';
import { redisKeys } from '@pga/redis-keys';
import { makeBodyPool } from '../../../bench/src/load/payloads';
import { InflightBudget } from '../src/http/read-body';
import { createEdgeMetrics } from '../src/ops/edge-metrics';
import { EncodedQueue } from '../src/push/encoded-queue';
import { PushPacker } from '../src/push/push-packer';
import { PushQuota } from '../src/push/push-quota';

const TOTAL = Number(process.argv[2] ?? 40_000);
const CONCURRENT = Number(process.argv[3] ?? 50);
const ROUNDS = Number(process.argv[4] ?? 3);
/** `on`, `off` or `on,off` (default): which auto-pipelining settings to measure. */
const MODES = (process.argv[5] ?? 'on,off').split(',');
const QUOTA = Number(process.env.PACKER_COST_QUOTA ?? 1_000_000_000);

const dir = mkdtempSync(path.join(os.tmpdir(), 'pga-packer-cost-'));
const server = await startRedis({ dataDir: path.join(dir, 'redis'), port: await freePort() });
const logger = createLogger({ name: 'packer-cost', level: 'warn', pretty: false });
const keys = redisKeys('pc');
const bodies = makeBodyPool(7, '2k', 64).map((b) => b.json);
const admin = new Redis(server.url);

/** Redis's CPU seconds so far (`INFO cpu`: user + system). */
async function redisCpu(): Promise<number> {
  const info = await admin.info('cpu');
  const num = (k: string) => Number(new RegExp(`${k}:([\\d.]+)`).exec(info)?.[1] ?? NaN);
  return num('used_cpu_user') + num('used_cpu_sys');
}

let pushSeq = 0;

async function measure(autoPipelining: boolean, round: number): Promise<void> {
  const redis = new Redis(server.url, { enableAutoPipelining: autoPipelining, maxRetriesPerRequest: 1 });
  const queue = new EncodedQueue(keys.pushQueue, { connection: redis, prefix: keys.bullPrefix });
  await queue.waitUntilReady();
  const metrics = createEdgeMetrics({
    ready: () => true,
    inflightBytes: () => 0,
    cache: () => ({ hits: 0, verified: 0, invalid: 0, size: 0 }),
  });
  const packer = new PushPacker(
    { redis, queue, keys, metrics, logger, budget: new InflightBudget(Number.MAX_SAFE_INTEGER), quota: new PushQuota(QUOTA) },
    { windowMs: 5, maxPushes: 100, maxBytes: 1024 * 1024, enqueueTimeoutMs: 5000, idempotencyTtlSeconds: 3600 },
  );
  const submitWave = (from: number, n: number) =>
    Promise.all(
      Array.from({ length: n }, (_, k) => {
        const i = from + k;
        // Every push of the process is new: no idempotency key or push id comes round again.
        const seq = ++pushSeq;
        const body = bodies[i % bodies.length]!;
        return packer.submit(
          {
            push_id: `00000000-0000-4000-8000-${String(seq).padStart(12, '0')}`,
            collector_id: '11111111-1111-4111-8111-111111111111',
            received_at: new Date().toISOString(),
            checksum: 'a'.repeat(64),
            body,
          },
          `k:${seq}`,
          4,
        );
      }),
    ).then((outcomes) => {
      if (outcomes.some((o) => o.duplicate)) throw new Error('a fresh push was answered as a duplicate');
    });
  for (let w = 0; w < 5; w++) await submitWave(w * CONCURRENT * 40, CONCURRENT * 40); // warm-up: JIT, scripts loaded
  await admin.config('RESETSTAT');
  const cpu0 = process.cpuUsage();
  const redis0 = await redisCpu();
  const t0 = performance.now();
  for (let i = 0; i < TOTAL; i += CONCURRENT) await submitWave(i, Math.min(CONCURRENT, TOTAL - i));
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const redisSeconds = (await redisCpu()) - redis0;
  const usPerPush = (cpu.user + cpu.system) / TOTAL;
  console.log(
    `auto-pipelining ${autoPipelining ? 'on ' : 'off'}  round ${round}: ${Math.round(TOTAL / seconds)} pushes/s, ` +
      `edge ${usPerPush.toFixed(1)} µs/push, Redis ${((redisSeconds * 1e6) / TOTAL).toFixed(1)} µs/push`,
  );
  if (process.env.PACKER_COST_STATS)
    for (const line of (await admin.info('commandstats')).split('\n'))
      if (/usec=\d{5,}/.test(line)) console.log('   ', line.trim());
  await queue.obliterate({ force: true });
  await queue.close();
  redis.disconnect();
}

try {
  for (let round = 1; round <= ROUNDS; round++) {
    if (MODES.includes('on')) await measure(true, round);
    if (MODES.includes('off')) await measure(false, round);
  }
} finally {
  admin.disconnect();
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
}
