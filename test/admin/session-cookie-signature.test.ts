import { randomBytes } from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import { sha256Hex } from '@pga/crypto';
import { ADMIN_PASSWORD, createHarness, httpLogin, restartedService, trpcHttp } from './harness';

const key = () => randomBytes(32).toString('base64');
const me = async (url: string, cookie: string) =>
  (await trpcHttp(url, 'query', 'auth.me', undefined, { cookie })).body.result.data.user?.username ?? null;

/**
 * Session cookies are `<keyId>.<sessionId>.<mac>` (auth/session-signer.ts): the MAC under a key
 * derived from ENCRYPTION_KEY is checked before any lookup, and rotates with ENCRYPTION_KEY.
 */
describe('signed session cookies', () => {
  it('reads a tampered, unsigned or pre-upgrade cookie as signed out, without a query', async () => {
    const h = await createHarness();
    try {
      await h.listen();
      const cookie = await httpLogin(h.url, 'alice', ADMIN_PASSWORD);
      expect(await me(h.url, cookie)).toBe('alice');
      const [keyId, id, mac] = cookie.split('=')[1]!.split('.') as [string, string, string];
      // A session of before signed cookies: its row, and its bare id as the cookie.
      const legacy = randomBytes(32).toString('base64url');
      await h.service.deps.pool.query(
        `INSERT INTO admin_sessions (id_hash, user_id, expires_at) VALUES ($1, $2, now() + interval '1 hour')`,
        [sha256Hex(legacy), h.admin.id],
      );
      const lookups = vi.spyOn(h.service.deps.pool, 'query');
      const flipped = `${mac[0] === 'A' ? 'B' : 'A'}${mac.slice(1)}`;
      for (const bad of [
        `pga_session=${id}`, // the id alone
        `pga_session=${legacy}`, // a pre-upgrade cookie of a live row
        `pga_session=${keyId}.${id}.${flipped}`, // tampered MAC
        `pga_session=${keyId}.${id}.${mac.slice(0, 42)}`, // cut short
        `pga_session=k2.${id}.${mac}`, // another key id
        `pga_session=${keyId}.${randomBytes(32).toString('base64url')}.${mac}`, // the MAC on another id
      ])
        expect(await me(h.url, bad), bad).toBeNull();
      expect(lookups.mock.calls.filter(([sql]) => typeof sql === 'string' && /admin_sessions/.test(sql))).toEqual([]);
      lookups.mockRestore();
      expect(await me(h.url, cookie)).toBe('alice');
    } finally {
      await h[Symbol.asyncDispose]();
    }
  });

  it('rotates with ENCRYPTION_KEY: an older listed key still verifies, one taken off the list signs out', async () => {
    const [k1, k2] = [key(), key()];
    const h = await createHarness({ ENCRYPTION_KEY: `k1:${k1}` });
    const rotated = restartedService(h, { ENCRYPTION_KEY: `k2:${k2},k1:${k1}` });
    const onlyNew = restartedService(h, { ENCRYPTION_KEY: `k2:${k2}` });
    // The same key under another id is another key: a cookie names the id it was signed under.
    const renamed = restartedService(h, { ENCRYPTION_KEY: `k3:${k1}` });
    try {
      await h.listen();
      const [rotatedUrl, onlyNewUrl, renamedUrl] = [
        `http://127.0.0.1:${await rotated.listen()}`,
        `http://127.0.0.1:${await onlyNew.listen()}`,
        `http://127.0.0.1:${await renamed.listen()}`,
      ];
      const old = await httpLogin(h.url, 'alice', ADMIN_PASSWORD);
      expect(old).toMatch(/^pga_session=k1\./);
      expect(await me(rotatedUrl, old)).toBe('alice');
      expect(await me(onlyNewUrl, old)).toBeNull();
      expect(await me(renamedUrl, old)).toBeNull();
      const fresh = await httpLogin(rotatedUrl, 'alice', ADMIN_PASSWORD);
      expect(fresh).toMatch(/^pga_session=k2\./);
      expect(await me(onlyNewUrl, fresh)).toBe('alice');
      expect(await me(rotatedUrl, fresh)).toBe('alice');
      expect(await me(h.url, fresh)).toBeNull(); // a process still on the old list
    } finally {
      for (const s of [rotated, onlyNew, renamed]) await s[Symbol.asyncDispose]();
      await h[Symbol.asyncDispose]();
    }
  });
});
