import { mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '@pga/logger';
import type { CentralClient } from '../central/central-client';
import {
  ASKED_REFRESH_BACKOFF_MS,
  ASKED_REFRESH_INTERVAL_MS,
  ASKED_REFRESH_MAX_BACKOFF_MS,
  createTokenHolder,
  resolveCredentials,
} from './credentials';
import { readState, stateFileOf, tokenKeyId, tokenTimes, writeState } from './state-file';

const ID = '11111111-2222-4333-8444-555555555555';
/** An unsigned JWT-shaped token with the given claims (only its payload is read here). */
const jwt = (claims: Record<string, unknown>, header: Record<string, unknown> = {}) =>
  `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.sig`;

const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(path.join(os.tmpdir(), 'pga-cred-'));
  dirs.push(d);
  return d;
};
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

describe('credentials', () => {
  it('uses the environment, else the state file, and the later-expiring token of the same collector', async () => {
    const dir = tempDir();
    const envToken = jwt({ iat: 100, exp: 200 });
    expect(resolveCredentials({ COLLECTOR_ID: ID, COLLECTOR_JWT_TOKEN: envToken }, dir)).toEqual({
      collectorId: ID,
      token: envToken,
    });
    expect(resolveCredentials({}, dir)).toBeUndefined();

    const refreshed = jwt({ iat: 150, exp: 300 });
    await writeState(dir, { collector_id: ID, token: refreshed });
    expect(statSync(stateFileOf(dir)).mode & 0o777).toBe(0o600);
    expect(resolveCredentials({}, dir)).toEqual({ collectorId: ID, token: refreshed });
    expect(resolveCredentials({ COLLECTOR_ID: ID, COLLECTOR_JWT_TOKEN: envToken }, dir)!.token).toBe(refreshed);
    const newer = jwt({ iat: 250, exp: 400 });
    expect(resolveCredentials({ COLLECTOR_ID: ID, COLLECTOR_JWT_TOKEN: newer }, dir)!.token).toBe(newer);
    // Another collector's environment wins over a state file of a different collector.
    const other = '22222222-2222-4333-8444-555555555555';
    expect(resolveCredentials({ COLLECTOR_ID: other, COLLECTOR_JWT_TOKEN: envToken }, dir)).toEqual({
      collectorId: other,
      token: envToken,
    });
  });

  it('reads iat/exp without verifying, and tolerates garbage', () => {
    expect(tokenTimes(jwt({ iat: 1, exp: 2 }))).toEqual({ iat: 1, exp: 2 });
    expect(tokenTimes('not a token')).toEqual({});
  });
});

describe('refreshWhenAsked (heartbeat token_refresh: JWT_SECRET rotated)', () => {
  /** A central whose refresh answers with the next of `answers` (a kid, or a failure), counting calls. */
  function centralAnswering(answers: (string | 'fail')[]) {
    let calls = 0;
    const central = {
      refreshToken: () => {
        const next = answers[calls++] ?? 'fail';
        return Promise.resolve(
          next === 'fail'
            ? { ok: false, status: 503, code: 'UNAVAILABLE', message: 'test' }
            : { ok: true, status: 200, body: { token: jwt({ iat: calls, exp: 1e10 }, { kid: next }), expires_at: 'x' } },
        );
      },
    } as unknown as CentralClient;
    return { central, calls: () => calls };
  }
  const holder = (dir: string, kid?: string) =>
    createTokenHolder(
      { collectorId: ID, token: jwt({ iat: 1, exp: 1e10 }, kid ? { kid } : {}) },
      { stateDir: dir, logger: createLogger({ name: 'cred-test', level: 'silent', pretty: false }) },
    );

  it('refreshes at once, persists the new token, and does not refresh again for the next answers', async () => {
    const dir = tempDir();
    const tokens = holder(dir); // a token from before key ids: no kid
    const { central, calls } = centralAnswering(['k2', 'k2']);
    const t0 = 1_000_000;
    expect(await tokens.refreshWhenAsked(central, t0)).toBe(true);
    expect(tokenKeyId(tokens.current().token)).toBe('k2');
    expect(readState(dir)?.token).toBe(tokens.current().token);
    // an answer that still asks (another edge not restarted yet) soon after: no second refresh
    expect(await tokens.refreshWhenAsked(central, t0 + 1000)).toBe(false);
    expect(calls()).toBe(1);
    // two answers at once: one refresh
    const again = centralAnswering(['k3', 'k3']);
    const later = t0 + ASKED_REFRESH_INTERVAL_MS;
    const both = await Promise.all([
      tokens.refreshWhenAsked(again.central, later),
      tokens.refreshWhenAsked(again.central, later),
    ]);
    expect(both).toEqual([true, true]);
    expect(again.calls()).toBe(1);
    expect(tokenKeyId(tokens.current().token)).toBe('k3');
  });

  it('backs off after a failure, 1 min doubling to 1 h, and refreshes once the central answers', async () => {
    const tokens = holder(tempDir(), 'k1');
    const { central, calls } = centralAnswering(['fail', 'fail', 'fail', 'k2']);
    let now = 5_000_000;
    expect(await tokens.refreshWhenAsked(central, now)).toBe(false);
    expect(await tokens.refreshWhenAsked(central, now + ASKED_REFRESH_BACKOFF_MS - 1)).toBe(false);
    expect(calls()).toBe(1);
    now += ASKED_REFRESH_BACKOFF_MS;
    expect(await tokens.refreshWhenAsked(central, now)).toBe(false);
    expect(calls()).toBe(2);
    expect(await tokens.refreshWhenAsked(central, now + 2 * ASKED_REFRESH_BACKOFF_MS - 1)).toBe(false);
    expect(calls()).toBe(2);
    now += 2 * ASKED_REFRESH_BACKOFF_MS;
    expect(await tokens.refreshWhenAsked(central, now)).toBe(false);
    now += 4 * ASKED_REFRESH_BACKOFF_MS;
    expect(await tokens.refreshWhenAsked(central, now)).toBe(true);
    expect(calls()).toBe(4);
    expect(tokenKeyId(tokens.current().token)).toBe('k2');
    expect(ASKED_REFRESH_MAX_BACKOFF_MS).toBe(3_600_000);
  });

  it('stops asking for a key a refresh did not move away from (the central disagrees with itself)', async () => {
    const tokens = holder(tempDir(), 'k1');
    const { central, calls } = centralAnswering(['k1', 'k1', 'k1']);
    expect(await tokens.refreshWhenAsked(central, 0)).toBe(true);
    expect(await tokens.refreshWhenAsked(central, 10 * ASKED_REFRESH_INTERVAL_MS)).toBe(false);
    expect(calls()).toBe(1);
  });
});
