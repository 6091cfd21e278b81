import { mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { resolveCredentials } from './credentials';
import { stateFileOf, tokenTimes, writeState } from './state-file';

const ID = '11111111-2222-4333-8444-555555555555';
/** An unsigned JWT-shaped token with the given claims (only its payload is read here). */
const jwt = (claims: Record<string, unknown>) => `e30.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.sig`;

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
