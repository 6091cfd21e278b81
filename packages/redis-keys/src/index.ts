export { redisKeys, type RedisKeys } from './keys';
export { publishCollectorChange, readDenyState, type DenyState } from './collector-changes';
