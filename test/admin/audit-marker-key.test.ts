import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { AdminService } from '@pga/admin-api';
import { capturingLogger } from '../helpers';
import { callerOf, createHarness, restartedService } from './harness';

/**
 * The audit log's `unknown user #…` marker (review28 item 7) is keyed on a random key of the
 * installation, stored encrypted with ENCRYPTION_KEY: the same typed name gives the same marker
 * across JWT_SECRET's rotation steps (it was keyed on JWT_SECRET's whole text) and ENCRYPTION_KEY's.
 */
describe('unknown-username markers in the audit log', () => {
  // A dozen failed sign-ins at one name: not this test's concern, the rate limit.
  const limits = { LOGIN_MAX_FAILURES_PER_USER: '1000', LOGIN_MAX_FAILURES_PER_IP: '1000' };
  const marker = async (service: AdminService, typed: string) => {
    const caller = callerOf(service, null);
    await expect(caller.auth.login({ username: typed, password: 'x' })).rejects.toThrow('wrong username or password');
    const { rows } = await service.deps.pool.query<{ actor_name: string }>(
      "SELECT actor_name FROM collector_audit_log WHERE action = 'user.login_failed' ORDER BY id DESC LIMIT 1",
    );
    return rows[0]!.actor_name;
  };

  it('stay the same through every step of a JWT_SECRET rotation and of an ENCRYPTION_KEY rotation', async () => {
    const [oldJwt, newJwt] = [randomBytes(40).toString('base64url'), randomBytes(40).toString('base64url')];
    const [oldKey, newKey] = [randomBytes(32).toString('base64'), randomBytes(32).toString('base64')];
    await using h = await createHarness({ ...limits, JWT_SECRET: oldJwt, ENCRYPTION_KEY: oldKey });
    const typed = `Typed-Into-Username-${randomBytes(4).toString('hex')}`;
    const first = await marker(h.service, typed);
    expect(first).toMatch(/^unknown user #[0-9a-f]{12}$/);
    expect(await marker(h.service, typed.toUpperCase())).toBe(first);
    expect(await marker(h.service, `${typed}x`)).not.toBe(first);

    for (const JWT_SECRET of [`k1:${oldJwt},k2:${newJwt}`, `k2:${newJwt},k1:${oldJwt}`, `k2:${newJwt}`]) {
      await using s = restartedService(h, { ...limits, JWT_SECRET });
      expect(await marker(s, typed), `JWT_SECRET ids ${JWT_SECRET.replace(/:[^,]*/g, '')}`).toBe(first);
    }

    // stored encrypted (never the key itself), moved under the active key when ENCRYPTION_KEY rotates
    const stored = async () =>
      (await h.service.deps.pool.query<{ key_encrypted: string }>('SELECT key_encrypted FROM audit_marker_key')).rows[0]!
        .key_encrypted;
    expect(await stored()).toMatch(/^v1\.k1\./);
    {
      await using s = restartedService(h, { ...limits, ENCRYPTION_KEY: `k2:${newKey},k1:${oldKey}` });
      expect(await marker(s, typed)).toBe(first);
      expect(await stored()).toMatch(/^v1\.k2\./);
    }
    {
      await using s = restartedService(h, { ...limits, ENCRYPTION_KEY: `k2:${newKey}` });
      expect(await marker(s, typed)).toBe(first);
    }
    // an admin service that lacks the key it is under: a key of its own, said in a warning; the stored one kept
    const { logger, lines } = capturingLogger('admin-test');
    {
      await using s = restartedService(h, { ...limits, ENCRYPTION_KEY: `k1:${oldKey}` }, logger);
      expect(await marker(s, typed)).not.toBe(first);
      expect(lines.some((l) => l.level === 40 && /does not list/.test(l.msg))).toBe(true);
    }
    expect(await stored()).toMatch(/^v1\.k2\./);
    {
      await using s = restartedService(h, { ...limits, ENCRYPTION_KEY: `k2:${newKey}` });
      expect(await marker(s, typed)).toBe(first);
    }
  });
});
