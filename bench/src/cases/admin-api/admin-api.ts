import { randomUUID } from 'node:crypto';
import { startGeneratorMeter } from '../../harness/generator-meter';
import { LatencyRecorder } from '../../harness/latency-recorder';
import type { FigureDef, Measurement } from '../../harness/model';
import type { Scenario } from '../../harness/scenario';
import { adminClient, adminMissing, registerInput, type AdminClient } from '../shared/admin-client';
import { benchCollectors } from '../shared/collectors';

const FLEET = 10_000;
const CONCURRENCY = 8;

interface Op {
  key: string;
  label: string;
  call(admin: AdminClient, ids: string[], i: number): Promise<{ status: number }>;
}

const pick = <T>(list: T[], i: number) => list[(i * 7919) % list.length]!;

const OPS: Op[] = [
  {
    key: 'list',
    label: 'collectors.list (filters, page)',
    call: (admin, _ids, i) =>
      admin.query('collectors.list', {
        environment: 'production',
        ...(i % 3 === 0 ? { search: 'bench-' + (i % 16).toString(16) } : {}),
        ...(i % 4 === 1 ? { status: 'pending' } : {}),
        sort: i % 2 ? 'name' : 'registered_at',
        order: i % 2 ? 'asc' : 'desc',
        page: 1 + (i % 20),
        page_size: 50,
      }),
  },
  { key: 'get', label: 'collectors.get', call: (admin, ids, i) => admin.query('collectors.get', { id: pick(ids, i) }) },
  {
    key: 'register',
    label: 'collectors.register',
    call: (admin) => admin.mutation('collectors.register', registerInput(`bench-api-${randomUUID()}`)),
  },
  {
    key: 'audit',
    label: 'audit.list',
    call: (admin, _ids, i) => admin.query('audit.list', { page: 1 + (i % 5), page_size: 50 }),
  },
];

const figures: FigureDef[] = [
  { key: 'calls_per_s', label: 'all calls, 8 concurrent: calls/s', unit: 'call/s', better: 'higher' },
  ...OPS.flatMap((op): FigureDef[] => [
    { key: `${op.key}_p50_ms`, label: `${op.label}: p50`, unit: 'ms', better: 'lower' },
    { key: `${op.key}_p99_ms`, label: `${op.label}: p99`, unit: 'ms', better: 'lower', target: '< 100 ms' },
  ]),
];

/**
 * admin-api: with 10,000 registered collectors, 8 concurrent operators' calls over HTTP (tRPC, signed
 * in with a session cookie): list with filters and pages, get, register and audit.list, round-robin.
 */
export const adminApi: Scenario = {
  name: 'admin-api',
  goal: 'With 10,000 registered collectors, 8 concurrent callers over HTTP: collectors.list (filters, page), get, register, audit.list — p50/p99 (design target < 100 ms).',
  figures,
  unavailable: adminMissing,
  async setup(ctx) {
    await benchCollectors(ctx, FLEET);
    await adminClient(ctx);
  },
  async run(ctx) {
    const ids = (await benchCollectors(ctx, FLEET)).map((c) => c.id);
    const admin = await adminClient(ctx);
    const start = performance.now();
    const recorders = new Map(OPS.map((op) => [op.key, new LatencyRecorder(start)]));
    const missing = new Set<string>();
    const durationMs = ctx.mode === 'full' ? 30_000 : 3_000;
    const meter = startGeneratorMeter();
    let calls = 0;
    let seq = 0;
    const worker = async () => {
      while (performance.now() - start < durationMs) {
        const i = seq++;
        const op = OPS[i % OPS.length]!;
        if (missing.has(op.key)) continue;
        const t = performance.now();
        const res = await op.call(admin, ids, i).catch(() => ({ status: 0 }));
        const now = performance.now();
        calls++;
        if (res.status === 404 && op.key === 'audit') missing.add(op.key);
        else if (res.status === 200) recorders.get(op.key)!.recordOk(now, now - t);
        else recorders.get(op.key)!.recordError(now, `${op.key} ${res.status}`);
        if (calls % 50 === 0) ctx.progress.update(`${ctx.label}: ${calls} calls`);
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    const generator = meter.stop();
    const out: Record<string, Measurement> = { calls_per_s: { value: calls / ((performance.now() - start) / 1000), generator } };
    const errors: Record<string, number> = {};
    for (const [key, rec] of recorders) {
      const s = rec.summary();
      out[`${key}_p50_ms`] = { value: s.p50, generator };
      out[`${key}_p99_ms`] = { value: s.p99, generator };
      for (const [k, v] of rec.errorsByStatus) errors[k] = v;
    }
    const spectra = Object.fromEntries([...recorders].map(([k, r]) => [k, r.histogramBins()]));
    recorders.forEach((r) => r.destroy());
    return {
      figures: out,
      bins: spectra,
      errors,
      notes: [
        `${FLEET} collectors in the table (the first 1,000 registered through the API, the rest in bulk SQL); ${CONCURRENCY} concurrent callers, operations round-robin`,
        ...(missing.size ? [`not available in this build: ${[...missing].join(', ')} (HTTP 404)`] : []),
      ],
    };
  },
};
