export { redisKeys, type RedisKeys } from './keys';
export { publishCollectorChange, readDenyState, type DenyState } from './collector-changes';
export { dataEpoch, DATA_LOST_MESSAGE } from './data-epoch';
