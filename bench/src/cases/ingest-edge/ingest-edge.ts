import { Redis } from 'ioredis';
import type { Measurement, RunOutput } from '../../harness/model';
import { startCpuWindow } from '../../harness/proc';
import { aofState, compactAof, PUSH_QUEUE, unlinkMatching } from '../../harness/redis-state';
import type { Scenario, ScenarioContext } from '../../harness/scenario';
import { campaignFigureDefs, campaignOutput, fixedRateFigureDefs } from '../shared/campaign-figures';
import { benchCollectors } from '../shared/collectors';
import { AckLog, runPushCampaign, type PushTarget } from '../shared/push-campaign';
import { bodyPool2k } from '../shared/workload';
import { histogramQuantile, lagBeyondSampling, sampleValue, scrapeMetrics } from '../shared/prom-text';
import { pipelineMissing, startPipeline } from '../ingest-e2e/ingest-e2e';

const EDGE = 'ingest-edge';
const FLEET = 1000;
/** The step whose edge event-loop lag is reported. */
const LAG_STEP = 'open 50 %';

/** What the audit read back from the queue over a run. */
interface QueueAudit {
  /** Distinct push ids found in queued jobs. */
  ids: Set<string>;
  /** Pushes found in queued jobs, repeats included. */
  pushes: number;
  /** Push ids found more than once (in one job, in two jobs, or in the queues of two phases). */
  repeated: number;
  jobs: number;
}

/**
 * The push ids held in the push queue's waiting jobs (what the writer would store), repeats kept:
 * the audit of an edge-only run, where "acknowledged" must mean "in Redis" and only once.
 */
async function queuedPushIds(redis: Redis): Promise<{ ids: string[]; jobs: number }> {
  const jobIds = await redis.lrange(`${PUSH_QUEUE}:wait`, 0, -1);
  const ids: string[] = [];
  for (let i = 0; i < jobIds.length; i += 500) {
    const pipe = redis.pipeline();
    for (const id of jobIds.slice(i, i + 500)) pipe.hget(`${PUSH_QUEUE}:${id}`, 'data');
    for (const [err, data] of (await pipe.exec()) ?? []) {
      if (err || typeof data !== 'string') continue;
      const job = JSON.parse(data) as { pushes?: { push_id: string }[] };
      for (const p of job.pushes ?? []) ids.push(p.push_id.toLowerCase());
    }
  }
  return { ids, jobs: jobIds.length };
}

/** Empties the push queue (no writer runs here: nothing else may ever store these pushes). */
const dropQueue = (redis: Redis) => unlinkMatching(redis, `${PUSH_QUEUE}:*`);

/**
 * Between two phases (not measured): reads the push ids of the queued jobs into `seen` for the audit,
 * empties the queue and compacts the AOF. With no writer, the queue would otherwise grow through the
 * whole run (~800,000 pushes, 2 GB by its last phase), and each AOF rewrite of that much forks a
 * 2 GB Redis (59–102 ms with Redis stopped, in the latency monitor) and keeps a core busy in the child
 * for seconds: measured in the 10,000/s step, p99 8–12 ms per second until a rewrite began, 80–200 ms
 * after. A writer that keeps up leaves Redis near empty; this leaves each phase the queue its own
 * pushes make (≤ 15 s of them), rewrites included. The idempotency markers of the run's earlier
 * phases stay (24 h TTL), as they would behind a writer.
 */
async function auditAndEmptyQueue(redis: Redis, seen: QueueAudit): Promise<void> {
  const queued = await queuedPushIds(redis);
  for (const id of queued.ids) {
    if (seen.ids.has(id)) seen.repeated++;
    else seen.ids.add(id);
  }
  seen.pushes += queued.ids.length;
  seen.jobs += queued.jobs;
  await dropQueue(redis);
  await compactAof(redis);
}

const startEdge = (ctx: ScenarioContext) => startPipeline(ctx, {}, undefined, { writer: false });

/** The edge's event-loop lag p99 and max (seconds) in its /metrics; reading them restarts them. */
async function scrapeEdgeLag(url: string): Promise<{ p99?: number; max?: number }> {
  const text = await scrapeMetrics(url);
  return {
    p99: sampleValue(text, 'edge_nodejs_eventloop_lag_p99_seconds'),
    max: sampleValue(text, 'edge_nodejs_eventloop_lag_max_seconds'),
  };
}

/**
 * ingest-edge: the edge alone (issue 4 §6) — edge processes + Redis, no writer, tokens cached after
 * the warm-up. Same 1,000-collector fleet and 2 KB bodies (1 in 4 gzip) as ingest-e2e. A 200 means
 * the push is in Redis, so the audit reads the queue back.
 */
export const ingestEdge: Scenario = {
  name: 'ingest-edge',
  goal: 'The ingest edge alone (edge processes + Redis, no writer): accepted 2 KB pushes/s with tokens cached, ack latency at half of that and at 10,000/s, and every 200 found in the queue once.',
  figures: [
    ...campaignFigureDefs(undefined, '≥ 20,000 (issue 4)'),
    ...fixedRateFigureDefs(10_000, { p99Target: '≤ 10 ms (issue 4)' }),
    { key: 'edge_cpu_cores', label: 'edge CPU in the closed loop (all processes)', unit: 'cores', better: 'lower' },
    { key: 'edge_us_per_push', label: 'edge CPU per accepted push (closed loop)', unit: 'µs', better: 'lower' },
    {
      key: 'edge_lag_beyond_50_p99_ms',
      label: 'open loop at 50 %: the edge’s event-loop lag p99, beyond its 10 ms sampling interval (mean over its processes)',
      unit: 'ms',
      better: 'lower',
    },
    {
      key: 'edge_lag_beyond_50_max_ms',
      label: 'open loop at 50 %: the edge’s event-loop lag max, beyond its 10 ms sampling interval (max over its processes)',
      unit: 'ms',
      better: 'lower',
    },
    {
      key: 'enqueue_p50_ms',
      label: 'inside the edge: push ready → Redis confirmed, p50 (bucket bound, whole run)',
      unit: 'ms',
      better: 'lower',
    },
    {
      key: 'enqueue_p99_ms',
      label: 'inside the edge: push ready → Redis confirmed, p99 (bucket bound)',
      unit: 'ms',
      better: 'lower',
    },
    { key: 'pushes_per_job', label: 'pushes packed per queue job (mean)', unit: 'push', better: 'none' },
    { key: 'lost', label: 'audit: acknowledged pushes not in the queue', unit: 'push', better: 'lower', target: '0' },
    {
      key: 'duplicated',
      label: 'audit: push ids queued more than once, plus duplicate acks',
      unit: 'push',
      better: 'lower',
      target: '0',
    },
  ],
  unavailable: pipelineMissing,
  async setup(ctx) {
    await benchCollectors(ctx, FLEET);
    // No writer may consume this scenario's pushes (it would also take the machine's CPU).
    await ctx.stack.stopService('writer');
    await startEdge(ctx);
  },
  async run(ctx) {
    const collectors = await benchCollectors(ctx, FLEET);
    const edge = await startEdge(ctx);
    const redis = new Redis(ctx.stack.redis.url, { lazyConnect: true, maxRetriesPerRequest: 3 });
    await redis.connect();
    try {
      await dropQueue(redis);
      // Redis's own latency monitor: stalls of ≥ 5 ms inside Redis (e.g. an AOF write waiting for
      // the background fsync), to tell them apart from the edge's own.
      await redis.config('SET', 'latency-monitor-threshold', '5');
      await redis.latency('RESET');
      const seen: QueueAudit = { ids: new Set(), pushes: 0, repeated: 0, jobs: 0 };
      /** AOF rewrites that happened while a phase ran (not the compactions between phases). */
      let rewritesInPhases = 0;
      let rewritesAtStart = (await aofState(redis)).rewrites;
      const acks = new AckLog();
      const target: PushTarget = { host: '127.0.0.1', port: edge.port, collectors, bodies: bodyPool2k(), acks };
      let cpu: ReturnType<typeof startCpuWindow> | undefined;
      let edgeLag: { p99?: number; max?: number } = {};
      let components: Record<string, number> | undefined;
      const phases = await runPushCampaign({
        ctx,
        target,
        closedConcurrency: ctx.mode === 'full' ? 512 : 256,
        closedMs: ctx.mode === 'full' ? 15_000 : 3_000,
        fractions: ctx.mode === 'full' ? [0.25, 0.5, 0.75, 1.0] : [0.5],
        absoluteRates: [10_000],
        stepMs: ctx.mode === 'full' ? 10_000 : 3_000,
        openConnections: collectors.length,
        beforePhase: async (name) => {
          // CPU of the closed loop alone: after the warm-up (which verifies every token once) and
          // its audit, AOF rewrite and wait for an idle Redis.
          if (name === 'closed-loop') cpu = startCpuWindow(() => ctx.stack.roots());
          // The edge's lag percentiles restart at every scrape: scraped right before the step (its
          // connections open, the previous phase's audit done) and read right after it.
          if (name === LAG_STEP) await scrapeEdgeLag(edge.url);
        },
        afterPhase: async (phase) => {
          if (phase.name !== 'warm-up') rewritesInPhases += (await aofState(redis)).rewrites - rewritesAtStart;
          if (phase.name === LAG_STEP) edgeLag = await scrapeEdgeLag(edge.url);
          if (phase.name === 'closed-loop') components = cpu?.stop();
          ctx.progress.update(`${ctx.label}: auditing and emptying the queue after ${phase.name}`);
          await auditAndEmptyQueue(redis, seen);
          rewritesAtStart = (await aofState(redis)).rewrites;
        },
      });
      const metricsText = await scrapeMetrics(edge.url);
      const enqueue = (p: number) => histogramQuantile(metricsText, 'edge_enqueue_latency_seconds', p);
      const redisStalls = (await redis.latency('LATEST')) as [string, number, number, number][];
      let lost = 0;
      for (const id of acks.expectedRows.keys()) if (!seen.ids.has(id)) lost++;
      let unacknowledged = 0;
      for (const id of seen.ids) if (!acks.expectedRows.has(id)) unacknowledged++;
      const duplicated = seen.repeated + acks.duplicatesAcked;
      const out = campaignOutput(phases);
      const closed = out.figures.max_acked_per_s!;
      const edgeCores = components?.[EDGE];
      const m = (value: number): Measurement => ({ value, generator: closed.generator! });
      const output: RunOutput = {
        ...out,
        figures: {
          ...out.figures,
          ...(edgeCores !== undefined
            ? { edge_cpu_cores: m(edgeCores), edge_us_per_push: m((edgeCores / closed.value) * 1e6) }
            : {}),
          ...(edgeLag.p99 !== undefined ? { edge_lag_beyond_50_p99_ms: { value: lagBeyondSampling(edgeLag.p99) } } : {}),
          ...(edgeLag.max !== undefined ? { edge_lag_beyond_50_max_ms: { value: lagBeyondSampling(edgeLag.max) } } : {}),
          ...(enqueue(0.5) !== undefined ? { enqueue_p50_ms: { value: enqueue(0.5)! * 1000 } } : {}),
          ...(enqueue(0.99) !== undefined ? { enqueue_p99_ms: { value: enqueue(0.99)! * 1000 } } : {}),
          pushes_per_job: { value: seen.pushes / Math.max(1, seen.jobs) },
          lost: { value: lost },
          duplicated: { value: duplicated },
        },
        ...(components ? { components } : {}),
        notes: [
          `${FLEET} collectors, each with its own token (verified once in the warm-up, cached after); 2 KB bodies, 1 in 4 gzip; no writer`,
          redisStalls.length
            ? `Redis latency monitor (≥ 5 ms inside Redis): ${redisStalls.map(([event, , last, max]) => `${event} max ${max} ms (last ${last} ms)`).join(', ')}`
            : 'Redis latency monitor: no stall of 5 ms or more inside Redis',
          `Redis AOF rewrites during the phases: ${rewritesInPhases} (between phases the queue is audited and emptied and the AOF compacted, as a writer that keeps up leaves Redis)`,
          `audit: ${acks.expectedRows.size} acknowledged, ${seen.pushes} pushes (${seen.ids.size} distinct ids) in ${seen.jobs} queued jobs; ` +
            `${lost} acknowledged but not queued, ${seen.repeated} ids queued more than once, ${acks.duplicatesAcked} duplicate acks, ${unacknowledged} queued but never acknowledged`,
        ],
        failures: [
          ...(lost > 0 ? [`audit: ${lost} acknowledged pushes not in the queue`] : []),
          ...(duplicated > 0
            ? [`audit: ${seen.repeated} push ids queued more than once, ${acks.duplicatesAcked} duplicate acks`]
            : []),
        ],
      };
      return output;
    } finally {
      await dropQueue(redis).catch(() => undefined);
      redis.disconnect();
    }
  },
  async teardown(ctx) {
    await ctx.stack.stopService(EDGE);
  },
};
