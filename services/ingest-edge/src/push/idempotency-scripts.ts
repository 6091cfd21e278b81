import type { Redis } from 'ioredis';

/**
 * The idempotency markers of one batch in one Redis command each (a pipeline of N `SET`s costs
 * ~50 µs of client CPU per command; one script call costs about as much as one command).
 *
 * CLAIM — KEYS: the batch's marker keys, then its veto key (BullMQ's deduplication key of the
 * batch's job). ARGV: marker TTL (s), veto value, veto TTL (ms), then one marker value per key.
 * Sets each absent marker; if any was already set, also sets the veto key, so the job add that
 * follows on the same connection is refused by BullMQ's deduplication.
 * Sent with EVAL, not EVALSHA: after a Redis restart an EVALSHA fails with NOSCRIPT and ioredis
 * resends it as EVAL once the answer is in — after the add it has to run before.
 */
const CLAIM = `
local n = #KEYS - 1
local out = {}
local vetoed = false
for i = 1, n do
  local prev = redis.call('GET', KEYS[i])
  if prev then
    out[i] = prev
    vetoed = true
  else
    redis.call('SET', KEYS[i], ARGV[i + 3], 'EX', ARGV[1])
    out[i] = ''
  end
end
if vetoed then redis.call('SET', KEYS[n + 1], ARGV[2], 'PX', ARGV[3]) end
return out`;

/** Lifetime of a batch's deduplication key (veto or stored job): it only has to outlive the claim → add gap. */
export const VETO_TTL_MS = 10_000;

const SETTLE = `
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[i + 1], 'EX', ARGV[1])
end
return #KEYS`;

interface IdempotencyCommands {
  pgaIdemSettle(numKeys: number, ...args: (string | number)[]): Promise<number>;
}

export function idempotencyScripts(redis: Redis, vetoValue: string) {
  redis.defineCommand('pgaIdemSettle', { lua: SETTLE });
  const r = redis as unknown as IdempotencyCommands;
  return {
    /**
     * Sets each absent marker to its value with `ttl`; returns the previous value per key, '' where
     * it was absent. Any previous value sets `vetoKey` to the veto value.
     */
    claim: (keys: string[], values: string[], ttlSeconds: number, vetoKey: string) =>
      redis.eval(CLAIM, keys.length + 1, ...keys, vetoKey, ttlSeconds, vetoValue, VETO_TTL_MS, ...values) as Promise<string[]>,
    /** Overwrites each marker with its value and `ttl`. */
    settle: (keys: string[], values: string[], ttlSeconds: number) =>
      r.pgaIdemSettle(keys.length, ...keys, ttlSeconds, ...values),
  };
}

export type IdempotencyScripts = ReturnType<typeof idempotencyScripts>;
