import { describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { checkRedisVersion, MIN_REDIS_VERSION, redisVersionFromInfo, versionBelow } from './redis-version';

const fakeRedis = (version: string) =>
  ({ info: async () => `# Server\r\nredis_version:${version}\r\nredis_mode:standalone\r\n` }) as unknown as Redis;

describe('minimum Redis version', () => {
  it('compares versions part by part, numerically', () => {
    expect(versionBelow('6.0.16', '6.2.0')).toBe(true);
    expect(versionBelow('5.0.14', '6.2.0')).toBe(true);
    expect(versionBelow('6.2.0', '6.2.0')).toBe(false);
    expect(versionBelow('6.2', '6.2.0')).toBe(false);
    expect(versionBelow('6.10.1', '6.2.0')).toBe(false);
    expect(versionBelow('7.0.15', '6.2.0')).toBe(false);
    expect(versionBelow('255.255.255', MIN_REDIS_VERSION)).toBe(false); // a Redis built from unstable
  });

  it('reads redis_version from INFO', () => {
    expect(redisVersionFromInfo('# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:0\r\n')).toBe('7.0.15');
    expect(redisVersionFromInfo('# Server\r\nredis_mode:standalone\r\n')).toBeUndefined();
  });

  it('refuses an older Redis with one line, and lets a newer one or an unknown version through', async () => {
    await expect(checkRedisVersion(fakeRedis('6.0.16'))).rejects.toThrow(
      /^Redis 6\.0\.16 is too old: pgAnalytics Central needs Redis 6\.2\.0 or newer/,
    );
    await expect(checkRedisVersion(fakeRedis('7.2.4'))).resolves.toBe('7.2.4');
    await expect(checkRedisVersion({ info: async () => '' } as unknown as Redis)).resolves.toBeUndefined();
  });
});
