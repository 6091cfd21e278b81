import cluster from 'node:cluster';
import { ConfigError, configOrExit, portAvailable } from '@pga/config';
import { parseJwtSecret } from '@pga/crypto';
import { checkTokenKeyIdsAtStart } from '@pga/db';
import { createLogger } from '@pga/logger';
import { startWorkers, workerMetricsBridge, type MetricsJson } from './cluster';
import { openMetricsWarning, readEdgeConfig } from './config';
import { createEdge, EDGE_STATEMENT_TIMEOUT_MS } from './create-edge';
import { uwsFallbackRefusal } from './uws-native';

const config = configOrExit('ingest-edge', () => {
  const read = readEdgeConfig();
  // Port 0 is "any free port": each forked process would get one of its own, none of them known.
  if (read.INGEST_PORT === 0 && read.EDGE_PROCESSES > 1)
    throw new ConfigError(
      `invalid environment: INGEST_PORT: 0 (any free port) works only with EDGE_PROCESSES=1, not ${read.EDGE_PROCESSES}: each process would listen on a port of its own`,
    );
  return read;
});
const logger = createLogger({ name: 'ingest-edge', level: config.LOG_LEVEL });

// uWebSockets.js falls back to a slow Node implementation, with only a warning, on a Node it has no
// binary for (Node 22 here): parts of the edge would throw mid-request. Refused at once instead.
const fallback = uwsFallbackRefusal();
if (fallback) {
  logger.fatal(fallback);
  process.exit(1);
}

// The processes of one edge share the port with SO_REUSEPORT (uWebSockets.js always sets it), which
// would also let this edge silently join a port another edge (another install) holds: the kernel
// would then split the collectors' connections between the two. The primary checks first, before
// any process of its own listens; its workers then join its port.
const portFree = cluster.isPrimary
  ? await portAvailable(config.INGEST_HOST, config.INGEST_PORT).catch((err: unknown) => {
      logger.fatal({ err }, err instanceof Error ? err.message : 'cannot listen');
      return process.exit(1);
    })
  : true;
if (!portFree) {
  logger.fatal(
    { host: config.INGEST_HOST, port: config.INGEST_PORT },
    `cannot listen: port ${config.INGEST_PORT} on ${config.INGEST_HOST} is in use (another edge or program); set INGEST_PORT`,
  );
  process.exit(1);
}

// JWT_SECRET must still verify the fleet's tokens (checked once per edge, by its primary, before any
// process serves): a key id in use it does not list is an error line, and none of the collectors'
// newest tokens verifiable refuses the start, rather than answering the whole fleet 401.
if (cluster.isPrimary) {
  const jwt = parseJwtSecret(config.JWT_SECRET);
  const refusal = await checkTokenKeyIdsAtStart(
    config.DATABASE_URL,
    { keyIds: [...jwt.keyring.keys()], activeKeyId: jwt.activeKeyId },
    logger,
    // A PostgreSQL outage must not keep the edge from serving for long: not checked then. Its pool's
    // statement timeout is asked for on the check's connection too: a pooler that dropped it (one
    // ignoring `options`) is one warning, not a refused start.
    { timeoutMs: 5000, statementTimeoutMs: EDGE_STATEMENT_TIMEOUT_MS },
  );
  if (refusal) {
    logger.fatal(refusal);
    process.exit(1);
  }
}

let ownMetrics: (() => Promise<MetricsJson>) | undefined;
const own = () => ownMetrics?.() ?? Promise.resolve([]);
// EDGE_PROCESSES > 1: this primary serves too and forks the others (see cluster.ts).
const primary =
  cluster.isPrimary && config.EDGE_PROCESSES > 1 ? startWorkers({ workers: config.EDGE_PROCESSES - 1, logger, own }) : undefined;
const metricsText = primary ? primary.metricsText : cluster.isWorker ? workerMetricsBridge(own) : undefined;

try {
  const edge = await createEdge({ config, logger, listenWhenReady: cluster.isWorker, ...(metricsText ? { metricsText } : {}) });
  ownMetrics = () => edge.metrics.registry.getMetricsAsJSON();
  logger.info({ port: edge.port, host: config.INGEST_HOST, processes: config.EDGE_PROCESSES }, 'ingest edge listening');
  // Once per edge (its primary), not once per process.
  const openMetrics = cluster.isPrimary ? openMetricsWarning(config) : undefined;
  if (openMetrics) logger.warn({ host: config.INGEST_HOST, port: edge.port }, openMetrics);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'draining');
    // The drain is bounded (DRAIN_TIMEOUT_MS, ENQUEUE_TIMEOUT_MS, Redis closes cut short); this is the
    // last resort should something else in closing hang.
    setTimeout(() => {
      logger.error('shutdown took too long; exiting');
      process.exit(1);
    }, config.DRAIN_TIMEOUT_MS + 10_000).unref();
    Promise.all([edge.drain(), primary?.stopWorkers()]).then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'drain failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
} catch (err) {
  logger.fatal({ err }, err instanceof Error ? err.message : 'ingest edge failed to start');
  await primary?.stopWorkers();
  process.exit(1);
}
