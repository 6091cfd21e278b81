export { redisKeys, type RedisKeys } from './keys';
export { publishCollectorChange, readDenyState, type DenyState, type PublishedChange } from './collector-changes';
export { dataEpoch, dataEpochMessage, DATA_LOST_MESSAGE, DATA_ROLLED_BACK_MESSAGE, type DataEpochFinding } from './data-epoch';
export { recordKnownCollectors } from './known-collectors';
export { checkRedisVersion, MIN_REDIS_VERSION, RedisTooOldError, redisVersionFromInfo, versionBelow } from './redis-version';
