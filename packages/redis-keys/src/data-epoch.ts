import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';

/**
 * Reads the epoch, setting it first when Redis has none, then reads this process's mark and writes
 * the next one (one round trip, atomic): answers { epoch, previous mark or '' }.
 */
const CHECK = `local v = redis.call('GET', KEYS[1])
if not v then
  v = ARGV[1]
  redis.call('SET', KEYS[1], v)
end
local mine = redis.call('GET', KEYS[2])
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
return {v, mine or ''}`;

/** Lifetime of a process's mark: a check that finds its mark gone this much after writing it cannot tell. */
const MARK_TTL_SECONDS = 3600;

/** What `check()` found: nothing wrong, Redis emptied, or Redis gone back to an older state. */
export type DataEpochFinding = false | 'lost' | 'rolled-back';

/**
 * Tells a process that Redis lost its data: a FLUSHALL by mistake, a failover to a replica that had
 * not synced, a restart without persistence. The key `key` (`keys.dataEpoch`) holds a random id,
 * set by the first process that finds none; each process remembers the id it saw, and when a later
 * `check()` reads another one (or none), everything Redis held when the id was set is gone: the
 * queued pushes not yet stored, the idempotency markers, the deny sets, config versions, pending
 * commands. `check()` resolves 'lost' then, once per loss and per process (it rejects when Redis
 * does not answer). Before this only the writers' schedule check noticed, as "schedules missing".
 *
 * An older copy of the same data (Redis restored from an older AOF or RDB file, a failover to a
 * replica that lagged, a host crash losing the last second of an `appendfsync everysec` AOF) holds
 * the same id: the id alone cannot tell. So each check also writes a mark of this process's own
 * (`key` + `:mark:` + a random id, a counter, MARK_TTL_SECONDS) and reads the one it wrote last time
 * first: another (or none) means Redis went back to a state from before that check, and `check()`
 * resolves 'rolled-back' (once per rollback and process). A mark of its own, not a shared counter:
 * the other processes' checks after the restore would move a counter past what this one saw. A
 * rollback to a state after a process's previous check (5–10 s) is not seen by it.
 */
export function dataEpoch(redis: Redis, key: string): { check(): Promise<DataEpochFinding> } {
  const markKey = `${key}:mark:${randomUUID()}`;
  let seen: string | undefined;
  let counter = 0;
  /** Marks this process may have left in Redis: the last one confirmed and those sent since (an answer lost). */
  let marks = new Set<string>();
  let confirmedAt = 0;
  return {
    async check() {
      const mark = String(++counter);
      marks.add(mark);
      const [now, previous] = (await redis.eval(CHECK, 2, key, markKey, randomUUID(), mark, MARK_TTL_SECONDS)) as [
        string,
        string,
      ];
      const lost = seen !== undefined && String(now) !== seen;
      const back =
        !lost && confirmedAt > 0 && Date.now() - confirmedAt < (MARK_TTL_SECONDS - 60) * 1000 && !marks.has(String(previous));
      seen = String(now);
      marks = new Set([mark]);
      confirmedAt = Date.now();
      return lost ? 'lost' : back ? 'rolled-back' : false;
    },
  };
}

/** What a process logs when `dataEpoch` finds Redis emptied. */
export const DATA_LOST_MESSAGE =
  'Redis lost its data (FLUSHALL, a failover to a replica that had not synced, or a restart without persistence): ' +
  'pushes accepted and not yet stored by a writer are gone with it, and so are idempotency markers and pending commands';

/** What a process logs when `dataEpoch` finds Redis back at an older state of its data. */
export const DATA_ROLLED_BACK_MESSAGE =
  'Redis went back to an older copy of its data (restored from an older AOF or RDB file, a failover to a replica ' +
  'that lagged, or a host crash losing its last writes): pushes accepted since that copy and not yet stored by a ' +
  'writer are gone, and so are the idempotency markers, deny-state changes, config versions and command deliveries since';

/** The line for a `check()` finding. */
export const dataEpochMessage = (finding: Exclude<DataEpochFinding, false>): string =>
  finding === 'lost' ? DATA_LOST_MESSAGE : DATA_ROLLED_BACK_MESSAGE;
