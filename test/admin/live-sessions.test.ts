import { describe, expect, it, beforeAll, afterAll, vi } from 'vitest';
import { Redis } from 'ioredis';
import { sha256Hex } from '@pga/crypto';
import type { AdminService } from '@pga/admin-api';
import { ADMIN_PASSWORD, VIEWER_PASSWORD, createHarness, httpLogin, restartedService, trpcHttp, type Harness } from './harness';

const A = '11111111-1111-4111-8111-111111111111';
/** The viewer's password once the second test reset it. */
const NEW_PASSWORD = 'a brand new password 456';

/** An open live.collectorStatus stream over HTTP, read in the background. */
async function openFeed(url: string, cookie: string) {
  const res = await fetch(`${url}/trpc/live.collectorStatus`, { headers: { cookie, accept: 'text/event-stream' } });
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  const feed = { text: '', done: false };
  void (async () => {
    for (;;) {
      const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true }));
      if (done) break;
      feed.text += decoder.decode(value);
    }
    feed.done = true;
  })();
  await vi.waitFor(() => expect(feed.text).toContain('connected'), { timeout: 10_000 });
  return { feed, cancel: () => reader.cancel().catch(() => undefined) };
}

const dataLines = (text: string) => text.split('\n').filter((l) => l.startsWith('data: {"collector_id"'));
/** The stored hash of a cookie's session id (`pga_session=<keyId>.<sessionId>.<mac>`). */
const sessionHashOf = (cookie: string) => sha256Hex(cookie.split('=')[1]!.split('.')[1]!);

/**
 * Live feeds end with their session: logout, disable (and re-role, password reset: the same
 * deleteUserSessions), in any admin process; a session gone without a message; expiry.
 */
describe('live.collectorStatus ends with its session', () => {
  let h: Harness;
  /** A second admin process on the same database and Redis; its periodic check is off (1 h), so only the message ends feeds. */
  let other: AdminService & AsyncDisposable;
  let otherUrl: string;
  let pub: Redis;
  beforeAll(async () => {
    h = await createHarness();
    await h.listen();
    other = restartedService(h, { LIVE_FEED_SESSION_CHECK_MS: '3600000' });
    otherUrl = `http://127.0.0.1:${await other.listen()}`;
    await Promise.all([h.service.deps.liveFeed.ready(), other.deps.liveFeed.ready()]);
    pub = new Redis(process.env.PGA_TEST_REDIS_URL!);
  });
  afterAll(async () => {
    pub?.disconnect();
    await other?.[Symbol.asyncDispose]();
    await h?.[Symbol.asyncDispose]();
  });
  const publish = (event: Record<string, unknown>) => pub.publish(h.service.deps.keys.statusChannel, JSON.stringify(event));

  it('a logout in one process ends that session’s feeds in another, not the user’s other sessions', async () => {
    const mine = await httpLogin(h.url, 'victor', VIEWER_PASSWORD);
    const otherSession = await httpLogin(h.url, 'victor', VIEWER_PASSWORD);
    const a = await openFeed(otherUrl, mine);
    const b = await openFeed(otherUrl, otherSession);
    await vi.waitFor(() => expect(other.deps.liveFeed.hub.stats().subscribers).toBe(2));
    const out = await trpcHttp(h.url, 'mutation', 'auth.logout', undefined, { cookie: mine });
    expect(out.status).toBe(200);
    await vi.waitFor(() => expect(a.feed.done).toBe(true), { timeout: 5_000 });
    expect(a.feed.text).toMatch(/event: serialized-error/);
    expect(a.feed.text).toContain('"code":"UNAUTHORIZED"');
    expect(a.feed.text).toContain('your session ended');
    await publish({ collector_id: A, status: 'active', metrics_collected: 1 });
    await vi.waitFor(() => expect(dataLines(b.feed.text)).toHaveLength(1));
    expect(dataLines(a.feed.text)).toHaveLength(0);
    expect(other.deps.liveFeed.hub.stats().subscribers).toBe(1);
    void b.cancel();
    await vi.waitFor(() => expect(other.deps.liveFeed.hub.stats().subscribers).toBe(0));
  });

  it('disabling a user, or resetting their password, in one process ends all their feeds in every process', async () => {
    const admin = await httpLogin(h.url, 'alice', ADMIN_PASSWORD);
    for (const change of [{ password: NEW_PASSWORD }, { disabled: true }]) {
      const viewer = await httpLogin(h.url, 'victor', change.disabled ? NEW_PASSWORD : VIEWER_PASSWORD);
      const feeds = [await openFeed(otherUrl, viewer), await openFeed(h.url, viewer)];
      const adminFeed = await openFeed(otherUrl, admin);
      const res = await trpcHttp(h.url, 'mutation', 'users.update', { id: h.viewer.id, ...change }, { cookie: admin });
      expect(res.status).toBe(200);
      for (const { feed } of feeds) {
        await vi.waitFor(() => expect(feed.done).toBe(true), { timeout: 5_000 });
        expect(feed.text).toContain('"code":"UNAUTHORIZED"');
      }
      await publish({ collector_id: A, status: 'error', metrics_collected: 2 });
      await vi.waitFor(() => expect(dataLines(adminFeed.feed.text)).toHaveLength(1));
      for (const { feed } of feeds) expect(dataLines(feed.text)).toHaveLength(0);
      void adminFeed.cancel();
    }
    await h.service.deps.pool.query('UPDATE users SET disabled = false WHERE id = $1', [h.viewer.id]);
    await vi.waitFor(() => expect(other.deps.liveFeed.hub.stats().subscribers).toBe(0));
  });

  it('a feed ends at its session’s expiry (its own timer: this process checks sessions only hourly)', async () => {
    const expiring = await httpLogin(h.url, 'victor', NEW_PASSWORD);
    // Expires in 2 s (SESSION_TTL_HOURS is at least an hour).
    await h.service.deps.pool.query("UPDATE admin_sessions SET expires_at = now() + interval '2 seconds' WHERE id_hash = $1", [
      sessionHashOf(expiring),
    ]);
    const e = await openFeed(otherUrl, expiring);
    await vi.waitFor(() => expect(e.feed.done).toBe(true), { timeout: 10_000 });
    expect(e.feed.text).toContain('"code":"UNAUTHORIZED"');
  });

  it('a session deleted without a message (Redis away, by hand) ends its feeds at the next periodic check', async () => {
    const h2 = await createHarness({ LIVE_FEED_SESSION_CHECK_MS: '300' });
    try {
      const url = await h2.listen();
      const gone = await httpLogin(url, 'victor', VIEWER_PASSWORD);
      const kept = await httpLogin(url, 'victor', VIEWER_PASSWORD);
      const [g, k] = [await openFeed(url, gone), await openFeed(url, kept)];
      await h2.service.deps.pool.query('DELETE FROM admin_sessions WHERE id_hash = $1', [sessionHashOf(gone)]);
      await vi.waitFor(() => expect(g.feed.done).toBe(true), { timeout: 5_000 });
      expect(g.feed.text).toContain('"code":"UNAUTHORIZED"');
      expect(k.feed.done).toBe(false);
      expect(h2.service.deps.liveFeed.hub.stats().subscribers).toBe(1);
      void k.cancel();
    } finally {
      await h2[Symbol.asyncDispose]();
    }
  });
});
