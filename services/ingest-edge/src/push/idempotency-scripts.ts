import type { Redis } from 'ioredis';

/**
 * The idempotency markers of one batch in one Redis command each (a pipeline of N `SET`s costs
 * ~50 µs of client CPU per command; one script call costs about as much as one command).
 * KEYS: marker keys of the batch (keys of one collector-independent batch: no Redis Cluster).
 */
const CLAIM = `
local out = {}
for i, key in ipairs(KEYS) do
  local prev = redis.call('GET', key)
  if prev then
    out[i] = prev
  else
    redis.call('SET', key, ARGV[i + 1], 'EX', ARGV[1])
    out[i] = ''
  end
end
return out`;

const SETTLE = `
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[i + 1], 'EX', ARGV[1])
end
return #KEYS`;

interface IdempotencyCommands {
  pgaIdemClaim(numKeys: number, ...args: (string | number)[]): Promise<string[]>;
  pgaIdemSettle(numKeys: number, ...args: (string | number)[]): Promise<number>;
}

export function idempotencyScripts(redis: Redis) {
  redis.defineCommand('pgaIdemClaim', { lua: CLAIM });
  redis.defineCommand('pgaIdemSettle', { lua: SETTLE });
  const r = redis as unknown as IdempotencyCommands;
  return {
    /** Sets each absent marker to its value with `ttl`; returns the previous value per key, '' where it was absent. */
    claim: (keys: string[], values: string[], ttlSeconds: number) => r.pgaIdemClaim(keys.length, ...keys, ttlSeconds, ...values),
    /** Overwrites each marker with its value and `ttl`. */
    settle: (keys: string[], values: string[], ttlSeconds: number) =>
      r.pgaIdemSettle(keys.length, ...keys, ttlSeconds, ...values),
  };
}

export type IdempotencyScripts = ReturnType<typeof idempotencyScripts>;
