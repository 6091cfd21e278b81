import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordIssuedToken } from '@pga/db';
import { freePort } from '@pga/local-stack';
import { createCollectorTokens } from '@pga/tokens';
import { AUDIENCE, call, EdgeWorld, ISSUER, legacyCollectorToken, spawnEdge, type EdgeProcess } from './harness';
import { testEnv } from '../helpers';

const root = path.resolve(import.meta.dirname, '../..');

/**
 * Upgrading to key ids with the JWT_SECRET an installation already has (review28 item 2): its
 * tokens were signed with the secret's raw bytes and carry no `kid`. A secret that ends in a newline
 * (a mounted file) keeps verifying them; one that looks like `word:…` is refused at start with the
 * line saying what to write, instead of starting and answering every collector 401; a key id still
 * in use that JWT_SECRET lacks is an error line.
 */
describe('JWT_SECRET of before key ids, after the upgrade (real edge and admin processes)', () => {
  let world: EdgeWorld;

  /** A token as every token before key ids was: no `kid`, signed with the secret's bytes as written, recorded with key_id NULL. */
  const legacyToken = (secret: string, collectorId: string) => legacyCollectorToken(world.pool, secret, collectorId);
  const heartbeat = (edge: EdgeProcess, token: string, id: string) =>
    call(`${edge.url}/api/v1/collectors/${id}/heartbeat`, { token, body: '{"status":"active"}' });
  /** Only the pre-key-id tokens live: the world's own (kid k1) ones revoked. */
  const onlyLegacyTokens = () => world.pool.query(`UPDATE collector_tokens SET revoked_at = now() WHERE key_id IS NOT NULL`);
  const runMain = (service: 'admin-api' | 'ingest-edge', env: Record<string, string>) =>
    spawnSync(path.join(root, 'node_modules/.bin/tsx'), [path.join(root, `services/${service}/src/main.ts`)], {
      cwd: root,
      env: { PATH: process.env.PATH, ...env },
      encoding: 'utf8',
      timeout: 60_000,
    });
  const fatalLine = (output: string) =>
    output
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { level: number; msg: string })
      .find((l) => l.level === 60)?.msg;

  beforeAll(async () => {
    world = await EdgeWorld.create();
  });
  afterAll(async () => world?.[Symbol.asyncDispose]());

  it('a secret ending in a newline keeps its newline: old tokens verify, alone and listed last when rotating', async () => {
    const secret = `mounted-file-secret-${'f'.repeat(30)}\n`;
    const c = await world.collector();
    const legacy = await legacyToken(secret, c.id);
    await onlyLegacyTokens();
    {
      await using edge = await spawnEdge(world.env({ JWT_SECRET: secret }));
      const res = await heartbeat(edge, legacy, c.id);
      expect([res.status, res.text]).toEqual([200, JSON.stringify({ status: 'ok', config_version: 3, commands: [] })]);
    }
    {
      await using edge = await spawnEdge(world.env({ JWT_SECRET: `k2:${'n'.repeat(40)},k1:${secret}` }));
      expect((await heartbeat(edge, legacy, c.id)).status).toBe(200);
    }
  });

  it('a secret that reads as <id>:<secret> stops the edge and the admin service with the line to write; k1:<it> verifies the old tokens', async () => {
    await world.pool.query('UPDATE collector_tokens SET revoked_at = now()');
    const secret = `prod:${'0123456789abcdef'.repeat(2)}abcd`;
    const c = await world.collector();
    const legacy = await legacyToken(secret, c.id);
    await onlyLegacyTokens();
    const expected =
      'JWT_SECRET verifies none of the live collector tokens: it lists no key "k1", which verifies the 1 live token ' +
      'issued before key ids (the newest token of 1 collector), so every collector would get 401. Not starting: ' +
      'if JWT_SECRET is still the secret that signed the tokens of before key ids, write it as k1:<that secret> ' +
      '(a single secret containing ":" now reads as <id>:<secret>), listed after the new one when rotating. ' +
      'To end every collector token on purpose, see README.md "Rotating JWT_SECRET"';
    const env = world.env({ JWT_SECRET: secret, LOG_LEVEL: 'info', INGEST_PORT: String(await freePort()) });
    const edge = runMain('ingest-edge', env);
    expect(edge.status, edge.stdout + edge.stderr).toBe(1);
    expect(fatalLine(edge.stdout)).toBe(expected);
    const admin = runMain('admin-api', {
      ...env,
      ADMIN_PORT: String(await freePort()),
      ADMIN_HOST: '127.0.0.1',
      REDIS_URL: testEnv.redisUrl,
    });
    expect(admin.status, admin.stdout + admin.stderr).toBe(1);
    expect(fatalLine(admin.stdout)).toBe(expected);

    await using running = await spawnEdge(world.env({ JWT_SECRET: `k1:${secret}` }));
    expect((await heartbeat(running, legacy, c.id)).status).toBe(200);
  });

  it('a key id in use that JWT_SECRET lacks, while other collectors verify: the edge starts and says so in an error line', async () => {
    await world.pool.query('UPDATE collector_tokens SET revoked_at = now()');
    const [oldSecret, newSecret] = ['o'.repeat(40), 'n'.repeat(40)];
    const moved = await world.collector();
    const k2 = createCollectorTokens({ secret: `k2:${newSecret},k1:${oldSecret}`, issuer: ISSUER, audience: AUDIENCE });
    await recordIssuedToken(world.pool, moved.id, await k2.issue(moved.id));
    const left = await world.collector();
    await legacyToken(oldSecret, left.id);
    await legacyToken(oldSecret, left.id);
    await world.pool.query('UPDATE collector_tokens SET revoked_at = now() WHERE key_id = $1', ['k1']);
    await using edge = await spawnEdge(world.env({ JWT_SECRET: `k2:${newSecret}`, LOG_LEVEL: 'info' }));
    const errors = edge
      .output()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { level: number; msg: string; keyId?: string; liveTokens?: number; collectors?: number })
      .filter((l) => l.level === 50);
    expect(errors.map(({ msg, keyId, liveTokens, collectors }) => ({ msg, keyId, liveTokens, collectors }))).toEqual([
      {
        msg:
          'JWT_SECRET lists no key "k1", which verifies the 2 live tokens issued before key ids (the newest token of 1 collector): ' +
          'those collectors get 401 until it is listed again (README.md "Rotating JWT_SECRET"; collectors.rotateToken gives one a new token)',
        keyId: 'k1',
        liveTokens: 2,
        collectors: 1,
      },
    ]);
  });
});
