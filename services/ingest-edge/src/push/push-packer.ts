import { randomBytes, randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { isConnectionError, isRefusalError, type Logger, type OutageLog } from '@pga/logger';
import { AppError, type PushItem } from '@pga/contracts';
import type { RedisKeys } from '@pga/redis-keys';
import type { InflightBudget } from '../http/read-body';
import type { EdgeMetrics } from '../ops/edge-metrics';
import { encodePushJob } from './encode-push-job';
import { EncodedData, type EncodedQueue } from './encoded-queue';
import { NoAnswerError, withTimeout } from '../with-timeout';
import type { PushQuota } from './push-quota';
import {
  freeMarkers,
  freshJobDeduplicationId,
  idempotencyScripts,
  markerOf,
  VETO_TTL_MS,
  type IdempotencyScripts,
  type PushQuotaClaim,
} from './idempotency-scripts';

export interface PushOutcome {
  pushId: string;
  records: number;
  duplicate: boolean;
}

export interface PackerSettings {
  windowMs: number;
  maxPushes: number;
  maxBytes: number;
  enqueueTimeoutMs: number;
  idempotencyTtlSeconds: number;
}

/**
 * A push as submitted: the body stays the received bytes until its job is built (a 2 KB string made
 * per request would live through the packing window and be copied by every young-generation GC on
 * the way; made at send time it dies at once).
 */
export type PackedPush = Omit<PushItem, 'body'> & { body: Buffer };

/**
 * `large`: a push of LARGE_PUSH_BYTES or more. It travels in a batch of its own, on the bulk
 * connection, and its body goes to Redis apart from its job, in pieces (`writeBlob`).
 */
export type PushSubmission = PackedPush & { large?: boolean };

/** A large push's body in Redis (redis-keys `pushBlob`), for the job that refers to it. */
interface BlobRef {
  jobId: string;
  key: string;
  pieces: number;
}

interface Pending {
  item: PushSubmission;
  /** Redis key of this push's idempotency marker. */
  idemKey: string;
  records: number;
  bytes: number;
  startedAt: number;
  resolve(outcome: PushOutcome): void;
  reject(err: AppError): void;
}

/**
 * Every push leaves the same BullMQ job options: the writer retries transient failures with backoff.
 * No removeOnFail: how long a dead letter is kept is the writer's (its worker's removeOnFail, the
 * metrics retention), which a job option would override.
 */
const JOB_OPTIONS = {
  attempts: 10,
  backoff: { type: 'exponential', delay: 1000 },
  removeOnComplete: true,
} as const;

/** What a vetoing claim stores under the batch's deduplication key (BullMQ answers it as the job id). */
const VETO = 'veto';
/**
 * Each this many bytes of a batch give Redis a second more to answer it (to take in and persist a
 * 64 MiB push takes seconds, which ENQUEUE_TIMEOUT_MS alone, meant for a Redis that does not answer,
 * would count as a failure: a 503 for a push that was stored).
 */
const BYTES_PER_EXTRA_SECOND = 16 * 1024 * 1024;
/**
 * A large push's body goes to Redis in pieces of this size, each its own command: Redis serves its
 * other clients between two pieces (~1 ms each), where one 64 MiB argument of BullMQ's add script
 * held it for 1–5 s.
 */
export const BLOB_PIECE_BYTES = 1024 * 1024;
/**
 * Enters a blob in the index at Redis's time (ms): the writers' sweep reads the same clock, so an
 * edge host whose clock is behind cannot have a blob swept before its job is added.
 */
const INDEX_BLOB = `local t = redis.call('TIME')
return redis.call('ZADD', KEYS[1], t[1] * 1000 + math.floor(t[2] / 1000), ARGV[1])`;
/** How often the markers of a refused batch are tried to be freed again when freeing them failed. */
const FREE_RETRY_MS = 1000;
/** The bodies plus their job (base64 of them) in ioredis's command queue. */
const JOB_BYTES_FACTOR = 7 / 3;
/** A Redis connection batches are sent on, its queue and its idempotency scripts. */
interface Lane {
  redis: Redis;
  queue: EncodedQueue;
  scripts: IdempotencyScripts;
}

const unavailable = (message: string) => new AppError('UNAVAILABLE', message, { retryAfterSeconds: 1 });

/**
 * Packs concurrent pushes into one BullMQ job (issue 4 §3: ~100 pushes per job doubled end-to-end
 * throughput): the pushes that arrive while a batch is in Redis form the next one, sent when that
 * batch returns, after `windowMs`, or at `maxPushes`/`maxBytes`, whichever comes first. A job is
 * one atomic `queue.add`, so a batch is either wholly in Redis or wholly refused: nothing is
 * acknowledged that Redis did not confirm.
 *
 * Idempotency markers (`keys.idempotency`) name their batch: `b:<batch id>:<records>` (24 h), set if
 * absent by one script call per batch, run by Redis just before the job is added, in the same round
 * trip. The batch's state key (`keys.idempotencyBatch`) is `p` (pending, short TTL) until Redis
 * confirmed the job, then `d` (24 h): one `SET` per batch, not one per push. A batch holding a
 * replay (a marker already set) is vetoed, nothing of it stored, and its fresh pushes are added as
 * a job of their own. A replay whose batch is done — or still pending, but with its job in Redis
 * (the settle on its way) — answers duplicate; one whose batch is pending is in flight and gets
 * 503 + Retry-After; one whose batch state expired (its edge died or gave up
 * mid-way) takes the marker over and is stored. If the add fails the markers are deleted, so a retry
 * is stored; if even that fails, the push ids are deterministic and the writer's ledger still stores
 * each push once.
 */
export class PushPacker {
  private batch: Pending[] = [];
  private batchBytes = 0;
  private timer: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;
  /** Batches in Redis on the main connection (they decide when the next batch goes) … */
  private readonly inFlight = new Set<Promise<void>>();
  /** … and on the bulk connection (large pushes: a small push does not wait for them). */
  private readonly bulkInFlight = new Set<Promise<void>>();
  private readonly pendingTtl: number;
  private readonly lane: Lane;
  private readonly bulkLane: Lane;
  /**
   * Batch ids are unique across processes and restarts: a random prefix (72 bits) and a counter.
   * Short, since every marker holds one: `b:<batch id>:<records>` fits in 44 bytes, which Redis
   * keeps in the key's own allocation (an embedded string), 32 B less per marker than a UUID's.
   */
  private readonly batchPrefix = `${randomBytes(9).toString('base64url')}:`;
  private batchSeq = 0;
  /** What the claim needs of the push quota (none without one). */
  private readonly quotaClaim: PushQuotaClaim | undefined;

  constructor(
    private readonly deps: {
      redis: Redis;
      queue: EncodedQueue;
      keys: RedisKeys;
      metrics: EdgeMetrics;
      logger: Logger;
      /** Keeps counting the bodies of batches answered 503 while Redis may still take their job. */
      budget: InflightBudget;
      /** Where a Redis that is away or refuses writes is told (once, not per batch). */
      redisOutage?: OutageLog;
      /**
       * A second connection (and its queue) for batches of one prebuilt large push; without it
       * they share the connection of every other batch.
       */
      bulk?: { redis: Redis; queue: EncodedQueue };
      /** The per-collector push quota the claim enforces (PUSH_QUOTA_PER_HOUR); none without it. */
      quota?: PushQuota;
    },
    private readonly settings: PackerSettings,
  ) {
    this.pendingTtl = Math.max(30, Math.ceil((settings.enqueueTimeoutMs * 3) / 1000));
    const lane = (redis: Redis, queue: EncodedQueue): Lane => ({
      redis,
      queue,
      scripts: idempotencyScripts(redis, VETO, deps.keys.idempotencyBatchPrefix, `${queue.keys.de}:`),
    });
    this.lane = lane(deps.redis, deps.queue);
    this.bulkLane = deps.bulk ? lane(deps.bulk.redis, deps.bulk.queue) : this.lane;
    if (deps.quota && deps.quota.limit > 0)
      this.quotaClaim = {
        limit: deps.quota.limit,
        windowSeconds: deps.quota.windowSeconds,
        markerPrefixLength: deps.keys.idempotency('', '').length - 1,
        counterPrefix: deps.keys.pushQuota(''),
      };
  }

  submit(item: PushSubmission, idempotencyKey: string, records: number): Promise<PushOutcome> {
    return new Promise<PushOutcome>((resolve, reject) => {
      const idemKey = this.deps.keys.idempotency(item.collector_id, idempotencyKey);
      // Two pushes with one key in one window: only the first can win the marker, so answer the
      // second like any in-flight replay.
      if (this.batch.some((p) => p.idemKey === idemKey))
        return reject(unavailable('a push with this idempotency key is in flight'));
      const large = item.large === true;
      const bytes = item.body.length;
      if (this.batch.length > 0 && (large || this.batchBytes + bytes > this.settings.maxBytes)) this.flush();
      this.batch.push({ item, idemKey, records, bytes, startedAt: performance.now(), resolve, reject });
      this.batchBytes += bytes;
      if (large || this.batch.length >= this.settings.maxPushes || this.batchBytes >= this.settings.maxBytes) this.flush();
      // Group commit: with nothing in flight, send at the end of this I/O turn (no added latency
      // when idle); while a batch is in flight, collect until it returns or the window ends.
      else if (this.inFlight.size === 0) this.immediate ??= setImmediate(() => this.flush());
      else this.timer ??= setTimeout(() => this.flush(), this.settings.windowMs);
    });
  }

  /** Sends the current batch now (also used by the SIGTERM drain). */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.immediate) clearImmediate(this.immediate);
    this.timer = undefined;
    this.immediate = undefined;
    if (this.batch.length === 0) return;
    const batch = this.batch;
    this.batch = [];
    const bytes = this.batchBytes;
    this.batchBytes = 0;
    const work = this.send(batch, bytes).catch((err: unknown) => {
      this.deps.logger.error({ err }, 'push batch failed unexpectedly');
      for (const p of batch) p.reject(unavailable('queue unavailable'));
    });
    if (this.laneOf(batch) !== this.lane) {
      this.bulkInFlight.add(work);
      void work.finally(() => this.bulkInFlight.delete(work));
      return;
    }
    this.inFlight.add(work);
    void work.finally(() => {
      this.inFlight.delete(work);
      if (this.inFlight.size === 0 && this.batch.length > 0) this.flush();
    });
  }

  /** Resolves when every batch handed to Redis has been answered. */
  async drain(): Promise<void> {
    this.flush();
    while (this.inFlight.size + this.bulkInFlight.size > 0) await Promise.allSettled([...this.inFlight, ...this.bulkInFlight]);
  }

  /** `bytes`: the batch's body bytes (they lengthen its deadline). */
  private async send(batch: Pending[], bytes: number): Promise<void> {
    const { metrics } = this.deps;
    // A large push goes on the bulk connection: Redis takes in its tens of MB at its own pace, and
    // the small batches behind it on one connection would wait for all of it.
    const lane = this.laneOf(batch);
    const { redis, queue } = lane;
    let timeoutMs = this.settings.enqueueTimeoutMs + Math.floor(bytes / BYTES_PER_EXTRA_SECOND) * 1000;
    // Its body first, in pieces; the claim and the (small) job once Redis holds all of them.
    let blob: BlobRef | undefined;
    if (isLarge(batch)) {
      blob = await this.writeBlob(lane, batch[0]!, timeoutMs);
      if (!blob) return;
      timeoutMs = this.settings.enqueueTimeoutMs;
    }
    // One round trip: the claim and the add leave together, in this order, on one connection, so
    // Redis runs the claim first. A claim that finds any marker already set also sets the batch's
    // veto key, which is the key BullMQ's own deduplication checks: the add then stores nothing.
    const batchId = `${this.batchPrefix}${++this.batchSeq}`;
    // Until when freeing a refused batch's markers is worth retrying: once its state key (`p`,
    // pendingTtl) has expired, a claim takes its markers over anyway (settleRefused).
    const freeUntil = Date.now() + this.pendingTtl * 1000;
    const stateKey = this.deps.keys.idempotencyBatch(batchId);
    const claim = lane.scripts.claim(
      batch.map((p) => p.idemKey),
      batch.map((p) => p.records),
      { id: batchId, stateKey, vetoKey: `${queue.keys.de}:${batchId}`, ...(blob && { blob }) },
      this.settings.idempotencyTtlSeconds,
      this.pendingTtl,
      this.quotaClaim,
    );
    const optimistic = this.add(lane, batch, batchId, blob);
    optimistic.catch(() => undefined); // answered below, whichever way the claim goes
    let previous: string[];
    try {
      previous = await withTimeout(claim, timeoutMs);
    } catch (err) {
      // A slow Redis is told by the queue health check (it stops taking pushes after 3 s of silence).
      if (!(err instanceof NoAnswerError)) this.enqueueFailed(err, batch.length);
      this.strand(batch, blob ? 1 : JOB_BYTES_FACTOR, claim, optimistic);
      for (const p of batch) p.reject(unavailable('queue unavailable'));
      // A slow Redis may still run the claim (and then the add) later. The markers that claim set
      // are settled by what the add did (`settleRefused`).
      claim.then(
        (late) =>
          this.settleRefused(
            redis,
            optimistic,
            { batchId, stateKey, freeUntil },
            batch.filter((_, i) => late[i] === ''),
            blob,
          ),
        () => undefined,
      );
      return;
    }
    const fresh: Pending[] = [];
    batch.forEach((p, i) => {
      const prev = previous[i];
      if (prev === '') return fresh.push(p);
      // `d::<records>` (or `d:<push id>:<records>` from an older edge): stored. The push id of a
      // replay is derived from the same (collector, key) as the original's.
      const [state, pushId, records] = String(prev).split(':');
      if (state === 'd') {
        metrics.pushes.inc({ outcome: 'duplicate' });
        return p.resolve({ pushId: pushId || p.item.push_id, records: Number(records) || 0, duplicate: true });
      }
      if (state === 'x') {
        // Pieces Redis had acknowledged are gone (a failover or a crash): say so, it is not a stall.
        this.deps.logger.warn(
          { batchId, blob: blob?.key },
          "a large push's body was not whole in Redis when its job was claimed; answering 503",
        );
        return p.reject(unavailable('the push did not reach Redis whole; retry'));
      }
      // `q:<seconds>`: its collector used its push quota; nothing of it stored (the batch vetoed).
      if (state === 'q' && this.deps.quota) return p.reject(this.deps.quota.refuse(p.item.collector_id, Number(pushId)));
      p.reject(unavailable('a push with this idempotency key is in flight'));
    });
    // Replays in the batch: the optimistic add was vetoed; the fresh pushes go in a job of their own.
    let added = optimistic;
    if (fresh.length < batch.length) {
      optimistic.then(
        (stored) => {
          if (stored) this.deps.logger.warn({ batchId }, 'a vetoed push job was stored; the ledger dedupes it');
          else if (blob) this.dropBlob(redis, blob.key);
        },
        () => undefined,
      );
      if (fresh.length === 0) return;
      added = this.add(lane, fresh, freshJobDeduplicationId(batchId));
    }
    try {
      if (!(await withTimeout(added, timeoutMs))) throw new Error('push job was not stored');
    } catch (err) {
      this.enqueueFailed(err, fresh.length);
      this.strand(batch, blob ? 1 : JOB_BYTES_FACTOR, optimistic, added);
      for (const p of fresh) p.reject(unavailable('queue unavailable'));
      this.settleRefused(redis, added, { batchId, stateKey, freeUntil }, fresh, blob);
      return;
    }
    this.markDone(stateKey);
    metrics.pushesPerJob.observe(fresh.length);
    const now = performance.now();
    metrics.pushes.inc({ outcome: 'accepted' }, fresh.length);
    for (const p of fresh) {
      metrics.enqueueLatency.observe((now - p.startedAt) / 1000);
      p.resolve({ pushId: p.item.push_id, records: p.records, duplicate: false });
    }
  }

  /** A large push's batch goes on the bulk connection, every other on the main one. */
  private laneOf(batch: Pending[]): Lane {
    return isLarge(batch) ? this.bulkLane : this.lane;
  }

  /**
   * Writes a large push's body to Redis in BLOB_PIECE_BYTES pieces (a hash, redis-keys `pushBlob`,
   * named after the job that will refer to it), registered in `pushBlobs` first so that the writers'
   * sweep finds it if its job never comes. Resolves with the blob once Redis holds every piece;
   * otherwise answers the push 503 itself, drops what was written, and resolves undefined.
   */
  private async writeBlob(lane: Lane, p: Pending, timeoutMs: number): Promise<BlobRef | undefined> {
    const { redis } = lane;
    const jobId = `large-${randomUUID()}`;
    const key = this.deps.keys.pushBlob(jobId);
    const body = p.item.body;
    const writes: Promise<unknown>[] = [redis.eval(INDEX_BLOB, 1, this.deps.keys.pushBlobs, key)];
    let pieces = 0;
    for (let at = 0; at < body.length; at += BLOB_PIECE_BYTES)
      writes.push(redis.hset(key, String(pieces++), body.subarray(at, at + BLOB_PIECE_BYTES)));
    try {
      await withTimeout(Promise.all(writes), timeoutMs);
      return { jobId, key, pieces };
    } catch (err) {
      if (!(err instanceof NoAnswerError)) this.enqueueFailed(err, 1);
      // The body, and ioredis's copies of the pieces not yet written, until every piece is answered.
      this.strand([p], 2, ...writes);
      p.reject(unavailable('queue unavailable'));
      // Sent after the pieces on the same connection, so Redis runs it after them; if the
      // connection is lost first, the writers' sweep deletes what Redis kept.
      this.dropBlob(redis, key);
      return undefined;
    }
  }

  /** Deletes a blob no job refers to (if this fails, the writers' sweep deletes it later). */
  private dropBlob(redis: Redis, key: string): void {
    void Promise.all([redis.unlink(key), redis.zrem(this.deps.keys.pushBlobs, key)]).catch(() => undefined);
  }

  /**
   * A batch answered 503 whose job Redis may still take: the markers its claim set (`mine`) are
   * settled by what the add did. Stored → done (the client's retry answers duplicate); not stored →
   * freed, so the retry is stored instead of waiting out the pending TTL, and its blob dropped. An
   * add that failed may still have been stored (a connection lost after sending it): its markers
   * are freed (the ledger stores each push once), its blob is left to the writers' sweep.
   * Freeing deletes a marker only while it still names this batch (`freeMarkers`). One that fails
   * too (the same Redis refusing writes — MISCONF, READONLY — or the connection lost) is tried again
   * every second until `freeUntil`: the markers stayed pending, and every retry of those pushes was
   * answered 503 "in flight" for up to the pending TTL (30 s) after Redis was fine again.
   */
  private settleRefused(
    redis: Redis,
    added: Promise<boolean>,
    { batchId, stateKey, freeUntil }: { batchId: string; stateKey: string; freeUntil: number },
    mine: Pending[],
    blob: BlobRef | undefined,
  ): void {
    const keys = mine.map((p) => p.idemKey);
    const values = mine.map((p) => markerOf(batchId, p.records));
    const free = () => {
      if (keys.length === 0) return;
      void freeMarkers(redis, keys, values, this.quotaClaim).catch(() => {
        if (Date.now() + FREE_RETRY_MS < freeUntil) setTimeout(free, FREE_RETRY_MS).unref();
      });
    };
    added.then((stored) => {
      if (stored) return mine.length > 0 && this.markDone(stateKey);
      free();
      if (blob) this.dropBlob(redis, blob.key);
    }, free);
  }

  /**
   * A batch refused: Redis away or refusing writes (out of memory, a read-only replica, …) goes to
   * the Redis outage log, one line for the whole outage; anything else is a warning of its own.
   */
  private enqueueFailed(err: unknown, pushes: number): void {
    const { redisOutage, logger } = this.deps;
    if (redisOutage && (isConnectionError(err) || isRefusalError(err))) redisOutage.error(err, 'enqueue failed; answering 503');
    else logger.warn({ err: errMessage(err), pushes }, 'enqueue failed; answering 503');
  }

  /**
   * A batch answered 503 before Redis answered for it: its bodies, and its job in ioredis's command
   * queue, stay in memory until Redis answers or the connection fails — `factor` times the bodies:
   * JOB_BYTES_FACTOR with the job (base64, 4/3 of the bodies), 1 for a large push whose body is
   * already in Redis (its job is small), 2 while its pieces (copied by ioredis) are still queued.
   * They are counted in the in-flight budget until then, so the clients' retries (Retry-After: 1)
   * are refused rather than piling up copies of the same bodies for as long as Redis stalls.
   */
  private strand(batch: Pending[], factor: number, ...work: Promise<unknown>[]): void {
    let bytes = 0;
    for (const p of batch) bytes += p.bytes;
    bytes = Math.ceil(bytes * factor);
    this.deps.budget.hold(bytes);
    void Promise.allSettled(work).then(() => this.deps.budget.give(bytes));
  }

  /**
   * Adds one job of these pushes under a deduplication id (the batch id, or its fresh pushes' id);
   * resolves false when BullMQ's deduplication refused it (the claim vetoed the batch). The key
   * names the stored job for VETO_TTL_MS: a replay claimed before this batch is settled finds its
   * job there and answers duplicate.
   */
  private async add(lane: Lane, pushes: Pending[], deduplicationId: string, blob?: BlobRef): Promise<boolean> {
    const window = this.settings.idempotencyTtlSeconds;
    const data = new EncodedData(
      blob
        ? encodeLargeJob(pushes[0]!.item, blob, window)
        : encodePushJob(
            pushes.map((p) => p.item),
            window,
          ),
    );
    const job = await lane.queue.add('push', data, {
      ...JOB_OPTIONS,
      ...(blob && { jobId: blob.jobId }),
      deduplication: { id: deduplicationId, ttl: VETO_TTL_MS },
    });
    return job.id !== VETO;
  }

  /**
   * Marks the batch stored: every marker its claim set now answers duplicate. Sent before the 200s
   * go out; a replay that still reaches Redis first (through another edge process) finds the
   * batch's job under its deduplication key, which answers duplicate too (CLAIM). Always on the
   * main connection, also for a large push's batch: on the bulk one it would wait behind the large
   * jobs sent after it, possibly past that key's VETO_TTL_MS.
   */
  private markDone(stateKey: string): void {
    this.lane.scripts
      .settle(stateKey, this.settings.idempotencyTtlSeconds)
      .catch((err: unknown) => this.deps.logger.warn({ err: errMessage(err) }, 'idempotency markers not updated'));
  }
}

/** A batch of one large push (submit sends such a push alone). */
const isLarge = (batch: Pending[]) => batch.length === 1 && batch[0]!.item.large === true;

/** The (v3) job of a large push: its fields, and where its body is (contracts' PushItemRef). */
function encodeLargeJob(item: PushSubmission, blob: BlobRef, replayWindowSeconds: number): Buffer {
  const { push_id, collector_id, received_at, checksum, body } = item;
  const ref = { key: blob.key, bytes: body.length, pieces: blob.pieces };
  const pushes = [{ push_id, collector_id, received_at, checksum, body_ref: ref }];
  return Buffer.from(JSON.stringify({ v: 3, replay_window_s: Math.trunc(replayWindowSeconds), pushes }));
}

function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
