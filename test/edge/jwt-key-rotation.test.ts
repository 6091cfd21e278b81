import { SignJWT, decodeProtectedHeader } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordIssuedToken } from '@pga/db';
import { createCollectorTokens } from '@pga/tokens';
import {
  AUDIENCE,
  call,
  EdgeWorld,
  ISSUER,
  JWT_SECRET,
  legacyCollectorToken,
  spawnEdge,
  type EdgeProcess,
  type TestCollector,
} from './harness';

/**
 * Rotating JWT_SECRET (README "Rotating JWT_SECRET") against real edge processes: the world's
 * tokens are the old key's (JWT_SECRET written without an id: key id k1); the operator lists a new
 * key first, then drops the old one.
 */
const NEW_SECRET = 'edge-rotation-new-secret-'.padEnd(48, 'n');
const ROTATED = `k2:${NEW_SECRET},k1:${JWT_SECRET}`;

describe('JWT_SECRET rotation at the edge', () => {
  let world: EdgeWorld;
  let c: TestCollector;
  /** A token as every token before key ids was: no `kid` in its header, signed with the one secret. */
  let legacy: string;
  const rotatedTokens = createCollectorTokens({ secret: ROTATED, issuer: ISSUER, audience: AUDIENCE });

  const heartbeat = (edge: EdgeProcess, token: string, id = c.id) =>
    call(`${edge.url}/api/v1/collectors/${id}/heartbeat`, { token, body: '{"status":"active"}' });
  const push = (edge: EdgeProcess, token: string) =>
    call(`${edge.url}/api/v1/metrics/push`, { token, body: `{"database":"app","t":${Date.now()}}` });
  const metric = async (edge: EdgeProcess, series: string) => {
    const text = await (await fetch(`${edge.url}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    return line === undefined ? undefined : Number(line.slice(series.length + 1));
  };

  beforeAll(async () => {
    world = await EdgeWorld.create();
    c = await world.collector();
    legacy = await legacyCollectorToken(world.pool, JWT_SECRET, c.id);
  });
  afterAll(async () => world?.[Symbol.asyncDispose]());

  it('the edge before rotation signs with k1 and asks no token to refresh', async () => {
    expect(decodeProtectedHeader(c.token)).toEqual({ alg: 'HS256', typ: 'JWT', kid: 'k1' });
    await using edge = await spawnEdge(world.env());
    for (const token of [c.token, legacy]) {
      const res = await heartbeat(edge, token);
      expect([res.status, res.json]).toEqual([200, { status: 'ok', config_version: 3, commands: [] }]);
    }
  });

  it('with a new key listed first: old-key tokens (with and without kid) still pass and are asked to refresh; new-key tokens are not', async () => {
    await using edge = await spawnEdge(world.env({ JWT_SECRET: ROTATED }));
    for (const token of [c.token, legacy]) {
      expect((await push(edge, token)).status).toBe(200);
      const res = await heartbeat(edge, token);
      // every field as before, and the one added
      expect([res.status, res.json]).toEqual([200, { status: 'ok', config_version: 3, commands: [], token_refresh: true }]);
    }
    // the collector refreshes with its old token: the new one is signed by k2, recorded so
    const refreshed = await call(`${edge.url}/api/v1/collectors/refresh-token`, { token: legacy, body: '' });
    expect(refreshed.status, refreshed.text).toBe(200);
    const token = refreshed.json.token as string;
    expect(decodeProtectedHeader(token).kid).toBe('k2');
    const { rows } = await world.pool.query(
      'SELECT key_id FROM collector_tokens WHERE collector_id = $1 ORDER BY issued_at, key_id NULLS FIRST',
      [c.id],
    );
    expect(rows.map((r) => r.key_id)).toEqual([null, 'k1', 'k2']);
    const res = await heartbeat(edge, token);
    expect([res.status, res.json]).toEqual([200, { status: 'ok', config_version: 3, commands: [] }]);
    expect((await push(edge, token)).status).toBe(200);

    // verifications (token-cache misses) and requests by key id: what tells the operator when k1 is unused
    expect(await metric(edge, 'edge_token_verifications_total{key_id="k1"}')).toBe(2);
    expect(await metric(edge, 'edge_token_verifications_total{key_id="k2"}')).toBe(1);
    expect(await metric(edge, 'edge_token_key_requests_total{key_id="k1"}')).toBe(5); // 2 pushes, 2 heartbeats, the refresh
    expect(await metric(edge, 'edge_token_key_requests_total{key_id="k2"}')).toBe(2);
  });

  it('once the old key is dropped: its tokens get 401 saying why, new-key tokens pass, an unknown kid gets 401', async () => {
    const fresh = await rotatedTokens.issue(c.id);
    await recordIssuedToken(world.pool, c.id, fresh);
    await using edge = await spawnEdge(world.env({ JWT_SECRET: `k2:${NEW_SECRET}` }));
    const refused = async (token: string, message: string) => {
      for (const res of [await push(edge, token), await heartbeat(edge, token)])
        expect([res.status, res.json]).toEqual([401, { error: { code: 'UNAUTHORIZED', message } }]);
    };
    await refused(c.token, 'token was signed with key "k1", which is not (or no longer) configured');
    await refused(legacy, 'token has no key id (kid) and no key "k1" is configured to verify it');
    const unknown = await new SignJWT({ type: 'collector', collector_id: c.id })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT', kid: 'k9' })
      .setSubject(c.id)
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setIssuedAt()
      .setExpirationTime('1h')
      .setJti(crypto.randomUUID())
      .sign(new TextEncoder().encode(NEW_SECRET));
    await refused(unknown, 'token was signed with key "k9", which is not (or no longer) configured');
    // a kid naming the configured key does not let another secret through
    const forged = await new SignJWT({ type: 'collector', collector_id: c.id })
      .setProtectedHeader({ alg: 'HS256', kid: 'k2' })
      .setSubject(c.id)
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setIssuedAt()
      .setExpirationTime('1h')
      .setJti(crypto.randomUUID())
      .sign(new TextEncoder().encode(JWT_SECRET));
    await refused(forged, 'token signature is not valid');

    expect((await push(edge, fresh.token)).status).toBe(200);
    const res = await heartbeat(edge, fresh.token);
    expect([res.status, res.json]).toEqual([200, { status: 'ok', config_version: 3, commands: [] }]);
    expect(await metric(edge, 'edge_token_key_requests_total{key_id="k2"}')).toBe(2);
    expect(await metric(edge, 'edge_token_key_requests_total{key_id="k1"}')).toBeUndefined(); // k1 is no label any more
  });
});
