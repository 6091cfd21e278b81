import { ReplyError, type Redis } from 'ioredis';
import type { Pool } from '@pga/db';
import type { Logger, OutageLog } from '@pga/logger';
import type { RedisKeys } from '@pga/redis-keys';
import type { WriterMetrics } from './metrics';
import { createPgTaskLog } from './pg-task-log';
import { FLUSH_HEARTBEATS } from './sql';
import type { PublishStatuses, StatusRow } from './status-publisher';

/** A uuid as PostgreSQL's `uuid` input takes it (ids read back from Redis sets may be anything). */
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** An ISO-8601 date and time without `Z` or an offset, which JavaScript reads in the process's zone. */
const ZONELESS_ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?$/;

/**
 * last_seen as the edge wrote it: epoch ms, epoch seconds, or an ISO string (the edge writes
 * `toISOString()`); one without an offset is UTC, as a push's received_at (parseReceivedAt), not the
 * writer's local time — hours off on a writer with TZ set, which could take a live collector for silent.
 */
export function parseSeen(value: string | undefined): Date | null {
  if (!value) return null;
  if (/^\d+(\.\d+)?$/.test(value)) {
    const n = Number(value);
    return new Date(n < 1e11 ? n * 1000 : n);
  }
  const d = new Date(ZONELESS_ISO.test(value) ? `${value}Z` : value);
  return Number.isNaN(d.getTime()) ? null : d;
}

/**
 * Text for PostgreSQL from the edge's hash: cut to `max` and without U+0000, which `text` cannot
 * store. The edge refuses it (HeartbeatBodySchema), but one such value (an older edge, a hand-edited
 * hash) would otherwise fail the whole batch's statement on every tick, for every collector in it.
 */
export function storableText(value: string | undefined, max: number): string | null {
  if (!value) return null;
  const text = value.includes('\u0000') ? value.replaceAll('\u0000', '') : value;
  return text ? text.slice(0, max) : null;
}

/**
 * Heartbeat minutes read per collector per flush statement (the oldest of its `keys.heartbeatMinutes`
 * ZSET): a collector with more is marked dirty again and its next flush takes the next ones. Bounds
 * one statement to batchSize × this many history rows (60,000 at the default 1,000 collectors) and
 * the writer's memory for them: a day of writer downtime (1,440 minutes for each of 1,000 collectors)
 * made one statement of 1.44 M rows holding every collector's row lock for about a minute. 60 keeps
 * up with a collector heartbeating every second (one minute's entries) and catches up a day of
 * backlog in 24 flushes.
 */
export const HEARTBEAT_MINUTES_PER_FLUSH = 60;

/** A member of the edge's heartbeatMinutes ZSET, `<epoch ms>:<active|error>`, or undefined. */
export function parseMinute(member: string): { minute: string; status: 'active' | 'error' } | undefined {
  const m = /^(\d{1,15}):(active|error)$/.exec(member);
  if (!m) return undefined;
  const at = new Date(Number(m[1]));
  return Number.isNaN(at.getTime()) ? undefined : { minute: at.toISOString(), status: m[2] as 'active' | 'error' };
}

function intOrNull(value: string | undefined): number | null {
  if (value === undefined || value === '') return null;
  const n = Math.round(Number(value));
  return Number.isFinite(n) && Math.abs(n) < 2 ** 31 ? n : null;
}

/**
 * Collection-time reports read per collector per flush statement, the newest of its
 * `keys.heartbeatCollectionTimes` ZSET: as many as the edge keeps (HEARTBEAT_COLLECTION_TIMES_MAX),
 * so normally all of them; it bounds the statement to batchSize × this many reports should a key hold
 * more (hand-made, another edge's cap).
 */
export const COLLECTION_TIMES_PER_FLUSH = 200;

/**
 * A member of the edge's heartbeatCollectionTimes ZSET, `<heartbeat epoch ms>:<collection ms>`, or
 * undefined (also for a time PostgreSQL's `int` cannot hold: one such value would fail the batch).
 */
export function parseCollectionTime(member: string): { at: number; ms: number } | undefined {
  const m = /^(\d{1,15}):(\d{1,10})$/.exec(member);
  if (!m) return undefined;
  const at = Number(m[1]);
  const ms = Number(m[2]);
  return ms < 2 ** 31 && !Number.isNaN(new Date(at).getTime()) ? { at, ms } : undefined;
}

/**
 * Atomically moves up to ARGV[1] ids from the dirty SET to the in-flight ZSET (score = claim time),
 * returning how many it popped and the ids it claimed. An id in flight already (another flush has it,
 * and a heartbeat since marked it dirty again) stays dirty: the flush that has it may still be
 * writing, and the next tick after it ends takes it (a dead flush's claim is recovered after 30 s).
 */
const CLAIM = `
local ids = redis.call('SPOP', KEYS[1], ARGV[1])
local claimed = {}
for _, id in ipairs(ids) do
  if redis.call('ZSCORE', KEYS[2], id) then
    redis.call('SADD', KEYS[1], id)
  else
    redis.call('ZADD', KEYS[2], ARGV[2], id)
    claimed[#claimed + 1] = id
  end
end
return {#ids, claimed}`;

/** Gives claimed ids back to the dirty SET (the flush statement failed). */
const RELEASE = `
for i = 1, #ARGV do
  redis.call('SADD', KEYS[1], ARGV[i])
  redis.call('ZREM', KEYS[2], ARGV[i])
end
return #ARGV`;

/** Gives back claims older than ARGV[1] (their writer died between claim and COMMIT). */
const RECOVER = `
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
for _, id in ipairs(ids) do
  redis.call('SADD', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
end
return #ids`;

export interface HeartbeatFlushOptions {
  pool: Pool;
  redis: Redis;
  keys: RedisKeys;
  logger: Logger;
  metrics: WriterMetrics;
  publish: PublishStatuses;
  /**
   * Where a failed flush goes: PostgreSQL away is one line per outage, not one per second. (A flush
   * with nothing to move does not touch PostgreSQL: the batches and scheduled jobs report it back.)
   */
  pgOutage: OutageLog;
  /**
   * Where a flush that Redis failed goes (its claim, reads and releases are Redis commands): a Redis
   * refusing writes (MISCONF, READONLY) was logged as "PostgreSQL refusing commands: MISCONF …",
   * sending the operator to the wrong server, and its end as PostgreSQL "accepting commands again".
   */
  redisOutage: OutageLog;
  /** Collectors per statement; default 1000. */
  batchSize?: number;
  /** Heartbeat minutes per collector per statement; default HEARTBEAT_MINUTES_PER_FLUSH. */
  minutesPerFlush?: number;
}

/**
 * Moves the edge's heartbeat state (common.md "Heartbeats") and command deliveries from Redis to
 * PostgreSQL, one statement per batch. Ids are claimed atomically (SPOP into an in-flight ZSET, one
 * Lua script), so several writers share the work without overlap; after COMMIT the claim is removed.
 * If the statement fails the ids go straight back into the dirty set; if the writer dies between
 * claim and COMMIT, any writer's next tick returns claims older than 30 s to the dirty set. Nothing
 * is lost: the hashes themselves are never deleted.
 */
export function createHeartbeatFlusher(o: HeartbeatFlushOptions) {
  const batchSize = o.batchSize ?? 1000;
  const minutesPerFlush = o.minutesPerFlush ?? HEARTBEAT_MINUTES_PER_FLUSH;
  // Derived from the shared key (same prefix, writer-private): ids being flushed, scored by claim time.
  const inflight = `${o.keys.heartbeatDirty}:inflight`;
  const log = o.logger.child({ module: 'heartbeats' });

  /** Collectors applied (each counted once, however many statements its minutes took). */
  const flushHeartbeats = async (): Promise<number> => {
    const flushed = new Set<string>();
    for (;;) {
      const [popped, ids] = (await o.redis.eval(CLAIM, 2, o.keys.heartbeatDirty, inflight, batchSize, Date.now())) as [
        number,
        string[],
      ];
      if (ids.length === 0) return flushed.size;
      const valid = ids.filter((id) => UUID.test(id));
      const pipe = o.redis.pipeline();
      for (const id of valid)
        pipe
          .hgetall(o.keys.heartbeat(id))
          .zrange(o.keys.heartbeatMinutes(id), 0, minutesPerFlush - 1)
          .zcard(o.keys.heartbeatMinutes(id))
          .zrevrange(o.keys.heartbeatCollectionTimes(id), 0, COLLECTION_TIMES_PER_FLUSH - 1);
      const replies = (await pipe.exec()) ?? [];
      // The minutes with a heartbeat since the last flush (the edge's heartbeatMinutes ZSETs), oldest
      // first and at most minutesPerFlush per collector, for the history: the hash holds only the
      // latest heartbeat. (An older edge writes none: nothing to read.)
      const minutes = { id: [] as string[], minute: [] as string[], status: [] as string[] };
      const readMinutes: [string, string[]][] = [];
      // Collectors with minutes left after this statement's: dirty again once it committed.
      const more: string[] = [];
      const cols = { id: [] as string[], seen: [] as string[], status: [] as (string | null)[], err: [] as (string | null)[] };
      // Collection-time reports, one row each: the statement applies those newer than the collector's
      // last_heartbeat, so none twice. After COMMIT every report up to the hash's time is removed
      // (keys.heartbeatCollectionTimes, score ≤ that ms): applied now or before (last_heartbeat is now
      // at least that time, so no flush would apply it); newer ones stay for the hash they came with.
      const reports = { id: [] as string[], at: [] as string[], ms: [] as number[] };
      const settle: [string, number][] = [];
      const count: (number | null)[] = [];
      const version: (string | null)[] = [];
      valid.forEach((id, i) => {
        const h = (replies[4 * i]?.[1] ?? {}) as Record<string, string>;
        const seen = parseSeen(h.last_seen);
        if (!seen) return;
        const read = replies[4 * i + 1];
        const members = (read && !read[0] && Array.isArray(read[1]) ? read[1] : []) as string[];
        if (members.length > 0) readMinutes.push([id, members]);
        if (Number(replies[4 * i + 2]?.[1] ?? 0) > members.length) more.push(id);
        for (const member of members) {
          const parsed = parseMinute(member);
          if (!parsed) continue;
          minutes.id.push(id);
          minutes.minute.push(parsed.minute);
          minutes.status.push(parsed.status);
        }
        cols.id.push(id);
        cols.seen.push(seen.toISOString());
        cols.status.push(h.status === 'error' ? 'error' : h.status === 'active' ? 'active' : null);
        cols.err.push(storableText(h.last_error, 4000));
        const seenMs = seen.getTime();
        const timesReply = replies[4 * i + 3];
        const times = (timesReply && !timesReply[0] && Array.isArray(timesReply[1]) ? timesReply[1] : []) as string[];
        if (times.length > 0) settle.push([o.keys.heartbeatCollectionTimes(id), seenMs]);
        for (const member of times) {
          const report = parseCollectionTime(member);
          // Newer than this hash: a heartbeat since (its hash read next time) brought it.
          if (!report || report.at > seenMs) continue;
          reports.id.push(id);
          reports.at.push(new Date(report.at).toISOString());
          reports.ms.push(report.ms);
        }
        // A hash from an edge that does not add its time to the reports (an older edge, or this
        // round's earlier `collection_times: zset`): the hash's own time, a report at its last_seen.
        const ctime = h.collection_times === 'reports' ? null : intOrNull(h.collection_time_ms);
        if (ctime !== null && ctime >= 0) {
          reports.id.push(id);
          reports.at.push(seen.toISOString());
          reports.ms.push(ctime);
        }
        count.push(intOrNull(h.metrics_count));
        version.push(storableText(h.version, 100));
      });
      if (cols.id.length > 0) {
        try {
          const { rows } = await o.pool.query<StatusRow>(FLUSH_HEARTBEATS, [
            cols.id,
            cols.seen,
            cols.status,
            cols.err,
            count,
            version,
            minutes.id,
            minutes.minute,
            minutes.status,
            reports.id,
            reports.at,
            reports.ms,
          ]);
          // One row per heartbeat applied: a hash flushed again (older than last_heartbeat) is not counted.
          o.metrics.heartbeatsFlushed.inc(rows.length);
          await o.publish(rows);
        } catch (err) {
          await o.redis.eval(RELEASE, 2, o.keys.heartbeatDirty, inflight, ...ids).catch(() => undefined);
          throw err;
        }
      }
      // After COMMIT, only the members read (a heartbeat since added its own). Lost (a crash before
      // this): flushed again with the next heartbeat, which the history's ON CONFLICT absorbs. A
      // collector with minutes left goes back to the dirty set before its claim is removed (a crash
      // in between: the claim is recovered), and its next flush takes the next minutes; its hash,
      // applied already, is then not applied again (last_seen not newer than last_heartbeat).
      // The collection-time reports up to each hash's time likewise (whether this statement applied
      // them or one before did), in the same round trip: ZREMRANGEBYSCORE, so the reports a heartbeat
      // added since (newer) stay. Lost (a crash before this): read again and not applied again.
      if (readMinutes.length > 0 || more.length > 0 || settle.length > 0) {
        const after = o.redis.pipeline();
        for (const [id, members] of readMinutes) after.zrem(o.keys.heartbeatMinutes(id), ...members);
        for (const [key, seenMs] of settle) after.zremrangebyscore(key, '-inf', seenMs);
        if (more.length > 0) after.sadd(o.keys.heartbeatDirty, ...more);
        const done = (await after.exec()) ?? [];
        const failed = done.find(([err]) => err)?.[0];
        if (failed) throw failed;
      }
      await o.redis.zrem(inflight, ...ids);
      for (const id of cols.id) flushed.add(id);
      // Dirty set drained (popped fewer than a batch): done; ids left dirty as in flight elsewhere
      // wait for the next tick.
      if (Number(popped) < batchSize) return flushed.size;
    }
  };

  /** Claims older than `staleMs` belong to a writer that died mid-flush: give them back. */
  const recoverStale = async (staleMs = 30_000): Promise<number> =>
    Number(await o.redis.eval(RECOVER, 2, o.keys.heartbeatDirty, inflight, Date.now() - staleMs));

  /**
   * Collectors with heartbeats the edges took that PostgreSQL may not have yet: claimed by a flush in
   * progress (this writer's or another's: the in-flight ZSET) or waiting in the dirty set, each with
   * its latest heartbeat's time (the hash's `last_seen`; null when unreadable: the flush skips such a
   * hash too). The inactivity sweep counts that time as a sign of life: a heartbeat on its way is not
   * silence, but one older than 2 × interval is (until 2026-12-07 any dirty entry kept its collector
   * out of the sweep, so while flushes kept failing a silent collector was never swept).
   */
  const unflushedHeartbeats = async (): Promise<{ ids: string[]; seen: (string | null)[] }> => {
    const [claimed, dirty] = (await o.redis.pipeline().zrange(inflight, 0, -1).smembers(o.keys.heartbeatDirty).exec()) ?? [];
    for (const reply of [claimed, dirty]) if (reply?.[0]) throw reply[0];
    const all = [...((claimed?.[1] ?? []) as string[]), ...((dirty?.[1] ?? []) as string[])];
    const ids = [...new Set(all.filter((id) => UUID.test(id)))];
    if (ids.length === 0) return { ids, seen: [] };
    const pipe = o.redis.pipeline();
    for (const id of ids) pipe.hget(o.keys.heartbeat(id), 'last_seen');
    const replies = (await pipe.exec()) ?? [];
    const failed = replies.find(([err]) => err)?.[0];
    if (failed) throw failed;
    return { ids, seen: ids.map((_, i) => parseSeen((replies[i]?.[1] as string | null) ?? undefined)?.toISOString() ?? null) };
  };

  const flushDeliveries = async (): Promise<number> => {
    const all = Object.entries(await o.redis.hgetall(o.keys.deliveredCommands)).slice(0, 5000);
    if (all.length === 0) return 0;
    // An unreadable time is recorded as "now": the delivery happened, only its stamp is lost.
    const entries = all.map(([id, at]) => [id, parseSeen(at) ?? new Date()] as const);
    await o.pool.query('SELECT pga_record_command_deliveries($1::text[], $2::timestamptz[])', [
      entries.map((e) => e[0]),
      entries.map((e) => e[1].toISOString()),
    ]);
    // Only after COMMIT: a crash before this HDEL re-records them, which the function ignores.
    await o.redis.hdel(o.keys.deliveredCommands, ...entries.map((e) => e[0]));
    o.metrics.commandDeliveries.inc(entries.length);
    return entries.length;
  };

  const pgFailures = createPgTaskLog(log, o.pgOutage);
  let timer: NodeJS.Timeout | null = null;
  let running: Promise<void> | null = null;
  const tick = () => {
    if (running) return;
    running = (async () => {
      try {
        await recoverStale();
        const applied = (await flushHeartbeats()) + (await flushDeliveries());
        // Only a flush that wrote to PostgreSQL says it works again: one with nothing to write (another
        // flush holding the heartbeats) came through a full disk as well.
        if (applied > 0) pgFailures.succeeded('heartbeat flush');
      } catch (err) {
        // PostgreSQL up but refusing (a full disk): one line for as long as it lasts, not one a tick.
        if (isRedisError(err)) o.redisOutage.error(err, 'heartbeat flush failed; retrying next tick');
        else pgFailures.failed('heartbeat flush', err, 'heartbeat flush failed; retrying next tick');
      } finally {
        running = null;
      }
    })();
  };

  return {
    flushHeartbeats,
    /**
     * flushHeartbeats once this writer's timer flush in progress (if any) is done: what it claimed is
     * committed (or given back) before the caller reads PostgreSQL. The inactivity sweep runs this.
     */
    async flushHeartbeatsAfterRunning(): Promise<number> {
      await running;
      return flushHeartbeats();
    },
    unflushedHeartbeats,
    flushDeliveries,
    recoverStale,
    start(everyMs: number) {
      timer = setInterval(tick, everyMs);
    },
    async stop() {
      if (timer) clearInterval(timer);
      timer = null;
      await running;
      // Final flush on SIGTERM so a clean shutdown leaves nothing behind in Redis.
      await flushHeartbeats().catch((err: unknown) => log.warn({ err }, 'final heartbeat flush failed'));
      await flushDeliveries().catch((err: unknown) => log.warn({ err }, 'final delivery flush failed'));
    },
  };
}

/** An error of an ioredis command: a Redis error reply, or one ioredis gave up on. */
export function isRedisError(err: unknown): boolean {
  return err instanceof ReplyError || (err instanceof Error && err.name === 'MaxRetriesPerRequestError');
}
