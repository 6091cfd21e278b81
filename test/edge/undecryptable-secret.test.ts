import { randomBytes } from 'node:crypto';
import { expect, it } from 'vitest';
import { createSecretBox } from '@pga/crypto';
import { capturingLogger } from '../helpers';
import { call, EdgeWorld, waitUntil } from './harness';

/**
 * ENCRYPTION_KEY lost the key a collector's password is under (dropped from the list before
 * `npm run reencrypt-secrets` moved it): the edge says so at start-up, and the config endpoints
 * answer that collector a clear 503 — never a bare 500, never a 401 on the v3 endpoint (the v3
 * collector retries a 401 in a tight loop) — with a log line naming the collector and the key id.
 */
it('a password under a key id the edge does not list: a start-up warning, 503 with Retry-After on both config endpoints, one log line naming collector and key', async () => {
  await using world = await EdgeWorld.create();
  const readable = await world.collector();
  const lost = await world.collector();
  await world.pool.query('UPDATE collectors SET password_encrypted = $2 WHERE id = $1', [
    lost.id,
    createSecretBox(`k0:${randomBytes(32).toString('base64')}`).encrypt('under a dropped key', lost.id),
  ]);
  const { logger, lines } = capturingLogger('edge-test');
  const edge = await world.startEdge({}, logger);

  const warned = () => lines.find((l) => l.level === 40 && l.msg.includes('ENCRYPTION_KEY does not list'));
  await waitUntil(async () => warned() !== undefined, 5000, 'the start-up warning');
  const warning = warned();
  expect(warning?.msg).toContain('"k0" (1 secret of 1 collector)');
  expect(warning?.unlistedKeyIds).toEqual(['k0']);

  const json = await call(`${edge.url}/api/v1/collectors/${lost.id}/config`, { token: lost.token, method: 'GET' });
  expect(json.status).toBe(503);
  expect(Number(json.headers.get('retry-after'))).toBeGreaterThanOrEqual(60);
  expect(Number(json.headers.get('retry-after'))).toBeLessThanOrEqual(120);
  expect(json.json.error.code).toBe('UNAVAILABLE');
  expect(json.json.error.message).toContain('cannot be decrypted');
  expect(json.text).not.toContain('k0'); // the reason stays in the log

  const v3 = await call(`${edge.url}/api/v1/config/${lost.id}`, {
    token: lost.token,
    method: 'GET',
    headers: { accept: 'text/plain' },
  });
  expect(v3.status).toBe(503);
  expect(Number(v3.headers.get('retry-after'))).toBeGreaterThanOrEqual(60);
  expect(Number(v3.headers.get('retry-after'))).toBeLessThanOrEqual(120);

  // One ERROR line for both requests (the agent asks at every heartbeat), naming collector and key.
  const errors = lines.filter((l) => l.level === 50);
  expect(errors).toHaveLength(1);
  expect(errors[0]).toMatchObject({ collectorId: lost.id, field: 'password', keyId: 'k0' });
  expect(errors[0]!.msg).toContain(`collector ${lost.id}'s password cannot be decrypted`);
  expect(errors[0]!.msg).toContain('key id "k0"');

  // The rest of the fleet is served as before.
  const fine = await call(`${edge.url}/api/v1/collectors/${readable.id}/config`, { token: readable.token, method: 'GET' });
  expect(fine.status).toBe(200);
  expect(fine.json.target.password).toBe('s3cret "pw"');
});
