import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import type { Measurement, RunOutput } from '../../harness/model';
import { compactAof, PUSH_QUEUE, unlinkMatching } from '../../harness/redis-state';
import type { Scenario, ScenarioContext } from '../../harness/scenario';
import { runOpenLoop } from '../../load/drivers';
import { HttpConnection } from '../../load/http-connection';
import { benchCollectors, type BenchCollector } from '../shared/collectors';
import { AckLog, openConnections, pushRequests } from '../shared/push-campaign';
import { bodyPool2k, bodyPool64k } from '../shared/workload';
import { pipelineMissing, startPipeline } from '../ingest-e2e/ingest-e2e';

const FLEET = 300;
const RATE = 1000;

/** The large pushes: an envelope of the 64 KB pool's metric elements, repeated up to `mib` MiB. */
function largeBody(collectorId: string, mib: number): Buffer {
  const elements = bodyPool64k().flatMap((b) => b.elements.map((e) => e.json));
  const parts: string[] = [];
  let size = 0;
  for (let i = 0; size < mib * 1024 * 1024 - 64 * 1024; i++) {
    const e = elements[i % elements.length]!;
    parts.push(e);
    size += e.length + 1;
  }
  return Buffer.from(`{"collector_id":"${collectorId}","version":"3.0.0","metrics":[${parts.join(',')}]}`);
}

interface LargeSide {
  sent: number;
  accepted: number;
  failed: Record<string, number>;
  /** Seconds from the request's first byte to its answer. */
  seconds: number[];
}

/**
 * One collector sending large pushes back to back on `connections` connections (each a push, then
 * the next once answered) until `stop()`; every push has its own Idempotency-Key.
 */
function largeSender(port: number, collector: BenchCollector, body: Buffer, connections: number) {
  const side: LargeSide = { sent: 0, accepted: 0, failed: {}, seconds: [] };
  let stopping = false;
  let seq = 0;
  const conns = Array.from({ length: connections }, () => new HttpConnection('127.0.0.1', port));
  const loops = conns.map(
    (conn) =>
      new Promise<void>((resolve) => {
        const next = () => {
          if (stopping) return resolve();
          const head =
            `POST /api/v1/metrics/push HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${collector.token}\r\n` +
            `X-Collector-ID: ${collector.id}\r\nContent-Type: application/json\r\nIdempotency-Key: large-${Date.now()}-${++seq}\r\n` +
            `Content-Length: ${body.length}\r\n\r\n`;
          const started = performance.now();
          side.sent++;
          conn.request(head, body, (err, answer) => {
            const status = err ? ((err as NodeJS.ErrnoException).code ?? 'socket error') : String(answer!.status);
            if (status === '200') {
              side.accepted++;
              side.seconds.push((performance.now() - started) / 1000);
            } else side.failed[status] = (side.failed[status] ?? 0) + 1;
            // A refusal (503 while the budget is full, 429) is retried after a short pause, as a collector would.
            if (status !== '200') setTimeout(next, 250);
            else next();
          });
        };
        next();
      }),
  );
  return {
    side,
    async stop() {
      stopping = true;
      await Promise.all(loops);
      conns.forEach((c) => c.close());
    },
  };
}

interface Phase {
  p50: number;
  p99: number;
  max: number;
  errors: number;
  errorsByStatus: Record<string, number>;
  large?: LargeSide;
}

const median = (xs: number[]) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]! : NaN);

/**
 * large-pushes: what one collector sending very large pushes does to everyone else on the edge
 * (no writer; each phase's queue is emptied after it). 300 collectors push 2 KB bodies at 1,000/s,
 * open loop, first alone, then while one more collector sends 16 MiB pushes (64 MiB full) back to
 * back on 2 connections. Figures: the small pushes' ack latency in both phases, their errors, and
 * the large pushes accepted and how long each took.
 */
export const largePushes: Scenario = {
  name: 'large-pushes',
  goal: 'One collector sending 16 MiB (64 MiB full) pushes back to back on 2 connections while 300 others push 2 KB at 1,000/s (the edge alone): the small pushes’ ack latency p99 and max with and without it, errors, large pushes accepted.',
  figures: [
    { key: 'small_p99_alone_ms', label: 'small pushes alone: ack latency p99', unit: 'ms', better: 'lower' },
    { key: 'small_p99_ms', label: 'small pushes beside the large ones: ack latency p99', unit: 'ms', better: 'lower' },
    { key: 'small_max_alone_ms', label: 'small pushes alone: ack latency max', unit: 'ms', better: 'lower' },
    { key: 'small_max_ms', label: 'small pushes beside the large ones: ack latency max', unit: 'ms', better: 'lower' },
    {
      key: 'small_errors',
      label: 'small pushes beside the large ones: failed or unsent',
      unit: 'req',
      better: 'lower',
      target: '0',
    },
    { key: 'large_accepted', label: 'large pushes accepted (200)', unit: 'push', better: 'higher' },
    { key: 'large_p50_s', label: 'large push: request sent → 200, median', unit: 's', better: 'lower' },
  ],
  fullOnly: true,
  unavailable: pipelineMissing,
  async setup(ctx) {
    await benchCollectors(ctx, FLEET + 1);
    await ctx.stack.stopService('writer');
    await startPipeline(ctx, {}, undefined, { writer: false });
  },
  async run(ctx: ScenarioContext): Promise<RunOutput> {
    const all = await benchCollectors(ctx, FLEET + 1);
    const collectors = all.slice(0, FLEET);
    const heavy = all[FLEET]!;
    const edge = await startPipeline(ctx, {}, undefined, { writer: false });
    const mib = ctx.mode === 'full' ? 64 : 16;
    const body = largeBody(heavy.id, mib);
    const durationMs = ctx.mode === 'full' ? 20_000 : 10_000;
    const redis = new Redis(ctx.stack.redis.url, { maxRetriesPerRequest: 3 });
    const dropQueue = () => unlinkMatching(redis, `${PUSH_QUEUE}:*`);
    try {
      await dropQueue();
      const phase = async (withLarge: boolean): Promise<Phase> => {
        const target = { host: '127.0.0.1', port: edge.port, collectors, bodies: bodyPool2k(), acks: new AckLog() };
        const conns = await openConnections(target, FLEET);
        const req = pushRequests(target);
        const sender = withLarge ? largeSender(edge.port, heavy, body, 2) : undefined;
        const name = withLarge ? `beside ${mib} MiB pushes` : 'alone';
        const r = await runOpenLoop({
          connections: conns,
          make: req.make,
          accept: req.accept,
          ratePerS: RATE,
          durationMs,
          onTick: (s) =>
            ctx.progress.update(
              `${ctx.label}: 2 KB pushes at ${RATE}/s ${name}: ${(s.elapsedMs / 1000).toFixed(0)} s, ${s.ok} acked, ${s.errors} errors` +
                (sender ? `; large: ${sender.side.accepted}/${sender.side.sent}` : ''),
            ),
        });
        await sender?.stop();
        conns.forEach((c) => c.close());
        const s = r.recorder.summary();
        const errorsByStatus = Object.fromEntries([...r.recorder.errorsByStatus].map(([k, n]) => [`small ${name} ${k}`, n]));
        if (r.unsent) errorsByStatus[`small ${name} unsent`] = r.unsent;
        r.recorder.destroy();
        ctx.progress.update(`${ctx.label}: emptying the queue`);
        await dropQueue();
        await compactAof(redis);
        return {
          p50: s.p50,
          p99: s.p99,
          max: s.max,
          errors: r.errors + r.unsent,
          errorsByStatus,
          ...(sender ? { large: sender.side } : {}),
        };
      };
      const alone = await phase(false);
      const beside = await phase(true);
      const large = beside.large!;
      const v = (value: number): Measurement => ({ value });
      return {
        figures: {
          small_p99_alone_ms: v(alone.p99),
          small_p99_ms: v(beside.p99),
          small_max_alone_ms: v(alone.max),
          small_max_ms: v(beside.max),
          small_errors: v(beside.errors),
          large_accepted: v(large.accepted),
          ...(large.seconds.length ? { large_p50_s: v(median(large.seconds)) } : {}),
        },
        errors: { ...alone.errorsByStatus, ...beside.errorsByStatus },
        notes: [
          `${FLEET} collectors, 2 KB bodies (1 in 4 gzip) at ${RATE}/s open loop for ${durationMs / 1000} s per phase; no writer`,
          `large: ${(body.length / 1048576).toFixed(1)} MiB bodies (${mib} MiB target) from one more collector on 2 connections, back to back; ` +
            `${large.sent} sent, ${large.accepted} accepted, refused: ${JSON.stringify(large.failed)}`,
          `small alone: p50 ${alone.p50.toFixed(1)} ms, ${alone.errors} errors; beside: p50 ${beside.p50.toFixed(1)} ms`,
        ],
        failures: [],
      };
    } finally {
      await dropQueue().catch(() => undefined);
      redis.disconnect();
    }
  },
  async teardown(ctx) {
    await ctx.stack.stopService('ingest-edge');
  },
};
