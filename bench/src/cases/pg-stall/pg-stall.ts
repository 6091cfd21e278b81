import os from 'node:os';
import { freePort } from '@pga/local-stack';
import type { TimelinePoint } from '../../harness/latency-recorder';
import { treePids } from '../../harness/proc';
import type { Measurement, RunOutput } from '../../harness/model';
import type { Scenario, ScenarioContext } from '../../harness/scenario';
import { runOpenLoop } from '../../load/drivers';
import { auditFailures, auditPushes } from '../shared/audit';
import { benchCollectors } from '../shared/collectors';
import { AckLog, openConnections, pushRequests } from '../shared/push-campaign';
import { bodyPool2k } from '../shared/workload';
import { CommitCounter, waitCommitted } from '../ingest-e2e/committed-pushes';
import { pipelineMissing, startPipeline } from '../ingest-e2e/ingest-e2e';

const BASELINE = 'design-baseline';

/** Freezes every PostgreSQL process (SIGSTOP) for `ms`: a database that stops answering, then resumes. */
async function freezePostgres(ctx: ScenarioContext, ms: number): Promise<void> {
  const pids = treePids(ctx.stack.pg.pid);
  for (const pid of pids) process.kill(pid, 'SIGSTOP');
  try {
    await new Promise((r) => setTimeout(r, ms));
  } finally {
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGCONT');
      } catch {
        // exited meanwhile
      }
    }
  }
}

interface SideResult {
  ackedDuringStall: number;
  p99: number;
  max: number;
  errors: number;
  errorsByStatus: Record<string, number>;
  timeline: TimelinePoint[];
}

async function side(ctx: ScenarioContext, port: number, acks: AckLog, name: string): Promise<SideResult> {
  const full = ctx.mode === 'full';
  const rate = 300;
  const stallAtMs = 2000;
  const stallMs = full ? 5000 : 2000;
  const durationMs = stallAtMs + stallMs + 2000;
  const collectors = await benchCollectors(ctx, 1000);
  const target = { host: '127.0.0.1', port, collectors, bodies: bodyPool2k(), acks };
  const conns = await openConnections(target, 300);
  const req = pushRequests(target);
  const freeze = new Promise<void>((resolve, reject) =>
    setTimeout(() => freezePostgres(ctx, stallMs).then(resolve, reject), stallAtMs),
  );
  const r = await runOpenLoop({
    connections: conns,
    make: req.make,
    accept: req.accept,
    ratePerS: rate,
    durationMs,
    drainMs: 10_000,
    onTick: (s) =>
      ctx.progress.update(
        `${ctx.label}: ${name} at ${rate}/s, PostgreSQL frozen at 2 s for ${stallMs / 1000} s: ${(s.elapsedMs / 1000).toFixed(0)} s, ${s.ok} acked, ${s.errors} errors`,
      ),
  });
  await freeze;
  conns.forEach((c) => c.close());
  const timeline = r.recorder.timeline();
  const inStall = timeline.filter((p) => p.t >= stallAtMs / 1000 && p.t < (stallAtMs + stallMs) / 1000);
  const s = r.recorder.summary();
  const out: SideResult = {
    ackedDuringStall: inStall.reduce((a, p) => a + p.ok, 0) / (stallMs / 1000),
    p99: s.p99,
    max: s.max,
    errors: r.errors + r.unsent,
    errorsByStatus: Object.fromEntries([...r.recorder.errorsByStatus].map(([k, v]) => [`${name} ${k}`, v])),
    timeline,
  };
  r.recorder.destroy();
  return out;
}

/**
 * pg-stall (issue 5 §7): PostgreSQL stops answering (every process SIGSTOPped) for 2 s (5 s full)
 * while 300 pushes/s arrive open-loop; first against the design baseline, then the pipeline. The
 * queue should keep acknowledging and lose nothing; the baseline cannot acknowledge what it cannot
 * commit.
 */
export const pgStall: Scenario = {
  name: 'pg-stall',
  goal: 'PostgreSQL frozen (SIGSTOP) for 2 s (5 s full) under 300 pushes/s: acknowledged/s during the stall, p99, errors and the audit, pipeline vs design baseline.',
  figures: [
    {
      key: 'e2e_acked_during_stall',
      label: 'pipeline: acknowledged/s while PostgreSQL is frozen',
      unit: 'push/s',
      better: 'higher',
      target: '≈ offered 300',
    },
    { key: 'baseline_acked_during_stall', label: 'design-baseline: acknowledged/s while frozen', unit: 'push/s', better: 'none' },
    { key: 'e2e_p99_ms', label: 'pipeline: ack latency p99 over the phase', unit: 'ms', better: 'lower' },
    { key: 'baseline_p99_ms', label: 'design-baseline: ack latency p99 over the phase', unit: 'ms', better: 'none' },
    { key: 'e2e_errors', label: 'pipeline: failed or unsent requests', unit: 'req', better: 'lower' },
    { key: 'baseline_errors', label: 'design-baseline: failed or unsent requests', unit: 'req', better: 'none' },
    { key: 'e2e_lost', label: 'pipeline audit: acknowledged pushes lost', unit: 'push', better: 'lower', target: '0' },
    {
      key: 'e2e_duplicated',
      label: 'pipeline audit: acknowledged pushes duplicated',
      unit: 'push',
      better: 'lower',
      target: '0',
    },
  ],
  fullOnly: true,
  unavailable: pipelineMissing,
  async setup(ctx) {
    await benchCollectors(ctx, 1000);
    await startPipeline(ctx);
    const port = await freePort();
    await ctx.stack.startService(BASELINE, {
      entry: 'bench/src/cases/design-baseline/server.ts',
      port,
      env: { ...ctx.stack.baseEnv(), PORT: String(port), POOL_MAX: String(4 * os.availableParallelism()) },
    });
  },
  async run(ctx): Promise<RunOutput> {
    const baseline = await side(ctx, ctx.stack.services.get(BASELINE)!.port, new AckLog(), 'design-baseline');
    const edge = await startPipeline(ctx);
    // Nothing is in flight for the writer yet (the baseline stores without it).
    const commits = await CommitCounter.start(ctx.stack.databaseUrl, ctx.stack.services.get('writer')?.url);
    const acks = new AckLog();
    const e2e = await side(ctx, edge.port, acks, 'pipeline');
    const drained = await waitCommitted(commits, acks.expectedRows.size, (n) =>
      ctx.progress.update(`${ctx.label}: draining ${n}/${acks.expectedRows.size}`),
    );
    const audit = await auditPushes(ctx.stack.databaseUrl, acks);
    const v = (value: number): Measurement => ({ value });
    return {
      figures: {
        e2e_acked_during_stall: v(e2e.ackedDuringStall),
        baseline_acked_during_stall: v(baseline.ackedDuringStall),
        e2e_p99_ms: v(e2e.p99),
        baseline_p99_ms: v(baseline.p99),
        e2e_errors: v(e2e.errors),
        baseline_errors: v(baseline.errors),
        e2e_lost: v(audit.lost + audit.partial),
        e2e_duplicated: v(audit.duplicated + audit.duplicateAcks),
      },
      timelines: {
        'design-baseline': baseline.timeline,
        pipeline: e2e.timeline.map((p) => ({ ...p, t: p.t + baseline.timeline.length })),
      },
      errors: { ...baseline.errorsByStatus, ...e2e.errorsByStatus },
      notes: [
        `300 pushes/s open loop for ${ctx.mode === 'full' ? 9 : 6} s, PostgreSQL frozen from 2 s; acknowledged/s counts answers completed inside the frozen window`,
        `pipeline audit: ${audit.acknowledged} acknowledged, ${audit.lost} lost, ${audit.duplicated} duplicated`,
      ],
      failures: [
        ...(drained === undefined ? ['the queue did not drain after the stall (no progress for 20 s)'] : []),
        ...auditFailures(audit),
      ],
    };
  },
  async teardown(ctx) {
    await ctx.stack.stopService(BASELINE);
    await ctx.stack.stopService('ingest-edge');
    await ctx.stack.stopService('writer');
  },
};
