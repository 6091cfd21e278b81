import { freePort } from '@pga/local-stack';
import type { FigureDef, Measurement, RunOutput } from '../../harness/model';
import { startCpuWindow } from '../../harness/proc';
import type { Scenario, ScenarioContext } from '../../harness/scenario';
import { campaignOutput } from '../shared/campaign-figures';
import { benchCollectors } from '../shared/collectors';
import { AckLog, runPushCampaign } from '../shared/push-campaign';
import { bodyPool2k } from '../shared/workload';

const FLEET = 1000;
type Kind = 'uws' | 'node';
const SERVER_LABEL: Record<Kind, string> = { uws: 'uWebSockets.js', node: 'node:http' };
const service = (kind: Kind) => `null-${kind}`;

/** The servers one run measures: node:http beside uWS.js only in the full suite (time budget). */
const kindsFor = (ctx: ScenarioContext): Kind[] => (ctx.mode === 'full' ? ['uws', 'node'] : ['uws']);

function figureDefs(kind: Kind): FigureDef[] {
  const s = `${SERVER_LABEL[kind]}, no work`;
  const defs: FigureDef[] = [
    { key: `${kind}_max_acked_per_s`, label: `${s}: closed-loop max, answered pushes/s`, unit: 'push/s', better: 'higher' },
    { key: `${kind}_server_us_per_push`, label: `${s}: server CPU per push (closed loop)`, unit: 'µs', better: 'lower' },
    {
      key: `${kind}_generator_us_per_push`,
      label: `${s}: generator CPU per push (closed loop)`,
      unit: 'µs',
      better: 'lower',
    },
  ];
  if (kind === 'uws')
    defs.push(
      { key: 'uws_open_50_p99_ms', label: `${s}: open loop at 50 % of its max, p99`, unit: 'ms', better: 'lower' },
      { key: 'uws_open_10000_acked_per_s', label: `${s}: open loop at 10,000/s, answered/s`, unit: 'push/s', better: 'higher' },
      { key: 'uws_open_10000_p99_ms', label: `${s}: open loop at 10,000/s, p99`, unit: 'ms', better: 'lower' },
      {
        key: 'uws_open_10000_gen_delay_max_ms',
        label: `${s}: open loop at 10,000/s, the generator’s own event-loop delay max`,
        unit: 'ms',
        better: 'lower',
      },
    );
  return defs;
}

/** One server: the same phases as ingest-edge's closed loop, 50 % step and fixed 10,000/s step. */
async function measure(ctx: ScenarioContext, kind: Kind): Promise<{ output: RunOutput; figures: Record<string, Measurement> }> {
  const collectors = await benchCollectors(ctx, FLEET);
  const port = await freePort();
  const handle = await ctx.stack.startService(service(kind), {
    entry: 'bench/src/cases/edge-ceiling/null-server.ts',
    port,
    env: { PORT: String(port), SERVER: kind },
  });
  try {
    let cpu: ReturnType<typeof startCpuWindow> | undefined;
    let components: Record<string, number> | undefined;
    const phases = await runPushCampaign({
      ctx: { ...ctx, label: `${ctx.label} (${SERVER_LABEL[kind]})` },
      target: { host: '127.0.0.1', port: handle.port, collectors, bodies: bodyPool2k(), acks: new AckLog() },
      closedConcurrency: ctx.mode === 'full' ? 512 : 256,
      closedMs: ctx.mode === 'full' ? 15_000 : 3_000,
      fractions: kind === 'uws' ? [0.5] : [],
      absoluteRates: kind === 'uws' ? [10_000] : [],
      stepMs: ctx.mode === 'full' ? 10_000 : 3_000,
      openConnections: collectors.length,
      afterPhase: async (phase) => {
        if (phase.name === 'warm-up') cpu = startCpuWindow(() => ctx.stack.roots());
        if (phase.name === 'closed-loop') components = cpu?.stop();
      },
    });
    const out = campaignOutput(phases);
    const closed = out.figures.max_acked_per_s!;
    const m = (value: number): Measurement => ({ value, generator: closed.generator! });
    const figures: Record<string, Measurement> = { [`${kind}_max_acked_per_s`]: closed };
    const server = components?.[service(kind)];
    if (server !== undefined) figures[`${kind}_server_us_per_push`] = m((server / closed.value) * 1e6);
    if (components?.generator !== undefined)
      figures[`${kind}_generator_us_per_push`] = m((components.generator / closed.value) * 1e6);
    if (kind === 'uws') {
      const fig = (k: string) => out.figures[k];
      for (const [from, to] of [
        ['open_50_p99_ms', 'uws_open_50_p99_ms'],
        ['open_10000_acked_per_s', 'uws_open_10000_acked_per_s'],
        ['open_10000_p99_ms', 'uws_open_10000_p99_ms'],
        ['open_10000_gen_delay_max_ms', 'uws_open_10000_gen_delay_max_ms'],
      ] as const)
        if (fig(from)) figures[to] = fig(from)!;
    }
    return { output: { ...out, ...(components ? { components } : {}) }, figures };
  } finally {
    await ctx.stack.stopService(service(kind));
  }
}

/**
 * edge-ceiling: the rig's own ceiling. The ingest-edge scenario's load (same generator, fleet,
 * bodies, connections and phases) against a server that reads each body and answers without doing
 * anything: what no edge can exceed on this machine with this generator, and the generator's and a
 * bare server's CPU per push that every push scenario pays before any product work.
 */
export const edgeCeiling: Scenario = {
  name: 'edge-ceiling',
  goal: 'The same load as ingest-edge against a server that reads each 2 KB body and answers, doing no work: the most this machine and generator can measure, and what the generator and a bare server cost per push.',
  figures: [...figureDefs('uws'), ...figureDefs('node')],
  async run(ctx) {
    const figures: Record<string, Measurement> = {};
    const output: RunOutput = { figures, timelines: {}, spectra: {}, bins: {}, errors: {} };
    const cpuNotes: string[] = [];
    for (const kind of kindsFor(ctx)) {
      const r = await measure(ctx, kind);
      Object.assign(figures, r.figures);
      for (const key of ['timelines', 'spectra', 'bins'] as const)
        for (const [name, v] of Object.entries(r.output[key] ?? {})) Object.assign(output[key]!, { [`${kind} ${name}`]: v });
      for (const [status, n] of Object.entries(r.output.errors ?? {}))
        output.errors![`${kind}: ${status}`] = (output.errors![`${kind}: ${status}`] ?? 0) + n;
      // uWS.js's CPU split is the table's "CPU by process" line; node:http's goes in a note.
      if (kind === 'uws' && r.output.components) output.components = r.output.components;
      else if (r.output.components)
        cpuNotes.push(
          `${SERVER_LABEL[kind]} closed loop, CPU in cores: ${Object.entries(r.output.components)
            .filter(([, v]) => v >= 0.005)
            .map(([k, v]) => `${k} ${v.toFixed(2)}`)
            .join(' · ')}`,
        );
    }
    output.notes = [
      `${FLEET} collectors' request heads, 2 KB bodies (1 in 4 gzip, not decoded), ${ctx.mode === 'full' ? 512 : 256} closed-loop connections; the servers run one process per core${ctx.mode === 'full' ? '' : ' (node:http in the full suite only)'}`,
      ...cpuNotes,
    ];
    return output;
  },
};
