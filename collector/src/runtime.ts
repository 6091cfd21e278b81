import type { Logger } from '@pga/logger';
import { createAgent, type Agent } from './agent/agent';
import { createTokenHolder, resolveCredentials, type TokenHolder } from './agent/credentials';
import { createCentralClient, type CentralClient } from './central/central-client';
import { sharedSpoolDirOf, spoolDirOf, type CollectorEnv } from './config';
import { createPusher, type Pusher } from './push/pusher';
import { adoptLegacySpool } from './spool/adopt-legacy-spool';
import { openSpool, type Spool } from './spool/spool';

export interface Runtime {
  agent: Agent;
  pusher: Pusher;
  spool: Spool;
  tokens: TokenHolder;
  central: CentralClient;
  /** False when no credentials were found (only --dry-run with TARGET_DATABASE_URL works then). */
  enrolled: boolean;
}

const NO_COLLECTOR = '00000000-0000-4000-8000-000000000000';

/**
 * Wires config → tokens → central client → spool → pusher → agent (used by the CLI and by tests).
 * `dryRun`: nothing will be spooled, so nothing is created or moved on disk.
 */
export async function createRuntime(config: CollectorEnv, logger: Logger, { dryRun = false } = {}): Promise<Runtime> {
  const credentials = resolveCredentials(config, config.COLLECTOR_STATE_DIR);
  const tokens = createTokenHolder(credentials ?? { collectorId: NO_COLLECTOR, token: '' }, {
    stateDir: config.COLLECTOR_STATE_DIR,
    logger,
  });
  const central = createCentralClient({
    baseUrl: config.CENTRAL_API_URL,
    credentials: () => tokens.current(),
    timeoutMs: config.COLLECTOR_HTTP_TIMEOUT_MS,
  });
  const spoolDir = spoolDirOf(config, tokens.current().collectorId);
  if (credentials && !config.COLLECTOR_SPOOL_DIR && !dryRun) {
    await adoptLegacySpool({ from: sharedSpoolDirOf(config), to: spoolDir, collectorId: credentials.collectorId, logger });
  }
  const spool = await openSpool({
    dir: spoolDir,
    maxBytes: config.COLLECTOR_SPOOL_MAX_BYTES,
    maxFiles: config.COLLECTOR_SPOOL_MAX_FILES,
    logger,
    create: !dryRun,
  });
  const pusher = createPusher({
    spool,
    central,
    refreshToken: () => tokens.refresh(central),
    logger,
    maxPerSecond: config.COLLECTOR_PUSH_MAX_PER_SECOND,
    backoff: { baseMs: config.COLLECTOR_BACKOFF_BASE_MS, maxMs: config.COLLECTOR_BACKOFF_MAX_MS },
    // A push refused as disabled pauses collection too (the agent exists by the time a push runs).
    onDisabled: () => agent.markDisabled(),
    collectorId: () => tokens.current().collectorId,
  });
  const agent = createAgent({
    central,
    tokens,
    spool,
    pusher,
    logger,
    defaults: { intervalSeconds: config.COLLECTOR_DEFAULT_INTERVAL, queryLimit: config.COLLECTOR_DEFAULT_QUERY_LIMIT },
    targetUrl: config.TARGET_DATABASE_URL,
    heartbeatSeconds: config.COLLECTOR_HEARTBEAT_INTERVAL,
    statementTimeoutMs: config.COLLECTOR_STATEMENT_TIMEOUT_MS,
    stateDir: config.COLLECTOR_STATE_DIR,
  });
  return { agent, pusher, spool, tokens, central, enrolled: credentials !== undefined };
}
