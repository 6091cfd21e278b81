import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { AppError } from '@pga/contracts';
import { createLogger } from '@pga/logger';
import { redisKeys } from '@pga/redis-keys';
import { createCollectorTokens } from '@pga/tokens';
import { createAuthenticator } from './authenticate';
import { DenyList } from './deny-list';
import { TokenCache } from './token-cache';

const settings = { secret: 'x'.repeat(40), issuer: 'pga-test', audience: 'pga-edge-test' };

function setup() {
  const tokens = createCollectorTokens(settings);
  let verifications = 0;
  const counted = {
    ...tokens,
    verifyWithKeyId: (token: string) => {
      verifications++;
      return tokens.verifyWithKeyId(token);
    },
  };
  // The deny state is only read here (its Redis connections are used by start(), never called).
  const deny = new DenyList(
    null as never,
    null as never,
    redisKeys('auth-test'),
    createLogger({ name: 'test', level: 'silent' }),
  );
  deny.trusted = true;
  const cache = new TokenCache(100);
  const authenticate = createAuthenticator({ tokens: counted, cache, deny });
  return { tokens, authenticate, cache, verifications: () => verifications };
}

describe('authenticate', () => {
  it('verifies a token not yet cached once for all the requests that arrive with it together', async () => {
    const { tokens, authenticate, cache, verifications } = setup();
    const collectorId = randomUUID();
    const { token } = await tokens.issue(collectorId);
    const headers = { authorization: `Bearer ${token}`, collectorId };
    const entries = await Promise.all(Array.from({ length: 20 }, () => authenticate(headers)));
    expect(verifications()).toBe(1);
    expect(new Set(entries).size).toBe(1);
    expect(entries[0]!.collectorId).toBe(collectorId);
    expect(cache.size).toBe(1);
    await authenticate(headers); // cached
    expect(verifications()).toBe(1);
  });

  it('refuses every waiting request of a bad token, and verifies it again on the next one', async () => {
    const { authenticate, verifications } = setup();
    const other = createCollectorTokens({ ...settings, secret: 'y'.repeat(40) }); // wrong key
    const collectorId = randomUUID();
    const { token } = await other.issue(collectorId);
    const headers = { authorization: `Bearer ${token}`, collectorId };
    const results = await Promise.allSettled(Array.from({ length: 5 }, () => authenticate(headers)));
    expect(
      results.every((r) => r.status === 'rejected' && r.reason instanceof AppError && r.reason.code === 'UNAUTHORIZED'),
    ).toBe(true);
    expect(verifications()).toBe(1);
    await expect(authenticate(headers)).rejects.toThrow(AppError);
    expect(verifications()).toBe(2); // a refusal is not cached
  });
});
