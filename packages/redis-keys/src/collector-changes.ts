import type { Redis } from 'ioredis';
import type { CollectorChange } from '@pga/contracts';
import type { RedisKeys } from './keys';

export interface DenyState {
  jtis: Set<string>;
  collectors: Set<string>;
  /** The denied collectors that are deleted (a subset of `collectors`; the rest are disabled). */
  deleted: Set<string>;
  version: number;
}

/**
 * A change as the admin publishes it. `denyCollector`/`allowCollector`: disable/delete vs
 * enable/restore. `deniedAtUs`: with `denyCollector`, when PostgreSQL made the disable or
 * delete (under the row lock) (epoch microseconds, PostgreSQL's clock), recorded in `keys.deniedAt`.
 */
export type PublishedChange = CollectorChange & { denyCollector?: boolean; allowCollector?: boolean; deniedAtUs?: string };

/**
 * Admin side: records a change in the deny sets and tells every edge process, in one MULTI.
 * Call it after the PostgreSQL transaction that made the change has committed.
 * `jtis`: to refuse from now on.
 */
export async function publishCollectorChange(redis: Redis, keys: RedisKeys, change: PublishedChange): Promise<void> {
  const multi = redis.multi();
  if (change.jtis?.length) multi.sadd(keys.deniedJtis, ...change.jtis);
  if (change.denyCollector) multi.sadd(keys.deniedCollectors, change.collector_id);
  if (change.denyCollector && change.deniedAtUs) multi.hset(keys.deniedAt, change.collector_id, change.deniedAtUs);
  if (change.allowCollector) multi.srem(keys.deniedCollectors, change.collector_id);
  if (change.allowCollector) multi.hdel(keys.deniedAt, change.collector_id);
  if (change.kind === 'deleted') multi.sadd(keys.deletedCollectors, change.collector_id);
  if (change.kind === 'restored') multi.srem(keys.deletedCollectors, change.collector_id);
  multi.incr(keys.denyVersion);
  const results = await multi.exec();
  const version = Number(results?.at(-1)?.[1] ?? 0);
  const message: CollectorChange = {
    collector_id: change.collector_id,
    kind: change.kind,
    version,
    ...(change.jtis ? { jtis: change.jtis } : {}),
  };
  await redis.publish(keys.changesChannel, JSON.stringify(message));
}

/** Edge side: the whole deny state, read at start and after every Redis reconnect. */
export async function readDenyState(redis: Redis, keys: RedisKeys): Promise<DenyState> {
  const [jtis, collectors, deleted, version] = await Promise.all([
    redis.smembers(keys.deniedJtis),
    redis.smembers(keys.deniedCollectors),
    redis.smembers(keys.deletedCollectors),
    redis.get(keys.denyVersion),
  ]);
  const denied = new Set(collectors);
  return {
    jtis: new Set(jtis),
    collectors: denied,
    deleted: new Set(deleted.filter((id) => denied.has(id))),
    version: Number(version ?? 0),
  };
}
