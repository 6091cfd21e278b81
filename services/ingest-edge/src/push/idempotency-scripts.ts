import type { Redis } from 'ioredis';

/**
 * The idempotency markers of one packed batch in one Redis command (a pipeline of N `SET`s costs
 * ~50 µs of client CPU per command; one script call costs about as much as one command).
 *
 * A marker is `b:<batch id>:<records>` with the full replay TTL; whether its push is stored is the
 * state of its batch, one key per batch (`p` pending with a short TTL, `d` done for the replay TTL),
 * so confirming a stored batch is one `SET`, not one per push. The push id is not in the marker: it
 * is derived from (collector, idempotency key), so a replay derives the same one.
 *
 * CLAIM — KEYS: the batch's marker keys, then its veto key (BullMQ's deduplication key of the
 * batch's job), then its batch-state key. ARGV: marker TTL (s), veto value, veto TTL (ms), pending
 * TTL of the batch state (s), batch id, prefix of batch-state keys, prefix of BullMQ's
 * deduplication keys, the key of the batch's large-push body ('' for none) and its piece count,
 * the push quota (new markers per collector per window; 0 = none), its window (s), the length of
 * the markers' prefix (`<prefix>:idem:`, followed by the 36 characters of the collector id) and the
 * prefix of the quota counters (`keys.pushQuota` without the id), then each push's record count. The
 * quota counter of a push is found from its marker key, so the quota adds no argument per push.
 * Only a marker set where there was none counts: not one set again by a resent claim, nor one taken
 * over from a batch whose edge died (counted when first set); FREE gives a freed marker's count back.
 * Per marker it answers '' when it set the marker (the push is this batch's), else what the replay
 * gets: `d::<records>` (stored), `p:` (in flight), `q:<seconds>` (its collector used its push quota:
 * the seconds until its window ends; no marker set, the batch vetoed like for a replay); every marker `x` when the batch's large-push
 * body is not whole in Redis (nothing claimed, the add vetoed). A pending batch whose job is already in Redis —
 * its deduplication key names a job: BullMQ sets it in the same script that adds the job, `<batch
 * id>` for the batch's job, `<batch id>+` for the job of its fresh pushes after a veto — is stored:
 * its edge's settle may still be on the way (the 200 can reach the client, and its replay another
 * edge process, first). A marker whose batch state has expired belongs to a batch whose edge gave
 * up or died before Redis confirmed it: it is taken over. Markers of the
 * older format (`d:<push id>:<records>`, `p:…`) are answered as they are. Any replay in the batch
 * also sets the veto key, so the job add that follows on the same connection is refused by BullMQ's
 * deduplication. The batch-state keys of other batches are built from the prefix inside the script
 * (standalone Redis; the markers of one batch span hash slots anyway). A marker of this very batch
 * counts as set by this claim: ioredis resends a command whose answer was lost with its connection,
 * and the claim must not then take its own batch for a replay (vetoing its own job and answering
 * its pushes' retries 503 until the pending state expired).
 * Sent with EVAL, not EVALSHA: after a Redis restart an EVALSHA fails with NOSCRIPT and ioredis
 * resends it as EVAL once the answer is in — after the add it has to run before.
 */
const CLAIM = `
local n = #KEYS - 2
local out = {}
local vetoed = false
if ARGV[8] ~= '' and redis.call('HLEN', ARGV[8]) ~= tonumber(ARGV[9]) then
  -- the large push's body is not all here (a failover or a crash lost pieces Redis had acknowledged,
  -- and ioredis resent the claim and the add to the new server): its job must not be stored
  redis.call('SET', KEYS[n + 1], ARGV[2], 'PX', ARGV[3])
  for i = 1, n do out[i] = 'x' end
  return out
end
local limit = tonumber(ARGV[10])
for i = 1, n do
  local prev = redis.call('GET', KEYS[i])
  -- only a marker set where there was none counts against the quota: one resent (below) or taken
  -- over from a batch whose edge died was counted when it was first set
  local fresh = not prev
  local answer = ''
  local mine = 'b:' .. ARGV[5] .. ':' .. ARGV[i + 13] -- markerOf
  if prev == mine then
    -- this very batch's marker: the same claim run again (ioredis resends a command whose answer
    -- a dropped connection lost); it is still this batch's push, not a replay
    prev = nil
  end
  if prev then
    answer = prev
    -- b:<batch id>:<records>; the batch id holds ':' itself, the records are the last field
    local sep = string.sub(prev, 1, 2) == 'b:' and string.find(prev, ':%d+$', 3)
    if sep then
      local batch = string.sub(prev, 3, sep - 1)
      local state = redis.call('GET', ARGV[6] .. batch)
      if state == 'p' then
        local job = redis.call('GET', ARGV[7] .. batch)
        if (job and job ~= ARGV[2]) or redis.call('EXISTS', ARGV[7] .. batch .. '+') == 1 then state = 'd' end
      end
      if state == 'd' then answer = 'd::' .. string.sub(prev, sep + 1)
      elseif state then answer = 'p:'
      else answer = '' end
    end
  end
  if fresh and limit > 0 then
    -- the push quota counts the markers set (what a collector keeps in Redis), not replays
    local quota = ARGV[13] .. string.sub(KEYS[i], ARGV[12] + 1, ARGV[12] + 36)
    local used = redis.call('INCR', quota)
    if used == 1 then redis.call('EXPIRE', quota, ARGV[11]) end
    if used > limit then
      redis.call('DECR', quota)
      local ttl = redis.call('TTL', quota)
      if ttl < 0 then
        redis.call('EXPIRE', quota, ARGV[11])
        ttl = ARGV[11]
      end
      answer = 'q:' .. ttl
    end
  end
  if answer == '' then
    redis.call('SET', KEYS[i], mine, 'EX', ARGV[1])
  else
    vetoed = true
  end
  out[i] = answer
end
redis.call('SET', KEYS[n + 2], 'p', 'EX', ARGV[4])
if vetoed then redis.call('SET', KEYS[n + 1], ARGV[2], 'PX', ARGV[3]) end
return out`;

/**
 * FREE — KEYS: the markers; ARGV: their values, then (with a push quota) the length of the markers'
 * prefix and the prefix of the quota counters, as CLAIM. Each deleted marker gives its count back
 * to its collector's counter (never below 0: a counter whose window ended is not recreated).
 */
const FREE = `local n = #KEYS
local quota = ARGV[n + 2]
for i = 1, n do
  if redis.call('GET', KEYS[i]) == ARGV[i] then
    redis.call('DEL', KEYS[i])
    if quota and quota ~= '' then
      local counter = quota .. string.sub(KEYS[i], ARGV[n + 1] + 1, ARGV[n + 1] + 36)
      if (tonumber(redis.call('GET', counter)) or 0) > 0 then redis.call('DECR', counter) end
    end
  end
end
return 0`;

/** What CLAIM sets a marker to: its batch and the push's record count. */
export const markerOf = (batchId: string, records: number): string => `b:${batchId}:${records}`;

/**
 * Deletes the markers `keys` a refused batch set, each only while it still holds `values` (its
 * `markerOf`): a DEL that runs late (resent after a reconnect, queued behind a paused Redis) must not
 * delete a marker that a later batch took over once this batch's pending state expired. With the
 * claim's push `quota`, each marker deleted is taken off its collector's count: a push refused
 * (503) and retried counts once, however many times it was freed.
 */
export const freeMarkers = (redis: Redis, keys: string[], values: string[], quota?: PushQuotaClaim): Promise<unknown> =>
  quota && quota.limit > 0
    ? redis.eval(FREE, keys.length, ...keys, ...values, quota.markerPrefixLength, quota.counterPrefix)
    : redis.eval(FREE, keys.length, ...keys, ...values);

/** Lifetime of a batch's deduplication key (veto or stored job): it only has to outlive the claim → add gap. */
export const VETO_TTL_MS = 10_000;

/** BullMQ's deduplication id of the job holding a vetoed batch's fresh pushes. */
export const freshJobDeduplicationId = (batchId: string): string => `${batchId}+`;

/**
 * The push quota a claim enforces: at most `limit` markers set per collector per `windowSeconds`
 * (`limit` 0: none), counted in `<counterPrefix><collector id>`; the collector id is read from the
 * marker key, after its first `markerPrefixLength` characters (redis-keys `idempotency`).
 */
export interface PushQuotaClaim {
  limit: number;
  windowSeconds: number;
  markerPrefixLength: number;
  counterPrefix: string;
}

const NO_QUOTA: PushQuotaClaim = { limit: 0, windowSeconds: 0, markerPrefixLength: 0, counterPrefix: '' };

/**
 * `deduplicationPrefix`: the queue's deduplication keys' prefix with its separator
 * (`${queue.keys.de}:`): a batch's veto key is this prefix and its batch id.
 */
export function idempotencyScripts(redis: Redis, vetoValue: string, batchStatePrefix: string, deduplicationPrefix: string) {
  return {
    /**
     * Sets each absent (or abandoned) marker to this batch with `markerTtlSeconds` and the batch
     * state to pending for `pendingTtlSeconds`; answers per key as CLAIM above. Any replay sets
     * `vetoKey` to the veto value.
     */
    claim: (
      keys: string[],
      records: number[],
      batch: { id: string; stateKey: string; vetoKey: string; blob?: { key: string; pieces: number } },
      markerTtlSeconds: number,
      pendingTtlSeconds: number,
      quota: PushQuotaClaim = NO_QUOTA,
    ) =>
      redis.eval(
        CLAIM,
        keys.length + 2,
        ...keys,
        batch.vetoKey,
        batch.stateKey,
        markerTtlSeconds,
        vetoValue,
        VETO_TTL_MS,
        pendingTtlSeconds,
        batch.id,
        batchStatePrefix,
        deduplicationPrefix,
        batch.blob?.key ?? '',
        batch.blob?.pieces ?? 0,
        quota.limit,
        quota.windowSeconds,
        quota.markerPrefixLength,
        quota.counterPrefix,
        ...records,
      ) as Promise<string[]>,
    /** Marks the batch stored: every marker it set now answers duplicate, for `ttlSeconds`. */
    settle: (stateKey: string, ttlSeconds: number) => redis.set(stateKey, 'd', 'EX', ttlSeconds),
  };
}

export type IdempotencyScripts = ReturnType<typeof idempotencyScripts>;
