import { randomBytes } from 'node:crypto';
import { decodeProtectedHeader } from 'jose';
import { describe, expect, it } from 'vitest';
import { recordIssuedToken } from '@pga/db';
import { callerOf, createHarness, restartedService } from './harness';
import { form } from './fixtures';

describe('JWT_SECRET rotation in the admin service', () => {
  it('signs with the first key, and collectors.tokenKeys counts live tokens and collectors per key id', async () => {
    const oldSecret = randomBytes(40).toString('base64url');
    await using h = await createHarness({ JWT_SECRET: oldSecret });
    const caller = h.caller(h.admin);
    const a = await caller.collectors.register(form());
    const b = await caller.collectors.register(form());
    const c = await caller.collectors.register(form());
    expect(decodeProtectedHeader(a.token).kid).toBe('k1');
    // c's token was issued before key ids: migration 0045 left its key_id NULL
    await h.service.deps.pool.query('UPDATE collector_tokens SET key_id = NULL WHERE collector_id = $1', [c.collector.id]);

    await using rotated = restartedService(h, { JWT_SECRET: `k2:${randomBytes(40).toString('base64url')},k1:${oldSecret}` });
    const rotatedCaller = callerOf(rotated, h.admin);
    const keys = async () => {
      const out = await rotatedCaller.collectors.tokenKeys();
      expect(out.active_key_id).toBe('k2');
      return out.keys.map(({ last_expires_at, ...rest }) => ({ ...rest, expires: last_expires_at !== null }));
    };
    expect(await keys()).toEqual([
      { key_id: 'k1', verified_with: 'k1', configured: true, active: false, live_tokens: 2, collectors: 2, expires: true },
      { key_id: null, verified_with: 'k1', configured: true, active: false, live_tokens: 1, collectors: 1, expires: true },
      { key_id: 'k2', verified_with: 'k2', configured: true, active: true, live_tokens: 0, collectors: 0, expires: false },
    ]);

    // an admin rotates a's token (the old one is revoked); b refreshes at the edge (the old one stays valid)
    const rotatedA = await rotatedCaller.collectors.rotateToken({ id: a.collector.id });
    expect(decodeProtectedHeader(rotatedA.token).kid).toBe('k2');
    await recordIssuedToken(rotated.deps.pool, b.collector.id, await rotated.deps.tokens.issue(b.collector.id));
    expect(await keys()).toEqual([
      // b's old token is live until it expires, but no collector's newest token is k1's any more
      { key_id: 'k1', verified_with: 'k1', configured: true, active: false, live_tokens: 1, collectors: 0, expires: true },
      { key_id: 'k2', verified_with: 'k2', configured: true, active: true, live_tokens: 2, collectors: 2, expires: true },
      { key_id: null, verified_with: 'k1', configured: true, active: false, live_tokens: 1, collectors: 1, expires: true },
    ]);
    // the service still on the old key alone sees tokens it cannot verify
    const before = await caller.collectors.tokenKeys();
    expect(before.keys.find((key) => key.key_id === 'k2')).toMatchObject({ configured: false, active: false, live_tokens: 2 });
    // admins only
    await expect(h.caller(h.viewer).collectors.tokenKeys()).rejects.toMatchObject({ code: 'FORBIDDEN' });
  });
});
