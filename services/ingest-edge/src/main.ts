import cluster from 'node:cluster';
import { configOrExit } from '@pga/config';
import { createLogger } from '@pga/logger';
import { runPrimary, workerMetricsBridge, type MetricsJson } from './cluster';
import { readEdgeConfig } from './config';
import { createEdge } from './create-edge';

const config = configOrExit('ingest-edge', readEdgeConfig);
const logger = createLogger({ name: 'ingest-edge', level: config.LOG_LEVEL });

if (cluster.isPrimary && config.EDGE_PROCESSES > 1) {
  runPrimary({ processes: config.EDGE_PROCESSES, logger });
  logger.info({ port: config.INGEST_PORT, processes: config.EDGE_PROCESSES }, 'ingest edge starting');
} else {
  let metricsText: (() => Promise<string>) | undefined;
  let ownMetrics: (() => Promise<MetricsJson>) | undefined;
  if (cluster.isWorker) metricsText = workerMetricsBridge(() => ownMetrics!());
  try {
    const edge = await createEdge({ config, logger, ...(metricsText ? { metricsText } : {}) });
    ownMetrics = () => edge.metrics.registry.getMetricsAsJSON();
    logger.info({ port: edge.port, host: config.INGEST_HOST }, 'ingest edge listening');
    const stop = (signal: string) => {
      logger.info({ signal }, 'draining');
      void edge.drain().then(
        () => process.exit(0),
        (err: unknown) => {
          logger.error({ err }, 'drain failed');
          process.exit(1);
        },
      );
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  } catch (err) {
    logger.fatal({ err }, err instanceof Error ? err.message : 'ingest edge failed to start');
    process.exit(1);
  }
}
