import cluster, { type Worker } from 'node:cluster';
import { randomUUID } from 'node:crypto';
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import type { Logger } from '@pga/logger';

export type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];

/**
 * Multi-process edge (issue 4 §1): the primary serves like every worker and forks N-1 more; each
 * process binds the same port itself — uWS/uSockets listens with SO_REUSEPORT, so the kernel
 * spreads connections across them and nothing is proxied. Serving from the primary (instead of an
 * idle supervisor) saves one runtime's memory (~90 MiB) toward the idle-fleet budget.
 * The primary restarts crashed workers, forwards SIGTERM, and sums /metrics over all processes.
 */

type Message =
  | { t: 'pga-edge:metrics?'; id: string }
  | { t: 'pga-edge:metrics'; id: string; text: string }
  | { t: 'pga-edge:json?'; id: string }
  | { t: 'pga-edge:json'; id: string; data: MetricsJson };

const isMessage = (m: unknown): m is Message =>
  typeof m === 'object' && m !== null && String((m as { t?: unknown }).t).startsWith('pga-edge:');

export interface Primary {
  /** Prometheus text summed over the primary (`own`) and every live worker. */
  metricsText(): Promise<string>;
  /** SIGTERM to every worker; resolves when all have exited. */
  stopWorkers(): Promise<void>;
}

export function startWorkers({
  workers,
  logger,
  own,
}: {
  workers: number;
  logger: Logger;
  own: () => Promise<MetricsJson>;
}): Primary {
  let stopping = false;
  const metricsText = () => aggregate(own);
  const fork = () => {
    const worker = cluster.fork();
    worker.on('message', (m: unknown) => {
      if (isMessage(m) && m.t === 'pga-edge:metrics?')
        void metricsText().then(
          (text) => worker.isConnected() && worker.send({ t: 'pga-edge:metrics', id: m.id, text } satisfies Message),
        );
    });
  };
  for (let i = 0; i < workers; i++) fork();
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return;
    logger.error({ pid: worker.process.pid, code, signal }, 'edge worker died; starting another');
    setTimeout(fork, 500);
  });
  return {
    metricsText,
    stopWorkers() {
      stopping = true;
      const live = Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w);
      return Promise.all(
        live.map(
          (w) =>
            new Promise<void>((resolve) => {
              if (w.isDead()) return resolve();
              w.once('exit', () => resolve());
              w.process.kill('SIGTERM');
            }),
        ),
      ).then(() => undefined);
    },
  };
}

/** Asks every worker for its metrics and sums them with the primary's (counters and histograms add up). */
async function aggregate(own: () => Promise<MetricsJson>): Promise<string> {
  const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w && w.isConnected());
  const parts = await Promise.all([
    own().catch(() => undefined),
    ...workers.map(
      (w) =>
        new Promise<MetricsJson | undefined>((resolve) => {
          const id = randomUUID();
          const timer = setTimeout(() => (w.off('message', on), resolve(undefined)), 2000);
          const on = (m: unknown) => {
            if (isMessage(m) && m.t === 'pga-edge:json' && m.id === id) {
              clearTimeout(timer);
              w.off('message', on);
              resolve(m.data);
            }
          };
          w.on('message', on);
          w.send({ t: 'pga-edge:json?', id } satisfies Message);
        }),
    ),
  ]);
  return AggregatorRegistry.aggregate(parts.filter((p): p is MetricsJson => !!p)).metrics();
}

/** Worker side: answers the primary's requests for this process's metrics; returns a /metrics source. */
export function workerMetricsBridge(ownMetrics: () => Promise<MetricsJson>): () => Promise<string> {
  const waiting = new Map<string, (text: string) => void>();
  process.on('message', (m: unknown) => {
    if (!isMessage(m)) return;
    if (m.t === 'pga-edge:json?')
      void ownMetrics().then((data) => process.send?.({ t: 'pga-edge:json', id: m.id, data } satisfies Message));
    if (m.t === 'pga-edge:metrics') waiting.get(m.id)?.(m.text);
  });
  return () =>
    new Promise<string>((resolve, reject) => {
      const id = randomUUID();
      const timer = setTimeout(() => (waiting.delete(id), reject(new Error('primary did not answer'))), 3000);
      waiting.set(id, (text) => (clearTimeout(timer), waiting.delete(id), resolve(text)));
      process.send?.({ t: 'pga-edge:metrics?', id } satisfies Message);
    });
}
