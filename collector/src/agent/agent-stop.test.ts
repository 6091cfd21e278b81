import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, expect, it } from 'vitest';
import type { HeartbeatAnswer } from '@pga/contracts';
import { createLogger } from '@pga/logger';
import type { CentralClient, CentralResult } from '../central/central-client';
import type { Pusher } from '../push/pusher';
import type { Spool } from '../spool/spool';
import { createAgent } from './agent';
import { readStopState } from './stop-state';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/**
 * An admin's `stop` arrives in a heartbeat's answer, and the agent is stopped (SIGTERM: a service
 * manager's restart, a deploy) before it has recorded it: `stop()` used not to wait for the
 * heartbeat in flight, so the stop was never written and the next start collected again
 * (test/collector/e2e.test.ts "stays stopped across an agent restart", flaky on a loaded machine).
 */
it('stop() waits for the heartbeat in flight: a stop its answer carries is recorded before the agent ends', async () => {
  const stateDir = mkdtempSync(path.join(tmpdir(), 'pga-agent-stop-'));
  dirs.push(stateDir);
  const collectorId = '6f1c2a3b-4d5e-4f60-8a71-9b8c7d6e5f40';
  let answer: ((res: CentralResult<HeartbeatAnswer>) => void) | undefined;
  const central = {
    heartbeat: () => new Promise<CentralResult<HeartbeatAnswer>>((resolve) => (answer = resolve)),
    config: () => Promise.resolve({ ok: false, status: 0, code: 'NETWORK', message: 'test: no central' }),
  } as unknown as CentralClient;
  const pusher = { start() {}, stop: () => Promise.resolve(), notify() {}, stats: () => ({ lastError: null }) };
  const agent = createAgent({
    central,
    tokens: {
      current: () => ({ collectorId, token: 'test' }),
      refresh: () => Promise.resolve(false),
      refreshDueAt: () => undefined,
      refreshWhenAsked: () => Promise.resolve(false),
    },
    spool: {} as Spool,
    pusher: pusher as unknown as Pusher,
    logger: createLogger({ name: 'agent-stop-test', level: 'silent', pretty: false }),
    defaults: { intervalSeconds: 3600, queryLimit: 5 },
    heartbeatSeconds: 3600,
    statementTimeoutMs: 1000,
    stateDir,
  });
  await agent.start();
  expect(answer).toBeDefined(); // the start's heartbeat, in flight
  const stopping = agent.stop();
  answer!({ ok: true, status: 200, body: { status: 'ok', config_version: 0, commands: [{ id: 'cmd-1', action: 'stop' }] } });
  await stopping;
  expect(readStopState(stateDir, collectorId)?.command_id).toBe('cmd-1');
});
