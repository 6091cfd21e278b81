import { existsSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { freePort } from '@pga/local-stack';
import { summarize } from '../../harness/latency-recorder';
import type { Measurement, RunOutput } from '../../harness/model';
import { startCpuWindow } from '../../harness/proc';
import { aofRewrites, aofRewritesNote } from '../../harness/redis-state';
import type { Scenario, ScenarioContext } from '../../harness/scenario';
import { REPO_ROOT } from '../../harness/stack';
import { runClosedLoop } from '../../load/drivers';
import { auditFailures, auditPushes } from '../shared/audit';
import {
  campaignFigureDefs,
  campaignOutput,
  fixedRateFigureDefs,
  FULL_FRACTIONS,
  QUICK_FRACTIONS,
} from '../shared/campaign-figures';
import { benchCollectors } from '../shared/collectors';
import { AckLog, openConnections, pushRequests, runPushCampaign, type PushTarget } from '../shared/push-campaign';
import { bodyPool2k, bodyPool64k } from '../shared/workload';
import { CommitCounter, DRAIN_POLL_MS, waitCommitted, writerCounters } from './committed-pushes';
import { FRESHNESS_POLL_MS, FreshnessProbe } from './freshness-probe';

const EDGE = 'ingest-edge';
const WRITER = 'writer';
const FLEET = 1000;
/** Processes whose CPU per committed push is reported (closed loop until its queue drained). */
const PER_PUSH_PROCESSES = [EDGE, WRITER, 'postgres', 'redis'] as const;
/** The open-loop step at half of the run's sustained (acknowledged and committed) rate. */
const SUSTAINED_HALF = 'open 50 % of sustained';

/** PostgreSQL's current WAL insert position. */
async function walLsn(databaseUrl: string): Promise<string> {
  const c = new pg.Client({ connectionString: databaseUrl, application_name: 'bench-wal' });
  await c.connect();
  try {
    return (await c.query<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l')).rows[0]!.l;
  } finally {
    await c.end();
  }
}

/** WAL bytes written since `lsn`. */
async function walBytesSince(databaseUrl: string, lsn: string): Promise<number> {
  const c = new pg.Client({ connectionString: databaseUrl, application_name: 'bench-wal' });
  await c.connect();
  try {
    return (await c.query<{ b: number }>('SELECT (pg_current_wal_lsn() - $1::pg_lsn)::float8 AS b', [lsn])).rows[0]!.b;
  } finally {
    await c.end();
  }
}

/** Starts the real writer and edge (as `npm start` would) against the bench stack. */
export async function startPipeline(
  ctx: ScenarioContext,
  edgeEnv: Record<string, string> = {},
  fileLimit?: number,
  { writer = true }: { writer?: boolean } = {},
) {
  const base = ctx.stack.baseEnv();
  if (writer && !ctx.stack.services.has(WRITER)) {
    const port = await freePort();
    await ctx.stack.startService(WRITER, {
      entry: 'services/writer/src/main.ts',
      port,
      env: { ...base, WRITER_PORT: String(port), WRITER_HOST: '127.0.0.1' },
    });
  }
  if (!ctx.stack.services.has(EDGE)) {
    const port = await freePort();
    await ctx.stack.startService(EDGE, {
      entry: 'services/ingest-edge/src/main.ts',
      port,
      env: { ...base, INGEST_PORT: String(port), INGEST_HOST: '127.0.0.1', ...edgeEnv },
      // Every edge process ready before any load: one still starting would miss its share of the fleet's connections.
      healthPath: '/readyz',
      ...(fileLimit ? { fileLimit } : {}),
    });
  }
  return ctx.stack.services.get(EDGE)!;
}

/** The edge and writer exist beyond the foundation's placeholders. */
export function pipelineMissing(): string | undefined {
  const edge = existsSync(path.join(REPO_ROOT, 'services/ingest-edge/src/create-edge.ts'));
  const writer = existsSync(path.join(REPO_ROOT, 'services/writer/src/create-writer.ts'));
  if (!edge || !writer)
    return `needs the ingest edge and the writer (${!edge ? 'edge ' : ''}${!writer ? 'writer ' : ''}not built yet)`;
  return undefined;
}

/**
 * ingest-e2e: 1,000 collectors with their own tokens pushing 2 KB envelopes (1 in 4 gzip) through
 * the real edge → Redis → writer → PostgreSQL; then 64 KB envelopes; then the audit.
 */
export const ingestE2e: Scenario = {
  name: 'ingest-e2e',
  goal: '1,000 collectors push 2 KB envelopes through the real edge → Redis → writer → PostgreSQL: max, latency under fixed arrival rates, freshness, 64 KB pushes, and the loss/duplicate audit.',
  figures: [
    // No targets on these: issue 4's "≥ 20,000/s" and "p99 ≤ 10 ms at 10,000/s" are the edge's
    // alone (ingest-edge), not the whole pipeline's.
    ...campaignFigureDefs(),
    ...fixedRateFigureDefs(10_000, { note: ' (full suite)' }),
    {
      key: 'sustained_pushes_per_s',
      label: 'sustained: acknowledged and committed pushes/s (closed loop until the queue drained)',
      unit: 'push/s',
      better: 'higher',
      target: '≥ 0.5 × copy-limit, ≥ 2 × design-baseline',
    },
    { key: 'committed_rows_per_s', label: 'sustained: committed rows/s', unit: 'row/s', better: 'higher' },
    { key: 'committed_mb_per_s', label: 'sustained: committed push MB/s', unit: 'MB/s', better: 'higher' },
    { key: 'drain_s', label: 'queue drain after the closed loop', unit: 's', better: 'lower' },
    { key: 'pushes_per_job', label: 'closed loop: pushes packed per queue job (mean)', unit: 'push', better: 'none' },
    { key: 'pushes_per_tx', label: 'closed loop: pushes per writer transaction (mean)', unit: 'push', better: 'none' },
    ...PER_PUSH_PROCESSES.map((name) => ({
      key: `cpu_us_per_push_${name}`,
      label: `CPU per committed push, closed loop until drained: ${name}`,
      unit: 'µs',
      better: 'lower' as const,
    })),
    { key: 'wal_bytes_per_push', label: 'WAL per committed push, closed loop until drained', unit: 'B', better: 'lower' },
    { key: 'freshness_50_p50_ms', label: 'freshness (200 → visible) at 50 % of max: p50', unit: 'ms', better: 'lower' },
    {
      key: 'freshness_50_p99_ms',
      label: 'freshness (200 → visible) at 50 % of max: p99',
      unit: 'ms',
      better: 'lower',
      target: '≤ 1,000 ms',
    },
    { key: 'freshness_max_p99_ms', label: 'freshness at 100 % of max: p99', unit: 'ms', better: 'lower' },
    {
      key: 'sustained_half_rate_per_s',
      label: 'open loop at 50 % of the sustained rate: offered pushes/s',
      unit: 'push/s',
      better: 'none',
    },
    {
      key: 'sustained_half_p99_ms',
      label: 'open loop at 50 % of the sustained rate: ack latency p99',
      unit: 'ms',
      better: 'lower',
    },
    {
      key: 'freshness_sustained_half_p50_ms',
      label: 'freshness at 50 % of the sustained rate: p50',
      unit: 'ms',
      better: 'lower',
    },
    {
      key: 'freshness_sustained_half_p99_ms',
      label: 'freshness at 50 % of the sustained rate: p99',
      unit: 'ms',
      better: 'lower',
      target: '≤ 1,000 ms',
    },
    { key: 'k64_acked_per_s', label: '64 KB pushes, closed loop: acknowledged/s', unit: 'push/s', better: 'higher' },
    { key: 'k64_mb_per_s', label: '64 KB pushes: committed push MB/s', unit: 'MB/s', better: 'higher' },
    { key: 'k64_p99_ms', label: '64 KB pushes: ack latency p99 (service time)', unit: 'ms', better: 'lower' },
    {
      key: 'freshness_unseen',
      label: 'freshness samples never visible in PostgreSQL (all phases)',
      unit: 'push',
      better: 'lower',
      target: '0',
    },
    { key: 'lost', label: 'audit: acknowledged pushes lost or partial', unit: 'push', better: 'lower', target: '0' },
    { key: 'duplicated', label: 'audit: acknowledged pushes duplicated', unit: 'push', better: 'lower', target: '0' },
  ],
  unavailable: pipelineMissing,
  async setup(ctx) {
    await benchCollectors(ctx, FLEET);
    await startPipeline(ctx);
  },
  async run(ctx) {
    const collectors = await benchCollectors(ctx, FLEET);
    const edge = await startPipeline(ctx);
    const db = ctx.stack.databaseUrl;
    const writerUrl = ctx.stack.services.get(WRITER)!.url;
    // Nothing is in flight yet: the writer's counter is tied to the (just emptied) ledger here.
    const commits = await CommitCounter.start(db, writerUrl);
    const acks = new AckLog();
    const probe = new FreshnessProbe(db);
    acks.onAck = (id, at) => probe.onAck(id, at);
    await probe.start();
    const bodies = bodyPool2k();
    const rowsPerPush = bodies[0]!.elements.length;
    const meanBytes = bodies.reduce((a, b) => a + b.json.length, 0) / bodies.length;
    const target: PushTarget = { host: '127.0.0.1', port: edge.port, collectors, bodies, acks };
    /** Phases after which the queue did not drain (no progress for 20 s): each fails the run. */
    const undrained: string[] = [];
    const drain = async (what: string) => {
      const done = await waitCommitted(commits, acks.expectedRows.size, (n) =>
        ctx.progress.update(`${ctx.label}: draining after ${what}: ${n}/${acks.expectedRows.size} committed`),
      );
      if (done === undefined) undrained.push(what);
      return done;
    };
    const rewritesBefore = await aofRewrites(ctx.stack.redis.url);
    let cpu: ReturnType<typeof startCpuWindow> | undefined;
    let components: Record<string, number> | undefined;
    let sustained: { value: number; rows: number; mb: number; drainS: number } | undefined;
    let committedBefore = 0;
    let countersBefore: Awaited<ReturnType<typeof writerCounters>> | undefined;
    let packing: { perJob: number; perTx: number } | undefined;
    // CPU and WAL from the closed loop's start until its queue drained, per push committed in it:
    // what each process spends on a push at saturation, whatever the machine's other load lets
    // the pipeline reach (throughput moves with it; CPU per push much less).
    let perPushWindow: { cpu: ReturnType<typeof startCpuWindow>; t0: number; wal: string; pushes: number } | undefined;
    let perPush: Record<string, number> | undefined;
    const fractions = ctx.mode === 'full' ? FULL_FRACTIONS : QUICK_FRACTIONS;
    const phases = await runPushCampaign({
      ctx,
      target,
      closedConcurrency: ctx.mode === 'full' ? 512 : 256,
      closedMs: ctx.mode === 'full' ? 15_000 : 3_000,
      fractions,
      // Issue 4: p99 ≤ 10 ms at 10,000 pushes/s (half of its 20,000/s target), full suite only.
      absoluteRates: ctx.mode === 'full' ? [10_000] : [],
      stepMs: ctx.mode === 'full' ? 10_000 : 2_000,
      openConnections: collectors.length,
      // Half of what the pipeline sustains end to end. The fraction steps are of the closed loop's
      // accept rate, which the queue lets run ahead of the writer: its "50 %" is a heavier load
      // for the writer than half of the pipeline's maximum.
      derivedSteps: () => (sustained ? [{ name: SUSTAINED_HALF, rate: sustained.value / 2 }] : []),
      beforePhase: async (name, ratePerS) => {
        // Freshness samples are attributed to the phase whose ack they measured.
        probe.setPhase(name, ratePerS);
        // The closed loop's CPU and packing, from after the warm-up (and its drain) on.
        if (name === 'closed-loop') {
          countersBefore = await writerCounters(writerUrl);
          const wal = await walLsn(db);
          const pushes = await commits.inLedger();
          perPushWindow = { cpu: startCpuWindow(() => ctx.stack.roots()), t0: Date.now(), wal, pushes };
          cpu = startCpuWindow(() => ctx.stack.roots());
        }
      },
      afterPhase: async (phase) => {
        if (phase.name === 'closed-loop') {
          components = cpu?.stop();
          const done = await drain('the closed loop');
          // Stopped before anything else queries PostgreSQL.
          const perPushCores = perPushWindow?.cpu.stop();
          const perPushSeconds = perPushWindow ? (Date.now() - perPushWindow.t0) / 1000 : NaN;
          const r = phase.result;
          const pushes = (await commits.inLedger()) - committedBefore;
          if (perPushWindow && perPushCores && done !== undefined) {
            const cores = perPushCores;
            const seconds = perPushSeconds;
            const inWindow = (await commits.inLedger()) - perPushWindow.pushes;
            perPush = Object.fromEntries(
              PER_PUSH_PROCESSES.map((name) => [`cpu_us_per_push_${name}`, ((cores[name] ?? NaN) * seconds * 1e6) / inWindow]),
            );
            perPush.wal_bytes_per_push = (await walBytesSince(db, perPushWindow.wal)) / inWindow;
          }
          const counters = await writerCounters(writerUrl);
          if (countersBefore) {
            const stored = counters.pushes - countersBefore.pushes;
            packing = {
              perJob: stored / Math.max(1, counters.jobs - countersBefore.jobs),
              perTx: stored / Math.max(1, counters.batches - countersBefore.batches),
            };
          }
          if (done !== undefined) {
            const seconds = (done - r.startedAtMs) / 1000;
            sustained = {
              value: pushes / seconds,
              rows: (pushes * rowsPerPush) / seconds,
              mb: (pushes * meanBytes) / seconds / 1e6,
              drainS: (done - (r.startedAtMs + r.elapsedMs)) / 1000,
            };
          }
        } else {
          // Phases must not overlap: the next one starts with an empty queue.
          await drain(phase.name);
          committedBefore = await commits.inLedger();
        }
      },
    });

    // 64 KB envelopes, closed loop, then drained: MB/s of large pushes.
    const big: PushTarget = { ...target, bodies: bodyPool64k() };
    const conns = await openConnections(big, 32);
    const req = pushRequests(big, 3);
    probe.setPhase('64k');
    const before64 = await commits.inLedger();
    const acked64Before = acks.expectedRows.size;
    const k64 = await runClosedLoop({
      connections: conns,
      make: req.make,
      accept: req.accept,
      durationMs: ctx.mode === 'full' ? 10_000 : 2_000,
      onTick: (s) =>
        ctx.progress.update(`${ctx.label}: 64 KB closed loop ×32 ${(s.elapsedMs / 1000).toFixed(0)} s, ${s.ok} acked`),
    });
    conns.forEach((c) => c.close());
    const done64 = await drain('the 64 KB pushes');
    const bigBytes = big.bodies.reduce((a, b) => a + b.json.length, 0) / big.bodies.length;
    const k64Committed = (await commits.inLedger()) - before64;
    const k64Summary = k64.recorder.summary();

    await probe.stop();
    ctx.progress.update(`${ctx.label}: auditing ${acks.expectedRows.size} acknowledged pushes`);
    const audit = await auditPushes(db, acks);
    const out = campaignOutput(phases);
    const fresh = (phase: string) => {
      const rec = probe.recorder(phase);
      return rec ? summarize(rec.total) : { p50: NaN, p99: NaN };
    };
    const f50 = fresh('open 50 %');
    const f100 = fresh('open 100 %');
    const fHalf = fresh(SUSTAINED_HALF);
    const unseen = probe.unseen();
    const unseenTotal = [...unseen.values()].reduce((a, b) => a + b, 0);
    const samples = ['warm-up', ...phases.map((p) => p.name), '64k']
      .map((name) => [name, probe.recorder(name)?.total.totalCount ?? 0, unseen.get(name) ?? 0] as const)
      .filter(([, seen, missing]) => seen + missing > 0)
      .map(([name, seen, missing]) => `${name} ${seen + missing}${missing ? ` (${missing} never visible)` : ''}`);
    const halfStep = phases.find((p) => p.name === SUSTAINED_HALF);
    probe.destroy();
    const m = (value: number, g = phases[0]!.result.generator): Measurement => ({ value, generator: g });
    const genOf = (name: string) => phases.find((p) => p.name === name)?.result.generator;
    const output: RunOutput = {
      ...out,
      figures: {
        ...out.figures,
        ...(sustained
          ? {
              sustained_pushes_per_s: m(sustained.value),
              committed_rows_per_s: m(sustained.rows),
              committed_mb_per_s: m(sustained.mb),
              drain_s: { value: sustained.drainS },
            }
          : {}),
        ...(packing ? { pushes_per_job: { value: packing.perJob }, pushes_per_tx: { value: packing.perTx } } : {}),
        ...(perPush ? Object.fromEntries(Object.entries(perPush).map(([k, v]) => [k, { value: v }])) : {}),
        freshness_50_p50_ms: m(f50.p50, genOf('open 50 %')),
        freshness_50_p99_ms: m(f50.p99, genOf('open 50 %')),
        freshness_max_p99_ms: m(f100.p99, genOf('open 100 %')),
        ...(halfStep
          ? {
              sustained_half_rate_per_s: m(halfStep.ratePerS!, halfStep.result.generator),
              sustained_half_p99_ms: m(halfStep.result.recorder.summary().p99, halfStep.result.generator),
              freshness_sustained_half_p50_ms: m(fHalf.p50, halfStep.result.generator),
              freshness_sustained_half_p99_ms: m(fHalf.p99, halfStep.result.generator),
            }
          : {}),
        k64_acked_per_s: m(k64.okPerS, k64.generator),
        ...(done64 !== undefined
          ? { k64_mb_per_s: m((k64Committed * bigBytes) / ((done64 - k64.startedAtMs) / 1000) / 1e6, k64.generator) }
          : {}),
        k64_p99_ms: m(k64Summary.p99, k64.generator),
        freshness_unseen: { value: unseenTotal },
        lost: { value: audit.lost + audit.partial },
        duplicated: { value: audit.duplicated + audit.duplicateAcks },
      },
      ...(components ? { components } : {}),
      notes: [
        `${FLEET} collectors, each with its own token; ${rowsPerPush} rows per 2 KB push (mean ${Math.round(meanBytes)} B), 1 in 4 gzip; 64 KB pushes ${Math.round(bigBytes / 1024)} KiB`,
        `freshness: about 100 acks/s sampled at random across each second (each ack with probability 100 ÷ the step's rate; closed loops ≤ 200/s at a rate estimated from the previous second), polled every ${FRESHNESS_POLL_MS} ms in ingest_ledger (same transaction as the COPY)`,
        `freshness samples: ${samples.join(', ') || 'none'}; never visible: ${unseenTotal}`,
        `drains polled every ${DRAIN_POLL_MS} ms on the writer's pushes-stored counter, then verified in ingest_ledger: the sustained figures' end is known to within ${DRAIN_POLL_MS} ms`,
        `audit: ${audit.acknowledged} acknowledged, ${audit.lost} lost, ${audit.partial} partial, ${audit.duplicated} duplicated, ${audit.duplicateAcks} duplicate acks, ${audit.unacknowledged} stored but never acknowledged`,
        ...aofRewritesNote(rewritesBefore, await aofRewrites(ctx.stack.redis.url)),
      ],
      failures: [
        ...undrained.map((what) => `the queue did not drain after ${what} (no progress for 20 s)`),
        ...auditFailures(audit),
      ],
    };
    k64.recorder.destroy();
    if (!sustained) output.notes!.push('the queue did not drain after the closed loop: sustained figures missing');
    if (acks.expectedRows.size - acked64Before === 0) output.notes!.push('no 64 KB push was acknowledged');
    return output;
  },
  async teardown(ctx) {
    await ctx.stack.stopService(EDGE);
    await ctx.stack.stopService(WRITER);
  },
};
