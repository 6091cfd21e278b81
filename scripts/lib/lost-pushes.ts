import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Pool } from '@pga/db';
import { derivePushId } from '../../services/ingest-edge/src/push/push-id';
import { redisKeys } from '@pga/redis-keys';

export interface LostPush {
  collector_id: string;
  /** What the edge keyed the push by: `k:<Idempotency-Key or push_id>`, or `b:<SHA-256 of the body>`. */
  key: string;
  push_id: string;
  records: number;
  /** When the edge accepted it, from its marker's remaining TTL (to the second). */
  accepted_at: string;
}

export interface LostPushesOptions {
  redis: Redis;
  pool: Pool;
  /** REDIS_KEY_PREFIX. */
  prefix: string;
  /** The edges' IDEMPOTENCY_TTL_SECONDS (the markers' lifetime), to tell when a push was accepted. */
  ttlSeconds: number;
  /** Pushes accepted less than this long ago are left out: they may still wait in the queue. */
  graceSeconds: number;
}

const UUID_LENGTH = 36;
/** Every state a push job waits in (failed: a dead letter the admin API can retry). */
const WAITING_STATES = ['waiting', 'active', 'delayed', 'prioritized', 'paused', 'waiting-children', 'failed'] as const;
const JOBS_PER_PAGE = 100;

/**
 * The push ids of every push job still in Redis, in whatever state: not lost, whatever the ledger
 * says — still to be stored, retrying, or a dead letter to retry (admin API).
 */
async function queuedPushIds(redis: Redis, prefix: string): Promise<Set<string>> {
  const keys = redisKeys(prefix);
  const connection = redis.duplicate();
  const queue = new Queue(keys.pushQueue, { connection, prefix: keys.bullPrefix });
  const ids = new Set<string>();
  try {
    // Each state paged alike; a page that finds no job in any of them is past the end of all.
    for (let start = 0; ; start += JOBS_PER_PAGE) {
      const jobs = await queue.getJobs([...WAITING_STATES], start, start + JOBS_PER_PAGE - 1, true);
      if (jobs.length === 0) break;
      for (const job of jobs) {
        const pushes = (job?.data as { pushes?: { push_id?: unknown }[] } | undefined)?.pushes ?? [];
        for (const p of pushes) if (typeof p.push_id === 'string') ids.add(p.push_id);
      }
    }
  } finally {
    await queue.close();
    connection.disconnect();
  }
  return ids;
}

/**
 * The pushes the edges acknowledged within the replay window (their idempotency marker is still in
 * Redis and its batch is done) that PostgreSQL's ingest ledger does not have: after PostgreSQL was
 * restored from a backup older than their commit, these are gone, and a collector's replay of one
 * is answered `duplicate: true` and not stored again. Pushes whose job is still in Redis (waiting,
 * retrying, or a dead letter) are not listed: they are not lost. Read-only: the queue's jobs, SCAN of
 * the markers, their batch states, one ledger query per 1,000.
 */
export async function findLostPushes(o: LostPushesOptions): Promise<LostPush[]> {
  const keys = redisKeys(o.prefix);
  const markerPrefix = keys.idempotency('', '').slice(0, -2); // `<prefix>:idem:`
  const now = Date.now();
  // Read before the markers: a job stored meanwhile is in the ledger by the time its marker is read.
  const queued = await queuedPushIds(o.redis, o.prefix);
  const lost: LostPush[] = [];
  let cursor = '0';
  do {
    const [next, found] = await o.redis.scan(cursor, 'MATCH', `${markerPrefix}:*`, 'COUNT', 1000);
    cursor = next;
    if (found.length === 0) continue;
    const read = o.redis.pipeline();
    for (const k of found) read.get(k).ttl(k);
    const answers = (await read.exec()) ?? [];
    const candidates: (Omit<LostPush, 'push_id'> & { push_id?: string; batch?: string })[] = [];
    found.forEach((k, i) => {
      const value = answers[2 * i]?.[1] as string | null;
      const ttl = Number(answers[2 * i + 1]?.[1]);
      const rest = k.slice(markerPrefix.length + 1);
      const collector = rest.slice(0, UUID_LENGTH);
      const key = rest.slice(UUID_LENGTH + 1);
      if (!value || ttl < 0 || rest[UUID_LENGTH] !== ':') return;
      const ageSeconds = o.ttlSeconds - ttl;
      if (ageSeconds < o.graceSeconds) return;
      const acceptedAt = new Date(now - ageSeconds * 1000).toISOString();
      // b:<batch id>:<records> (the batch id holds ':'), or the older d:<push id>:<records>.
      const m = /^b:(.+):(\d+)$/.exec(value) ?? /^(d):[^:]*:(\d+)$/.exec(value);
      if (!m) return;
      candidates.push({
        collector_id: collector,
        key,
        records: Number(m[2]),
        accepted_at: acceptedAt,
        ...(m[1] === 'd' ? {} : { batch: m[1]! }),
      });
    });
    const states = o.redis.pipeline();
    for (const c of candidates) if (c.batch) states.get(keys.idempotencyBatch(c.batch));
    const stateAnswers = ((await states.exec()) ?? []).map((a) => a[1] as string | null);
    let s = 0;
    const done = candidates.filter((c) => !c.batch || stateAnswers[s++] === 'd');
    if (done.length === 0) continue;
    const ids = done.map((c) => derivePushId(c.collector_id, c.key));
    const { rows } = await o.pool.query<{ push_id: string }>(
      'SELECT push_id::text FROM ingest_ledger WHERE push_id = ANY($1::uuid[])',
      [ids],
    );
    const stored = new Set(rows.map((r) => r.push_id));
    done.forEach((c, i) => {
      if (stored.has(ids[i]!) || queued.has(ids[i]!)) return;
      lost.push({ collector_id: c.collector_id, key: c.key, push_id: ids[i]!, records: c.records, accepted_at: c.accepted_at });
    });
  } while (cursor !== '0');
  return lost.sort((a, b) => a.accepted_at.localeCompare(b.accepted_at));
}
