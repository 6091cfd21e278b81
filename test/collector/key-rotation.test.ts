import { readFileSync } from 'node:fs';
import path from 'node:path';
import { decodeProtectedHeader } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JWT_SECRET, startCentralStack, type CentralStack } from './helpers/central-stack';
import { runCollector, sleep, until } from './helpers/run-collector';

/**
 * JWT_SECRET rotation with the real agent and a real edge process: the operator lists a new key
 * first (README "Rotating JWT_SECRET") and restarts the edge; the agent, told so by a heartbeat
 * answer, refreshes once and keeps working after the old key is dropped. No target database: the
 * agent's collections fail, its heartbeats go on.
 */
const NEW_SECRET = 'collector-rotation-new-secret-'.padEnd(48, 'n');
const UNREACHABLE_TARGET = { host: '127.0.0.1', port: 1, database: 'none', username: 'none' };

let stack: CentralStack;
beforeAll(async () => {
  stack = await startCentralStack();
});
afterAll(async () => stack?.[Symbol.asyncDispose]());

describe('collector agent across a JWT_SECRET rotation', () => {
  it('refreshes once when the heartbeat answer asks, saves the new-key token, and keeps heartbeating after the old key is dropped', async () => {
    const c = await stack.collector(UNREACHABLE_TARGET, { interval: 1 });
    expect(decodeProtectedHeader(c.token).kid).toBe('k1');
    await using agent = await runCollector({ COLLECTOR_ID: c.id, COLLECTOR_JWT_TOKEN: c.token, CENTRAL_API_URL: stack.url });
    const savedToken = () => {
      try {
        return (JSON.parse(readFileSync(path.join(agent.stateDir, 'collector.json'), 'utf8')) as { token: string }).token;
      } catch {
        return undefined;
      }
    };
    const heartbeatAfter = async (since: string | undefined) =>
      until('a heartbeat accepted', async () => {
        const seen = await stack.lastHeartbeatSeen(c.id);
        return seen !== undefined && (since === undefined || seen > since) && seen;
      });
    const asked = () => agent.logs.filter((l) => l.msg === 'central asked for a token refresh: its signing key changed');
    const seen = await heartbeatAfter(undefined);
    await sleep(1500); // heartbeats every 0.5 s: none asks for a refresh while k1 signs
    expect(asked()).toEqual([]);
    expect(savedToken()).toBeUndefined();

    await stack.stopEdge();
    await stack.startEdge({ JWT_SECRET: `k2:${NEW_SECRET},k1:${JWT_SECRET}` });
    const refreshed = await until('the agent saved a token of k2', () => {
      const token = savedToken();
      return token !== undefined && decodeProtectedHeader(token).kid === 'k2' && token;
    });
    const afterRefresh = await heartbeatAfter(seen);
    await sleep(2000); // several heartbeats with the new token: none asks again
    expect(asked()).toHaveLength(1);
    expect(agent.logs.filter((l) => l.msg === 'token refreshed')).toHaveLength(1);
    expect(agent.runtime.tokens.current().token).toBe(refreshed);
    const { rows } = await stack.pool.query('SELECT key_id FROM collector_tokens WHERE collector_id = $1 ORDER BY issued_at', [
      c.id,
    ]);
    expect(rows.map((r) => r.key_id)).toEqual(['k1', 'k2']);

    // the old key dropped: the agent's token still passes, the old one does not
    await stack.stopEdge();
    await stack.startEdge({ JWT_SECRET: `k2:${NEW_SECRET}` });
    await heartbeatAfter(afterRefresh);
    const old = await fetch(`${stack.url}/api/v1/collectors/${c.id}/heartbeat`, {
      method: 'POST',
      headers: { authorization: `Bearer ${c.token}`, 'content-type': 'application/json' },
      body: '{}',
    });
    expect(old.status).toBe(401);
    expect(agent.logs.filter((l) => l.msg === 'token refreshed')).toHaveLength(1);
  });
});
