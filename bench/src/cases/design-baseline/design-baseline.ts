import os from 'node:os';
import { freePort } from '@pga/local-stack';
import { startCpuWindow } from '../../harness/proc';
import type { Scenario } from '../../harness/scenario';
import { auditFailures, auditPushes } from '../shared/audit';
import { campaignFigureDefs, campaignOutput, FULL_FRACTIONS, QUICK_FRACTIONS } from '../shared/campaign-figures';
import { benchCollectors } from '../shared/collectors';
import { AckLog, runPushCampaign } from '../shared/push-campaign';
import { bodyPool2k } from '../shared/workload';

const SERVICE = 'design-baseline';

/**
 * design-baseline: the design document's approach (an HTTP handler doing one INSERT per push,
 * answering after commit) under the same payloads, fleet and load as ingest-e2e.
 */
export const designBaseline: Scenario = {
  name: 'design-baseline',
  goal: 'The design document’s approach — node:http, one INSERT per push, pool of 4 × cores connections — under the same 2 KB pushes and load as ingest-e2e.',
  figures: [
    ...campaignFigureDefs(),
    { key: 'max_pushes_per_s', label: 'committed pushes/s at closed-loop max (ack = commit)', unit: 'push/s', better: 'higher' },
    { key: 'max_rows_per_s', label: 'committed rows/s at closed-loop max', unit: 'row/s', better: 'higher' },
    { key: 'lost', label: 'audit: acknowledged pushes lost', unit: 'push', better: 'lower', target: '0' },
    { key: 'duplicated', label: 'audit: acknowledged pushes duplicated', unit: 'push', better: 'lower', target: '0' },
  ],
  async setup(ctx) {
    await benchCollectors(ctx, 1000);
    const port = await freePort();
    await ctx.stack.startService(SERVICE, {
      entry: 'bench/src/cases/design-baseline/server.ts',
      port,
      env: { ...ctx.stack.baseEnv(), PORT: String(port), POOL_MAX: String(4 * os.availableParallelism()) },
    });
  },
  async run(ctx) {
    const collectors = await benchCollectors(ctx, 1000);
    const service = ctx.stack.services.get(SERVICE)!;
    const acks = new AckLog();
    const bodies = bodyPool2k();
    let cpu: ReturnType<typeof startCpuWindow> | undefined;
    let components: Record<string, number> | undefined;
    const phases = await runPushCampaign({
      ctx,
      target: { host: '127.0.0.1', port: service.port, collectors, bodies, acks },
      closedConcurrency: ctx.mode === 'full' ? 512 : 256,
      closedMs: ctx.mode === 'full' ? 15_000 : 3_000,
      fractions: ctx.mode === 'full' ? FULL_FRACTIONS : QUICK_FRACTIONS,
      stepMs: ctx.mode === 'full' ? 10_000 : 2_000,
      openConnections: collectors.length,
      // CPU of the closed loop alone, as in ingest-e2e (the warm-up verifies every token once).
      beforePhase: (name) => {
        if (name === 'closed-loop') cpu = startCpuWindow(() => ctx.stack.roots());
      },
      afterPhase: async (phase) => {
        if (phase.name === 'closed-loop') components = cpu?.stop();
      },
    });
    ctx.progress.update(`${ctx.label}: auditing`);
    const audit = await auditPushes(ctx.stack.databaseUrl, acks);
    const out = campaignOutput(phases);
    const closed = phases[0]!.result;
    const rowsPerPush = bodies[0]!.elements.length;
    return {
      ...out,
      figures: {
        ...out.figures,
        max_pushes_per_s: { value: closed.okPerS, generator: closed.generator },
        max_rows_per_s: { value: closed.okPerS * rowsPerPush, generator: closed.generator },
        lost: { value: audit.lost + audit.partial },
        duplicated: { value: audit.duplicated + audit.duplicateAcks },
      },
      ...(components ? { components } : {}),
      notes: [
        `pool ${4 * os.availableParallelism()} connections over ${os.availableParallelism()} processes; tokens verified once then cached (as the edge does); 1 in 4 pushes gzip`,
        `audit: ${audit.acknowledged} acknowledged, ${audit.lost} lost, ${audit.partial} partial, ${audit.duplicated} duplicated, ${audit.duplicateAcks} duplicate acks, ${audit.unacknowledged} stored but never acknowledged`,
      ],
      failures: auditFailures(audit),
    };
  },
  async teardown(ctx) {
    await ctx.stack.stopService(SERVICE);
  },
};
