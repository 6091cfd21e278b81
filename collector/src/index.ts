/** @pga/collector: the agent's public API (the CLI is bin/pga-collector.js → src/cli/main.ts). */
export const COLLECTOR_PROTOCOL_VERSION = 1;
export { main } from './cli/main';
export { readCollectorEnv, CollectorEnvSchema, type CollectorEnv } from './config';
export { createAgent, type Agent, type AgentStatus, type EffectiveConfig } from './agent/agent';
export { createSnapshotCollector, COLLECTOR_VERSION, type Snapshot } from './collect/collect-snapshot';
export {
  openTargetConnection,
  COLLECTOR_APPLICATION_NAME,
  SQL_MARKER,
  StageError,
  type TargetConnection,
} from './collect/target-connection';
export { openSpool, type Spool, type SpoolEntry } from './spool/spool';
export { createPusher, type Pusher } from './push/pusher';
export { createCentralClient, parseRetryAfter, type CentralClient } from './central/central-client';
export { stringifyJson } from './json/stringify-json';
export { createRuntime, type Runtime } from './runtime';
