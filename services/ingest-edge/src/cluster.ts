import cluster, { type Worker } from 'node:cluster';
import { randomUUID } from 'node:crypto';
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue } from 'prom-client';

export type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];
import type { Logger } from '@pga/logger';

/**
 * Multi-process edge (issue 4 §1): the primary forks N workers, each a full edge listening on the
 * same port — uWS/uSockets binds with SO_REUSEPORT, so the kernel spreads connections across them.
 * The primary serves no traffic: it restarts crashed workers, forwards SIGTERM and sums /metrics.
 */

type Message =
  | { t: 'pga-edge:metrics?'; id: string }
  | { t: 'pga-edge:metrics'; id: string; text: string }
  | { t: 'pga-edge:json?'; id: string }
  | { t: 'pga-edge:json'; id: string; data: MetricsJson };

const isMessage = (m: unknown): m is Message =>
  typeof m === 'object' && m !== null && String((m as { t?: unknown }).t).startsWith('pga-edge:');

export function runPrimary({ processes, logger }: { processes: number; logger: Logger }): void {
  let stopping = false;
  const fork = () => {
    const worker = cluster.fork();
    worker.on('message', (m: unknown) => {
      if (isMessage(m) && m.t === 'pga-edge:metrics?')
        void aggregate().then(
          (text) => worker.isConnected() && worker.send({ t: 'pga-edge:metrics', id: m.id, text } satisfies Message),
        );
    });
  };
  for (let i = 0; i < processes; i++) fork();
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) {
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
      return;
    }
    logger.error({ pid: worker.process.pid, code, signal }, 'edge worker died; starting another');
    setTimeout(fork, 500);
  });
  const stop = () => {
    if (stopping) return;
    stopping = true;
    logger.info('draining edge workers');
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w);
    if (workers.length === 0) process.exit(0);
    for (const w of workers) w.process.kill('SIGTERM');
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

/** Asks every worker for its metrics and sums them (counters and histograms add up across processes). */
async function aggregate(): Promise<string> {
  const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w && w.isConnected());
  const parts = await Promise.all(
    workers.map(
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
  );
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
