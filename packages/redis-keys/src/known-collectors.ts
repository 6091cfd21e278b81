import type { Redis } from 'ioredis';
import type { RedisKeys } from './keys';

/** Ids per SADD: one command for a bulk import of 10,000 collectors would hold Redis for a while. */
const CHUNK = 1000;

/**
 * Adds collector ids to `keys.knownCollectors`. Call it only after the PostgreSQL transaction that
 * created their rows has committed: the admin's repair denies a known id PostgreSQL lacks, so an id
 * added before its commit (or for a transaction that then failed) would be refused.
 */
export async function recordKnownCollectors(redis: Redis, keys: RedisKeys, ids: readonly string[]): Promise<void> {
  for (let at = 0; at < ids.length; at += CHUNK) await redis.sadd(keys.knownCollectors, ...ids.slice(at, at + CHUNK));
}
