import { createServer, type AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { freePort } from '@pga/local-stack';
import { call, EdgeWorld, rawRequest } from './harness';

/** Issue 4: push and heartbeat never need PostgreSQL (heartbeat only for an unknown config version). */
describe('hot path without PostgreSQL', () => {
  it('accepts pushes and heartbeats while PostgreSQL is unreachable', async () => {
    await using world = await EdgeWorld.create();
    const c = await world.collector();
    // Nothing listens on this port: any PostgreSQL query would fail.
    const edge = await world.startEdge({ DATABASE_URL: `postgresql://nobody@127.0.0.1:${await freePort()}/none` });
    const push = await call(`${edge.url}/api/v1/metrics/push`, {
      token: c.token,
      body: '{"no_pg":true,"queryid":-9223372036854775808}',
    });
    expect(push.status).toBe(200);
    await world.redis.hset(world.keys.configVersions, c.id, '4');
    const hb = await call(`${edge.url}/api/v1/collectors/${c.id}/heartbeat`, { token: c.token, body: '{"status":"active"}' });
    expect([hb.status, hb.json?.config_version]).toEqual([200, 4]);
    // The config endpoint does need PostgreSQL: 503 + Retry-After, nothing about why.
    const cfg = await call(`${edge.url}/api/v1/collectors/${c.id}/config`, { token: c.token, method: 'GET' });
    expect(cfg.status).toBe(503);
    expect(cfg.json).toEqual({ error: { code: 'UNAVAILABLE', message: 'database unavailable' } });
    expect(Number(cfg.headers.get('retry-after'))).toBeGreaterThan(0);
  });

  it('a PostgreSQL that drops every connection is "database unavailable" (503), not an internal error', async () => {
    // node-postgres raises "Connection terminated unexpectedly" with no SQLSTATE when the server
    // (or a proxy, a failover) hangs up: the client should retry, not report our bug.
    await using world = await EdgeWorld.create();
    const c = await world.collector();
    const dropper = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => dropper.listen(0, '127.0.0.1', resolve));
    try {
      const port = (dropper.address() as AddressInfo).port;
      const edge = await world.startEdge({ DATABASE_URL: `postgresql://nobody@127.0.0.1:${port}/none` });
      const cfg = await call(`${edge.url}/api/v1/collectors/${c.id}/config`, { token: c.token, method: 'GET' });
      expect([cfg.status, cfg.json]).toEqual([503, { error: { code: 'UNAVAILABLE', message: 'database unavailable' } }]);
      expect(Number(cfg.headers.get('retry-after'))).toBeGreaterThan(0);
      const refresh = await call(`${edge.url}/api/v1/collectors/refresh-token`, { token: c.token, body: '' });
      expect([refresh.status, refresh.json?.error?.code]).toEqual([503, 'UNAVAILABLE']);
    } finally {
      dropper.close();
    }
  });

  it('inflates a gzip body sent chunked over a bare socket', async () => {
    await using world = await EdgeWorld.create();
    const c = await world.collector();
    const edge = await world.startEdge();
    const body = `{"chunked_gzip":${Date.now()},"big":18446744073709551615}`;
    const gz = gzipSync(body);
    const half = Math.floor(gz.length / 2);
    const chunk = (b: Buffer) => Buffer.concat([Buffer.from(`${b.length.toString(16)}\r\n`), b, Buffer.from('\r\n')]);
    const res = await rawRequest(edge.port, [
      `POST /api/v1/metrics/push HTTP/1.1\r\nHost: edge\r\nAuthorization: Bearer ${c.token}\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n`,
      chunk(gz.subarray(0, half)),
      () => new Promise((r) => setTimeout(r, 30)),
      chunk(gz.subarray(half)),
      '0\r\n\r\n',
    ]);
    expect(res.status).toBe(200);
    const pushId = JSON.parse(res.body).push_id as string;
    expect((await world.queuedPushes()).find((p) => p.push_id === pushId)?.body).toBe(body);
  });
});
