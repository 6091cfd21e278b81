import cluster, { type Worker } from 'node:cluster';
import { randomUUID } from 'node:crypto';
import { AggregatorRegistry, Counter, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import type { Logger } from '@pga/logger';

export type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];

/**
 * Multi-process edge (issue 4 §1): the primary serves like every worker and forks N-1 more; each
 * process binds the same port itself — uWS/uSockets listens with SO_REUSEPORT, so the kernel
 * spreads connections across them and nothing is proxied. Serving from the primary (instead of an
 * idle supervisor) saves one runtime's memory (~90 MiB) toward the idle-fleet budget.
 * The primary restarts crashed workers, forwards SIGTERM, and sums /metrics over all processes.
 */

type MetricJson = MetricsJson[number];

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
  /**
   * Counters must never go down in the sum (Prometheus reads a decrease as a reset and counts the
   * whole value again): each worker's last answer stands in when it does not answer in time, and the
   * counters and histograms of a worker that exited stay in the sum for good (`retired`).
   */
  const last = new Map<number, MetricsJson>();
  let retired: Promise<MetricsJson> = Promise.resolve([]);
  // The workers and the retired sum are taken together, before any wait: a worker whose exit is
  // handled meanwhile is counted once, either live (its answer or its last one) or retired.
  /** Workers that died and were started again: the one trace a crash leaves in /metrics. */
  const primaryRegistry = new Registry();
  const restarts = new Counter({
    name: 'edge_worker_restarts_total',
    help: 'Edge worker processes that exited unexpectedly and were started again (by the primary).',
    registers: [primaryRegistry],
  });
  const primaryOwn = async (): Promise<MetricsJson> => [
    ...(await own().catch(() => [])),
    ...((await primaryRegistry.getMetricsAsJSON()) as MetricsJson),
  ];
  const metricsText = () => {
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w);
    return retired.then((sum) => aggregate(primaryOwn, workers, last, sum));
  };
  const fork = () => {
    const worker = cluster.fork();
    worker.on('message', (m: unknown) => {
      if (isMessage(m) && m.t === 'pga-edge:metrics?')
        void metricsText().then(
          (text) => worker.isConnected() && worker.send({ t: 'pga-edge:metrics', id: m.id, text } satisfies Message),
          // Not an unhandled rejection (it would end the primary): the worker's scrape times out.
          (err: unknown) => logger.error({ err }, 'metrics aggregation failed'),
        );
    });
  };
  for (let i = 0; i < workers; i++) fork();
  cluster.on('exit', (worker, code, signal) => {
    const final = last.get(worker.id);
    // A failed merge keeps the sum so far: a rejected `retired` would fail every later scrape.
    if (final)
      retired = retired.then((sum) =>
        mergeCumulative(sum, final).catch((err: unknown) => {
          logger.error({ err, pid: worker.process.pid }, "an exited worker's counters could not be kept");
          return sum;
        }),
      );
    // Kept a little longer for an aggregation that listed this worker before its exit.
    setTimeout(() => last.delete(worker.id), 10_000).unref();
    if (stopping) return;
    restarts.inc();
    logger.error({ pid: worker.process.pid, code, signal }, 'edge worker died; starting another');
    // Not once the primary is stopping: stopWorkers() would neither signal nor wait for it.
    setTimeout(() => !stopping && fork(), 500);
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

/**
 * Asks every worker for its metrics and sums them with the primary's and the exited workers'
 * (counters and histograms add up). A worker that does not answer within 2 s counts with its last
 * answer (`last`, updated here).
 */
async function aggregate(
  own: () => Promise<MetricsJson>,
  workers: Worker[],
  last: Map<number, MetricsJson>,
  retired: MetricsJson,
): Promise<string> {
  const parts = await Promise.all([
    own().catch(() => undefined),
    ...workers.map(
      (w) =>
        new Promise<MetricsJson | undefined>((resolve) => {
          // Gone (its exit not handled yet): its last answer.
          if (!w.isConnected()) return resolve(last.get(w.id));
          const id = randomUUID();
          const timer = setTimeout(() => (w.off('message', on), resolve(last.get(w.id))), 2000);
          const on = (m: unknown) => {
            if (isMessage(m) && m.t === 'pga-edge:json' && m.id === id) {
              clearTimeout(timer);
              w.off('message', on);
              last.set(w.id, m.data);
              resolve(m.data);
            }
          };
          w.on('message', on);
          try {
            w.send({ t: 'pga-edge:json?', id } satisfies Message);
          } catch {
            // the channel closed meanwhile: the timer answers with its last metrics
          }
        }),
    ),
  ]);
  return AggregatorRegistry.aggregate([...parts.filter((p): p is MetricsJson => !!p), retired]).metrics();
}

/** Adds the counters and histograms of `final` (an exited worker's last answer) to `sum`. */
async function mergeCumulative(sum: MetricsJson, final: MetricsJson): Promise<MetricsJson> {
  const cumulative = final.filter((m: MetricJson) => ['counter', 'histogram'].includes(String(m.type)));
  return (await AggregatorRegistry.aggregate([sum, cumulative]).getMetricsAsJSON()) as MetricsJson;
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
