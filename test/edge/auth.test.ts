import { generateKeyPairSync } from 'node:crypto';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { revokeCollectorTokens } from '@pga/db';
import { publishCollectorChange } from '@pga/redis-keys';
import { createCollectorTokens } from '@pga/tokens';
import { AUDIENCE, call, EdgeWorld, ISSUER, JWT_SECRET, rawRequest, type TestCollector } from './harness';

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

describe('collector JWT checks at the edge', () => {
  let world: EdgeWorld;
  let url: string;
  let c: TestCollector;
  let n = 0;
  const push = (token: string | undefined, headers: Record<string, string> = {}) =>
    call(`${url}/api/v1/metrics/push`, {
      ...(token !== undefined ? { token } : {}),
      body: `{"n":${++n},"t":${Date.now()}}`,
      headers,
    });
  const expect401 = async (token: string | undefined, headers: Record<string, string> = {}) => {
    const res = await push(token, headers);
    expect([res.status, res.json?.error?.code]).toEqual([401, 'UNAUTHORIZED']);
    // RFC 6750 §3: the scheme and realm, and invalid_token whenever a bearer token was sent (not
    // with no credentials or another scheme, §3.1).
    const sent = token ? true : /^bearer\s/i.test(headers.authorization ?? '');
    expect(res.headers.get('www-authenticate')).toBe(
      sent ? 'Bearer realm="pganalytics", error="invalid_token"' : 'Bearer realm="pganalytics"',
    );
    return res;
  };
  const claims = (id: string, extra: Record<string, unknown> = {}) => {
    const now = Math.floor(Date.now() / 1000);
    return {
      sub: id,
      type: 'collector',
      iat: now,
      exp: now + 3600,
      jti: crypto.randomUUID(),
      iss: ISSUER,
      aud: AUDIENCE,
      ...extra,
    };
  };

  beforeAll(async () => {
    world = await EdgeWorld.create();
    url = (await world.startEdge()).url;
    c = await world.collector();
  });
  afterAll(async () => world?.[Symbol.asyncDispose]());

  it('accepts a valid token (sanity check for the attacks below)', async () => {
    expect((await push(c.token)).status).toBe(200);
  });

  it('401 for a missing, malformed or non-bearer token', async () => {
    await expect401(undefined);
    await expect401('not-a-jwt');
    await expect401('', { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` });
    await expect401(`${c.token}x`);
  });

  it('401 for alg "none"', async () => {
    await expect401(`${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims(c.id))}.`);
  });

  it('401 for RS256 (HS/RS confusion) and for HS256 keyed with the public key', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const rs = await new SignJWT(claims(c.id)).setProtectedHeader({ alg: 'RS256' }).sign(privateKey);
    await expect401(rs);
    const pem = publicKey.export({ type: 'spki', format: 'pem' });
    const hs = await new SignJWT(claims(c.id)).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(String(pem)));
    await expect401(hs);
  });

  it('401 for a wrong key, wrong iss, wrong aud, a non-collector token', async () => {
    const key = new TextEncoder().encode(JWT_SECRET);
    await expect401(
      await new SignJWT(claims(c.id))
        .setProtectedHeader({ alg: 'HS256' })
        .sign(new TextEncoder().encode('another-secret-'.padEnd(48, 'y'))),
    );
    await expect401(await new SignJWT(claims(c.id, { iss: 'someone-else' })).setProtectedHeader({ alg: 'HS256' }).sign(key));
    await expect401(await new SignJWT(claims(c.id, { aud: 'other-audience' })).setProtectedHeader({ alg: 'HS256' }).sign(key));
    await expect401(await new SignJWT(claims(c.id, { type: 'user' })).setProtectedHeader({ alg: 'HS256' }).sign(key));
    const otherInstall = createCollectorTokens({ secret: JWT_SECRET, issuer: ISSUER, audience: 'elsewhere' });
    await expect401((await otherInstall.issue(c.id)).token);
  });

  it('401 for an expired and a not-yet-valid token', async () => {
    const expired = await world.tokens.issue(c.id, { now: new Date(Date.now() - 7200_000), ttlSeconds: 3600 });
    await expect401(expired.token);
    const future = await world.tokens.issue(c.id, { now: new Date(Date.now() + 3600_000) });
    await expect401(future.token);
  });

  it('honours exp for a token already in the cache', async () => {
    const short = await world.mint(c.id, 2);
    expect((await push(short.token)).status).toBe(200);
    await new Promise((r) => setTimeout(r, 2100));
    await expect401(short.token);
  });

  it("403 for another collector's token (header, path)", async () => {
    const other = await world.collector();
    const res = await push(other.token, { 'x-collector-id': c.id });
    expect([res.status, res.json.error.code]).toEqual([403, 'COLLECTOR_MISMATCH']);
    const hb = await call(`${url}/api/v1/collectors/${c.id}/heartbeat`, { token: other.token, body: '{}' });
    expect([hb.status, hb.json.error.code]).toEqual([403, 'COLLECTOR_MISMATCH']);
    const cfg = await call(`${url}/api/v1/collectors/${c.id}/config`, { token: other.token, method: 'GET' });
    expect([cfg.status, cfg.json.error.code]).toEqual([403, 'COLLECTOR_MISMATCH']);
  });

  it('401 after revocation, rotation and deletion (cached tokens included)', async () => {
    const r = await world.collector();
    expect((await push(r.token)).status).toBe(200); // now cached
    const jtis = await revokeCollectorTokens(world.pool, r.id, 'revoked');
    expect(jtis).toContain(r.issued.jti);
    await publishCollectorChange(world.redis, world.keys, { collector_id: r.id, kind: 'revoked', jtis });
    await expect.poll(async () => (await push(r.token)).status, { timeout: 1000 }).toBe(401);

    const rot = await world.collector();
    expect((await push(rot.token)).status).toBe(200);
    const fresh = await world.mint(rot.id);
    const old = await revokeCollectorTokens(world.pool, rot.id, 'rotated', { exceptJti: fresh.jti });
    await publishCollectorChange(world.redis, world.keys, { collector_id: rot.id, kind: 'rotated', jtis: old });
    await expect.poll(async () => (await push(rot.token)).status, { timeout: 1000 }).toBe(401);
    expect((await push(fresh.token)).status).toBe(200);

    const del = await world.collector();
    expect((await push(del.token)).status).toBe(200);
    await world.pool.query('UPDATE collectors SET deleted_at = now() WHERE id = $1', [del.id]);
    await publishCollectorChange(world.redis, world.keys, { collector_id: del.id, kind: 'deleted', denyCollector: true });
    await expect.poll(async () => (await push(del.token)).status, { timeout: 1000 }).toBe(401);
  });

  it('a token revoked while its push was still uploading is refused once the body is in (401, nothing queued)', async () => {
    const r = await world.collector();
    expect((await push(r.token)).status).toBe(200); // cached
    const port = Number(new URL(url).port);
    const marker = `slow-${Date.now()}`;
    const body = `{"marker":"${marker}"}`;
    const res = await rawRequest(port, [
      `POST /api/v1/metrics/push HTTP/1.1\r\nHost: edge\r\nAuthorization: Bearer ${r.token}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 5)}`,
      async () => {
        // Authenticated on the headers; revoked while the rest of the body is on its way.
        await new Promise((resolve) => setTimeout(resolve, 200));
        const jtis = await revokeCollectorTokens(world.pool, r.id, 'revoked');
        await publishCollectorChange(world.redis, world.keys, { collector_id: r.id, kind: 'revoked', jtis });
        await new Promise((resolve) => setTimeout(resolve, 200));
      },
      body.slice(5),
    ]);
    expect([res.status, JSON.parse(res.body).error?.code]).toEqual([401, 'UNAUTHORIZED']);
    expect((await world.queuedPushes()).some((p) => p.body.includes(marker))).toBe(false);
  });

  it('a new edge process loads the deny state at start', async () => {
    const r = await world.collector();
    const jtis = await revokeCollectorTokens(world.pool, r.id, 'revoked');
    await publishCollectorChange(world.redis, world.keys, { collector_id: r.id, kind: 'revoked', jtis });
    // Deleted and disabled collectors answer as on a running edge: 401 and 403 COLLECTOR_DISABLED.
    const del = await world.collector();
    await world.pool.query('UPDATE collectors SET deleted_at = now() WHERE id = $1', [del.id]);
    await publishCollectorChange(world.redis, world.keys, { collector_id: del.id, kind: 'deleted', denyCollector: true });
    const off = await world.collector({ enabled: false });
    await publishCollectorChange(world.redis, world.keys, { collector_id: off.id, kind: 'disabled', denyCollector: true });
    const second = await world.startEdge();
    const res = await call(`${second.url}/api/v1/metrics/push`, { token: r.token, body: '{"a":1}' });
    expect(res.status).toBe(401);
    const deleted = await call(`${second.url}/api/v1/metrics/push`, { token: del.token, body: '{"a":1}' });
    expect(deleted.status).toBe(401);
    const disabled = await call(`${second.url}/api/v1/metrics/push`, { token: off.token, body: '{"a":1}' });
    expect([disabled.status, disabled.json.error.code]).toEqual([403, 'COLLECTOR_DISABLED']);
  });
});
