import os from 'node:os';
import { freePort } from '@pga/local-stack';
import type { TimelinePoint } from '../../harness/latency-recorder';
import { freezeTree, throttleTree } from '../../harness/pause';
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

/** What is done to PostgreSQL in a phase, from 2 s into it, while pushes arrive at `rate`. */
interface Disturbance {
  kind: 'frozen' | 'slowed';
  rate: number;
  ms: number;
  /** Does it to the PostgreSQL tree; resolves with a note when it is over. */
  apply(pgPid: number): Promise<string>;
  /** For the progress line. */
  text: string;
}

const DISTURB_AT_MS = 2000;
/** Slowed: PostgreSQL runs this many ms of every period (a quarter of its speed). */
const SLOW_RUN_MS = 25;
const SLOW_PERIOD_MS = 100;

function disturbances(full: boolean): Disturbance[] {
  const stallMs = full ? 5000 : 2000;
  const slowMs = full ? 6000 : 3000;
  return [
    {
      kind: 'frozen',
      rate: 300,
      ms: stallMs,
      apply: (pid) => freezeTree(pid, stallMs).then(() => `frozen ${stallMs / 1000} s`),
      text: `PostgreSQL frozen at 2 s for ${stallMs / 1000} s`,
    },
    {
      kind: 'slowed',
      rate: 1000,
      ms: slowMs,
      apply: (pid) =>
        throttleTree(pid, slowMs, SLOW_RUN_MS, SLOW_PERIOD_MS).then(
          (t) => `slowed ${slowMs / 1000} s, ran ${(t.runShare * 100).toFixed(0)} % of it`,
        ),
      text: `PostgreSQL slowed to ${SLOW_RUN_MS} ms of every ${SLOW_PERIOD_MS} at 2 s for ${slowMs / 1000} s`,
    },
  ];
}

interface SideResult {
  /** Answers completed inside the disturbed window, per second. */
  ackedDuring: number;
  p99: number;
  max: number;
  errors: number;
  errorsByStatus: Record<string, number>;
  timeline: TimelinePoint[];
  note: string;
}

async function side(ctx: ScenarioContext, port: number, acks: AckLog, name: string, d: Disturbance): Promise<SideResult> {
  const durationMs = DISTURB_AT_MS + d.ms + 2000;
  const collectors = await benchCollectors(ctx, 1000);
  const target = { host: '127.0.0.1', port, collectors, bodies: bodyPool2k(), acks };
  const conns = await openConnections(target, 300);
  const req = pushRequests(target);
  const disturbed = new Promise<string>((resolve, reject) =>
    setTimeout(() => d.apply(ctx.stack.pg.pid).then(resolve, reject), DISTURB_AT_MS),
  );
  const r = await runOpenLoop({
    connections: conns,
    make: req.make,
    accept: req.accept,
    ratePerS: d.rate,
    durationMs,
    drainMs: 10_000,
    onTick: (s) =>
      ctx.progress.update(
        `${ctx.label}: ${name} at ${d.rate.toLocaleString('en-US')}/s, ${d.text}: ${(s.elapsedMs / 1000).toFixed(0)} s, ${s.ok} acked, ${s.errors} errors`,
      ),
  });
  const note = await disturbed;
  conns.forEach((c) => c.close());
  const timeline = r.recorder.timeline();
  const inside = timeline.filter((p) => p.t >= DISTURB_AT_MS / 1000 && p.t < (DISTURB_AT_MS + d.ms) / 1000);
  const s = r.recorder.summary();
  const out: SideResult = {
    ackedDuring: inside.reduce((a, p) => a + p.ok, 0) / (d.ms / 1000),
    p99: s.p99,
    max: s.max,
    errors: r.errors + r.unsent,
    errorsByStatus: Object.fromEntries([...r.recorder.errorsByStatus].map(([k, v]) => [`${name} ${d.kind} ${k}`, v])),
    timeline,
    note: `${name}: ${note}`,
  };
  r.recorder.destroy();
  return out;
}

/** The figures of one disturbance: acknowledged/s inside it, p99 and errors, pipeline and baseline. */
function disturbanceFigures(kind: Disturbance['kind'], what: string): Scenario['figures'] {
  const k = kind === 'frozen' ? '' : `${kind}_`;
  return [
    {
      key: `e2e_acked_during_${kind === 'frozen' ? 'stall' : kind}`,
      label: `pipeline: acknowledged/s while PostgreSQL is ${what}`,
      unit: 'push/s',
      better: 'higher',
      target: kind === 'frozen' ? '≈ offered 300' : '≈ offered 1,000',
    },
    {
      key: `baseline_acked_during_${kind === 'frozen' ? 'stall' : kind}`,
      label: `design-baseline: acknowledged/s while ${what}`,
      unit: 'push/s',
      better: 'none',
    },
    { key: `${k}e2e_p99_ms`, label: `pipeline: ack latency p99 over the ${kind} phase`, unit: 'ms', better: 'lower' },
    { key: `${k}baseline_p99_ms`, label: `design-baseline: ack latency p99 over the ${kind} phase`, unit: 'ms', better: 'none' },
    { key: `${k}e2e_errors`, label: `pipeline: failed or unsent requests (${kind})`, unit: 'req', better: 'lower' },
    { key: `${k}baseline_errors`, label: `design-baseline: failed or unsent requests (${kind})`, unit: 'req', better: 'none' },
  ];
}

/**
 * pg-stall (issue 5 §7: "report both under a PostgreSQL slowed or briefly stopped"), against the
 * design baseline first, then the pipeline, open loop:
 * - frozen: every PostgreSQL process SIGSTOPped for 2 s (5 s full) under 300 pushes/s;
 * - slowed: PostgreSQL runs 25 ms of every 100 ms (a quarter of its speed) for 3 s (6 s full) under
 *   1,000 pushes/s, more than the baseline's one INSERT per push then commits.
 * The queue should keep acknowledging and lose nothing; the baseline cannot acknowledge what it
 * cannot commit.
 */
export const pgStall: Scenario = {
  name: 'pg-stall',
  goal: 'PostgreSQL frozen (SIGSTOP) for 2 s (5 s full) under 300 pushes/s, then slowed to a quarter of its speed for 3 s (6 s full) under 1,000 pushes/s: acknowledged/s while disturbed, p99, errors and the audit, pipeline vs design baseline.',
  figures: [
    ...disturbanceFigures('frozen', 'frozen'),
    ...disturbanceFigures('slowed', 'slowed to ¼'),
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
    const plan = disturbances(ctx.mode === 'full');
    const baselinePort = ctx.stack.services.get(BASELINE)!.port;
    const baseline: SideResult[] = [];
    for (const d of plan) baseline.push(await side(ctx, baselinePort, new AckLog(), 'design-baseline', d));
    const edge = await startPipeline(ctx);
    // Nothing is in flight for the writer yet (the baseline stores without it).
    const commits = await CommitCounter.start(ctx.stack.databaseUrl, ctx.stack.services.get('writer')?.url);
    const acks = new AckLog();
    const pipeline: SideResult[] = [];
    for (const d of plan) pipeline.push(await side(ctx, edge.port, acks, 'pipeline', d));
    const drained = await waitCommitted(commits, acks.expectedRows.size, (n) =>
      ctx.progress.update(`${ctx.label}: draining ${n}/${acks.expectedRows.size}`),
    );
    const audit = await auditPushes(ctx.stack.databaseUrl, acks);
    const v = (value: number): Measurement => ({ value });
    const figures: Record<string, Measurement> = {
      e2e_lost: v(audit.lost + audit.partial),
      e2e_duplicated: v(audit.duplicated + audit.duplicateAcks),
    };
    plan.forEach((d, i) => {
      const k = d.kind === 'frozen' ? '' : `${d.kind}_`;
      const during = d.kind === 'frozen' ? 'stall' : d.kind;
      figures[`e2e_acked_during_${during}`] = v(pipeline[i]!.ackedDuring);
      figures[`baseline_acked_during_${during}`] = v(baseline[i]!.ackedDuring);
      figures[`${k}e2e_p99_ms`] = v(pipeline[i]!.p99);
      figures[`${k}baseline_p99_ms`] = v(baseline[i]!.p99);
      figures[`${k}e2e_errors`] = v(pipeline[i]!.errors);
      figures[`${k}baseline_errors`] = v(baseline[i]!.errors);
    });
    // One time axis: each phase's timeline placed after the previous ones.
    const timelines: RunOutput['timelines'] = {};
    let offset = 0;
    for (const [name, sides] of [
      ['design-baseline', baseline],
      ['pipeline', pipeline],
    ] as const)
      sides.forEach((r, i) => {
        timelines[`${name} ${plan[i]!.kind}`] = r.timeline.map((p) => ({ ...p, t: p.t + offset }));
        offset += r.timeline.length;
      });
    return {
      figures,
      timelines,
      errors: Object.assign({}, ...baseline.map((r) => r.errorsByStatus), ...pipeline.map((r) => r.errorsByStatus)),
      notes: [
        ...plan.map(
          (d) =>
            `${d.kind}: ${d.rate.toLocaleString('en-US')} pushes/s open loop for ${(DISTURB_AT_MS + d.ms + 2000) / 1000} s, ${d.text}; acknowledged/s counts answers completed inside that window`,
        ),
        ...[...baseline, ...pipeline].map((r) => r.note),
        `pipeline audit (both phases): ${audit.acknowledged} acknowledged, ${audit.lost} lost, ${audit.duplicated} duplicated`,
      ],
      failures: [
        ...(drained === undefined ? ['the queue did not drain after the disturbances (no progress for 20 s)'] : []),
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
