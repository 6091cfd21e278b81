import type { Redis } from 'ioredis';
import { AppError, CollectorCommandActionSchema, HeartbeatBodySchema, type HeartbeatAnswer } from '@pga/contracts';
import type { Pool } from '@pga/db';
import type { Logger } from '@pga/logger';
import type { RedisKeys } from '@pga/redis-keys';
import type { Authenticate } from '../auth/authenticate';
import type { RateLimiter } from '../auth/rate-limiter';
import type { RequestContext } from '../http/route';
import { withTimeout } from '../with-timeout';
import { readJson } from './read-json';

export const HEARTBEAT_MAX_BODY = 256 * 1024;

/**
 * Entries of `keys.heartbeatMinutes` the edge keeps per collector, the newest: a day of one heartbeat
 * a minute. The buffer only bridges a writer away (down, restarting, rolled back to a release that
 * does not read it): a writer away longer than a day loses the older minutes from the history, as
 * every minute but the latest was lost before this buffer. It bounds Redis (≈ 130 B an entry, so
 * ≈ 185 KB per collector at the cap) and the writer's catch-up.
 */
export const HEARTBEAT_MINUTES_MAX = 1440;

/**
 * Expiry of a collector's unflushed heartbeat minutes, renewed by each heartbeat: a clean-up for a
 * collector gone silent or deleted, not what bounds the buffer (HEARTBEAT_MINUTES_MAX does). Longer
 * than the buffer's day, so a collector that stopped heartbeating keeps its last minutes for a writer
 * away up to a week; it is no guarantee for uptime windows (WRITER_UPTIME_WINDOW_HOURS, up to 90 days).
 */
export const HEARTBEAT_MINUTES_TTL_MS = 8 * 24 * 3600 * 1000;

/**
 * Collection-time reports (`keys.heartbeatCollectionTimes`) the edge keeps per collector, the newest:
 * 200 reports weigh all but 0.8²⁰⁰ of the writer's weighted mean, so a writer away longer counts the
 * mean of the newest 200 and loses only older maxima. It bounds Redis and the writer's read (the
 * writer reads at most as many: COLLECTION_TIMES_PER_FLUSH).
 */
export const HEARTBEAT_COLLECTION_TIMES_MAX = 200;

/**
 * A member of `keys.heartbeatCollectionTimes`: `<epoch ms of the heartbeat>:<collection ms>`, scored
 * by the heartbeat's ms (its `last_seen`), so each report is one member the writer applies once.
 */
export function collectionTimeReport(at: Date, ms: number): string {
  return `${at.getTime()}:${ms}`;
}

/** The epoch ms of `at`'s UTC minute: the score of its `keys.heartbeatMinutes` entry. */
export function heartbeatMinuteMs(at: Date): number {
  return Math.floor(at.getTime() / 60_000) * 60_000;
}

/** A member of `keys.heartbeatMinutes`: `<epoch ms of the UTC minute>:<active|error>`. */
export function heartbeatMinute(at: Date, status: 'active' | 'error'): string {
  return `${heartbeatMinuteMs(at)}:${status}`;
}

interface HeartbeatDeps {
  authenticate: Authenticate;
  limiter: RateLimiter;
  redis: Redis;
  keys: RedisKeys;
  pool: Pool;
  logger: Logger;
  /** Longest wait for Redis before answering 503 (ENQUEUE_TIMEOUT_MS). */
  timeoutMs: number;
}

/**
 * `POST /api/v1/collectors/{id}/heartbeat`: one MULTI to Redis (latest heartbeat hash, dirty set,
 * config version, drain of pending commands, the heartbeat's minute for the history, its collection
 * time added to the running figures not flushed yet); the writer
 * flushes heartbeats to PostgreSQL in batches. PostgreSQL is read only when Redis has no config version for the collector yet, and the
 * value is then cached in Redis (HSETNX, so a concurrent admin bump wins).
 */
export function createHeartbeatHandler(deps: HeartbeatDeps) {
  return async ({ reply, headers, params, body }: RequestContext): Promise<void> => {
    const auth = await deps.authenticate(
      { authorization: headers.authorization!, collectorId: headers['x-collector-id']! },
      params[0],
    );
    const wait = deps.limiter.take(auth.collectorId);
    if (wait > 0) throw new AppError('RATE_LIMITED', 'too many requests from this collector', { retryAfterSeconds: wait });
    const hb = await readJson(await body!.body, headers['content-encoding']!, HEARTBEAT_MAX_BODY, HeartbeatBodySchema);
    deps.authenticate.recheck(auth);
    if (deps.redis.status !== 'ready') throw new AppError('UNAVAILABLE', 'queue unreachable', { retryAfterSeconds: 1 });

    const id = auth.collectorId;
    const nowDate = new Date();
    const now = nowDate.toISOString();
    const status = hb.status ?? 'active';
    // `collection_times: reports`: this edge adds each collection time to keys.heartbeatCollectionTimes
    // (below), so the writer takes them from there and not from collection_time_ms, which stays for an
    // older writer. (`zset` marked this round's earlier format, running figures under another key.)
    const fields: Record<string, string> = { last_seen: now, status, collection_times: 'reports' };
    if (hb.metrics_count !== undefined) fields.metrics_count = String(hb.metrics_count);
    if (hb.last_error !== undefined) fields.last_error = hb.last_error ?? '';
    if (hb.collection_time_ms !== undefined) fields.collection_time_ms = String(hb.collection_time_ms);
    if (hb.version != null) fields.version = hb.version;
    const { keys, redis } = deps;
    // The hash is replaced, not merged: a field this heartbeat leaves out (collection_time_ms, …)
    // must not be applied again by the writer with an older heartbeat's value.
    const multi = redis
      .multi()
      .del(keys.heartbeat(id))
      .hset(keys.heartbeat(id), fields)
      .sadd(keys.heartbeatDirty, id)
      .hget(keys.configVersions, id)
      .lrange(keys.commands(id), 0, -1)
      .del(keys.commands(id))
      // The minute for the heartbeat history (uptime): the hash above keeps only the latest
      // heartbeat, so a writer that flushes after several minutes (down, restarting) saw one of them.
      // Scored by the minute and cut to the newest HEARTBEAT_MINUTES_MAX entries: a writer away (or
      // one that does not read it) cannot make it grow without bound, each heartbeat renewing the TTL.
      .zadd(keys.heartbeatMinutes(id), heartbeatMinuteMs(nowDate), heartbeatMinute(nowDate, status))
      .zremrangebyrank(keys.heartbeatMinutes(id), 0, -(HEARTBEAT_MINUTES_MAX + 1))
      .pexpire(keys.heartbeatMinutes(id), HEARTBEAT_MINUTES_TTL_MS);
    // The collection time, one report scored by this heartbeat's time, in the same MULTI: the hash
    // above is replaced by the next heartbeat, and with it a time the writer had not flushed. The
    // writer applies the reports newer than the last heartbeat it applied and not newer than the hash
    // it flushes, so none twice (two writers, a redelivery after a crash). Plain ZADD and
    // ZREMRANGEBYRANK, as for the minutes: nothing newer than Redis 5 (ZADD GT needs 6.2).
    if (hb.collection_time_ms !== undefined) {
      const times = keys.heartbeatCollectionTimes(id);
      multi
        .zadd(times, nowDate.getTime(), collectionTimeReport(nowDate, Math.round(hb.collection_time_ms)))
        .zremrangebyrank(times, 0, -(HEARTBEAT_COLLECTION_TIMES_MAX + 1))
        .pexpire(times, HEARTBEAT_MINUTES_TTL_MS);
    }
    const exec = multi.exec();
    // Commands taken from Redis but never answered must not be lost: put them back in front of any
    // queued since, in their order, for the collector's next heartbeat.
    const putBack = async (drained: string[]) => {
      if (drained.length === 0) return;
      const pushed = await redis
        .lpush(keys.commands(id), ...drained.toReversed())
        .then(() => true)
        .catch((lost: unknown) => {
          deps.logger.error({ err: lost, collectorId: id, commands: drained }, 'pending commands could not be put back');
          return false;
        });
      // The drain deleted the list and with it its expiry: give it back, unless commands queued
      // since gave it a (later) one already. A separate call: NX needs Redis 7, and in the MULTI an
      // older Redis would refuse the put-back itself. Without it the entries still expire one by one.
      const expiries = drained.map((text) => parseCommand(text)?.expiresAt);
      if (pushed && expiries.every((e) => e !== undefined))
        await redis.pexpireat(keys.commands(id), Math.max(...expiries), 'NX').catch(() => undefined);
    };
    // What a MULTI took out of the list: LRANGE's answer, if its DEL ran too (else nothing was taken).
    const drainedBy = (results: [Error | null, unknown][] | null): string[] =>
      results && !results[4]?.[0] && !results[5]?.[0] ? ((results[4]?.[1] as string[] | undefined) ?? []) : [];
    let results: [Error | null, unknown][] | null;
    try {
      results = await withTimeout(exec, deps.timeoutMs);
    } catch {
      // A slow Redis may still run the MULTI later, with nobody to answer: its commands go back then.
      exec.then(
        (late) => putBack(drainedBy(late)),
        () => undefined,
      );
      results = null;
    }
    if (!results || results.some(([err]) => err)) {
      // One command of the MULTI failed (a WRONGTYPE, say) while the drain ran: no answer, so back.
      await putBack(drainedBy(results));
      throw new AppError('UNAVAILABLE', 'queue unavailable', { retryAfterSeconds: 1 });
    }

    const drained = drainedBy(results);
    let configVersion = results[3]![1] === null ? undefined : Number(results[3]![1]);
    if (configVersion === undefined) {
      try {
        configVersion = await configVersionFromDb(deps, id);
      } catch (err) {
        // No answer (503/500).
        await putBack(drained);
        throw err;
      }
    }
    // The collector hung up meanwhile (a slow PostgreSQL read): the answer cannot reach it.
    if (reply.aborted) return putBack(drained);
    const commands: HeartbeatAnswer['commands'] = [];
    let expired = 0;
    const nowMs = Date.now();
    for (const text of drained) {
      const command = parseCommand(text);
      if (!command) deps.logger.warn({ collectorId: id }, 'dropped a malformed pending command');
      // Past its expiry (the admin's COMMAND_TTL_SECONDS; the admin UI shows it expired): a stale
      // `stop` must not reach a collector that comes back a day later. Not put back either.
      else if (command.expiresAt !== undefined && command.expiresAt <= nowMs) expired++;
      else commands.push({ id: command.id, action: command.action });
    }
    if (expired > 0) deps.logger.info({ collectorId: id, expired }, 'expired pending commands not delivered');
    // Not awaited: the answer does not wait on a bookkeeping write.
    if (commands.length > 0)
      redis
        .hset(keys.deliveredCommands, Object.fromEntries(commands.map((c) => [c.id, now])))
        .catch((err: unknown) => deps.logger.warn({ err, collectorId: id }, 'command delivery not recorded'));
    // Signed by a key JWT_SECRET still lists but no longer signs with (rotation): ask for a refresh,
    // which the answer's other fields leave as they were (an additive field, CONTRACT.md).
    const answer: HeartbeatAnswer = { status: 'ok', config_version: configVersion, commands };
    if (!auth.key.active) answer.token_refresh = true;
    reply.json(200, answer);
  };
}

async function configVersionFromDb({ pool, redis, keys }: HeartbeatDeps, id: string): Promise<number> {
  const { rows } = await pool.query<{ config_version: number }>('SELECT config_version FROM collectors WHERE id = $1', [id]);
  const version = rows[0]?.config_version ?? 1;
  redis.hsetnx(keys.configVersions, id, String(version)).catch(() => undefined);
  return version;
}

/** A mailbox entry `{"id","action","expires_at"?}` (expires_at: epoch ms; absent from older admins' entries). */
function parseCommand(text: string): (HeartbeatAnswer['commands'][number] & { expiresAt?: number }) | undefined {
  try {
    const value = JSON.parse(text) as { id?: unknown; action?: unknown; expires_at?: unknown };
    const action = CollectorCommandActionSchema.safeParse(value.action);
    if (typeof value.id !== 'string' || !action.success) return undefined;
    const expiresAt = typeof value.expires_at === 'number' && Number.isFinite(value.expires_at) ? value.expires_at : undefined;
    return { id: value.id, action: action.data, ...(expiresAt !== undefined ? { expiresAt } : {}) };
  } catch {
    return undefined;
  }
}
