import { afterAll, beforeAll, expect, it } from 'vitest';
import { freePort } from '@pga/local-stack';
import { uwsFallbackRefusal, uwsNativeBinary } from '../../services/ingest-edge/src/uws-native';
import { EdgeWorld, spawnEdge } from './harness';

/**
 * uWebSockets.js 20.30 falls back, with only a console warning, to a slow Node implementation on a
 * Node it has no binary for (Node 22, which package.json's engines allow for the other services), or
 * when UWS_USE_FALLBACK is set. Parts the edge uses throw there ("Not implemented"): the edge refuses
 * to start instead of failing mid-request. The fallback is forced here with UWS_USE_FALLBACK.
 */
let world: EdgeWorld;
beforeAll(async () => {
  world = await EdgeWorld.create();
});
afterAll(async () => world?.[Symbol.asyncDispose]());

it('this test process loaded the native binary, so the check passes', () => {
  expect(uwsNativeBinary()).toMatch(/binaries\/uws_linux_(x64|arm64)_\d+\.node$/);
  expect(uwsFallbackRefusal()).toBeUndefined();
  expect(uwsFallbackRefusal('')).toContain('run the edge on Node 20');
});

it('an edge on the uWebSockets.js fallback refuses to start with one fatal line', { timeout: 60_000 }, async () => {
  const port = await freePort();
  const start = spawnEdge({ ...world.env(), INGEST_PORT: String(port), LOG_LEVEL: 'info', UWS_USE_FALLBACK: '1' });
  const err = await start.then(
    async (edge) => {
      await edge.stop();
      return undefined;
    },
    (e: unknown) => e as Error,
  );
  expect(err?.message).toMatch(/edge exited with code 1/);
  const fatal = err!.message
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as { level: number; msg: string })
    .filter((line) => line.level === 60)
    .map((line) => line.msg);
  // spawnEdge's error carries the edge's output twice (its wait's reason, then the output itself).
  expect([...new Set(fatal)]).toEqual([
    'uWebSockets.js runs its Node fallback, not its native build (UWS_USE_FALLBACK is set: unset it): the ingest edge needs the native build, which this uWebSockets.js has for Node 20 (ABI 115) on Linux x64/arm64; run the edge on Node 20',
  ]);
});
