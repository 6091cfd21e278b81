import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';

/** Reads the epoch, setting it first when Redis has none (one round trip, atomic). */
const GET_OR_SET = `local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]`;

/**
 * Tells a process that Redis lost its data: a FLUSHALL by mistake, a failover to a replica that had
 * not synced, a restart without persistence. The key `key` (`keys.dataEpoch`) holds a random id,
 * set by the first process that finds none; each process remembers the id it saw, and when a later
 * `check()` reads another one (or none), everything Redis held when the id was set is gone: the
 * queued pushes not yet stored, the idempotency markers, the deny sets, config versions, pending
 * commands. `check()` resolves true then, once per loss and per process (it rejects when Redis does
 * not answer). Before this only the writers' schedule check noticed, as "schedules missing".
 */
export function dataEpoch(redis: Redis, key: string): { check(): Promise<boolean> } {
  let seen: string | undefined;
  return {
    async check() {
      const now = String(await redis.eval(GET_OR_SET, 1, key, randomUUID()));
      const lost = seen !== undefined && now !== seen;
      seen = now;
      return lost;
    },
  };
}

/** What a process logs when `dataEpoch` finds Redis emptied. */
export const DATA_LOST_MESSAGE =
  'Redis lost its data (FLUSHALL, a failover to a replica that had not synced, or a restart without persistence): ' +
  'pushes accepted and not yet stored by a writer are gone with it, and so are idempotency markers and pending commands';
