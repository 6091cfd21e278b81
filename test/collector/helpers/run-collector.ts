import { mkdtempSync } from 'node:fs';
import path from 'node:path';
import { pino } from 'pino';
import { createRuntime, readCollectorEnv, type Runtime } from '@pga/collector';
import { testEnv } from '../../helpers';

export interface RunningCollector extends AsyncDisposable {
  runtime: Runtime;
  stateDir: string;
  /** Parsed log lines (debug and up). */
  logs: Record<string, unknown>[];
  /** push_ids in the order their snapshots were spooled. */
  spooled(): string[];
  /** Envelope timestamps in the order their snapshots were spooled. */
  spooledTimestamps(): string[];
  stop(): Promise<void>;
}

export const newStateDir = () => mkdtempSync(path.join(testEnv.dataDir, 'collector-state-'));

/** Fast defaults for tests: 1 s heartbeats, short back-off. */
export const FAST_ENV = {
  COLLECTOR_HEARTBEAT_INTERVAL: '1',
  COLLECTOR_BACKOFF_BASE_MS: '200',
  COLLECTOR_BACKOFF_MAX_MS: '1000',
  COLLECTOR_PUSH_MAX_PER_SECOND: '20',
  COLLECTOR_DEFAULT_INTERVAL: '1',
};

/** Starts the collector in this process exactly as the CLI wires it (createRuntime), logs captured. */
export async function runCollector(env: Record<string, string>): Promise<RunningCollector> {
  const stateDir = env.COLLECTOR_STATE_DIR ?? newStateDir();
  const config = readCollectorEnv({ ...FAST_ENV, COLLECTOR_STATE_DIR: stateDir, ...env });
  const logs: Record<string, unknown>[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => logs.push(JSON.parse(line)) });
  const runtime = await createRuntime(config, logger);
  await runtime.agent.start();
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await runtime.agent.stop();
  };
  return {
    runtime,
    stateDir,
    logs,
    spooled: () => logs.filter((l) => l.msg === 'snapshot spooled').map((l) => l.push_id as string),
    spooledTimestamps: () => logs.filter((l) => l.msg === 'snapshot spooled').map((l) => l.timestamp as string),
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

export async function until<T>(
  what: string,
  fn: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
