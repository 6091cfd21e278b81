import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { startGeneratorMeter } from '../../harness/generator-meter';
import type { Measurement } from '../../harness/model';
import { startCpuWindow } from '../../harness/proc';
import type { Scenario, ScenarioContext } from '../../harness/scenario';
import { copyEscape, type PushBody } from '../../load/payloads';
import { bodyPool2k } from '../shared/workload';

const COPY_SQL = `COPY collector_metrics (collector_id, push_id, metric_type, database_name, metric_data, received_at, record_count, checksum)
FROM STDIN`;

/** Pre-escaped COPY lines of one body, minus the per-push columns. */
interface BodyRows {
  rows: { middle: string; tail: string }[];
  bytes: number;
}

function prepare(body: PushBody): BodyRows {
  return {
    bytes: body.json.length,
    rows: body.elements.map((e) => ({
      middle: `\t${e.type}\t${e.database ?? '\\N'}\t${copyEscape(e.json)}\t`,
      tail: `\t1\t${body.checksum}\n`,
    })),
  };
}

interface CopyStreamResult {
  pushes: number;
  rows: number;
  bytes: number;
  seconds: number;
}

/** One connection streaming the rows of pushes for `durationMs` in a single COPY (auto-commit). */
async function copyFor(
  databaseUrl: string,
  bodies: BodyRows[],
  collectors: string[],
  durationMs: number,
): Promise<CopyStreamResult> {
  const client = new pg.Client({ connectionString: databaseUrl, application_name: 'bench-copy-limit' });
  await client.connect();
  let pushes = 0;
  let rows = 0;
  let bytes = 0;
  const started = performance.now();
  const deadline = started + durationMs;
  const source = new Readable({
    read() {
      if (performance.now() >= deadline) return void this.push(null);
      const parts: string[] = [];
      const receivedAt = new Date().toISOString();
      for (let i = 0; i < 200; i++) {
        const body = bodies[pushes % bodies.length]!;
        const head = `${collectors[pushes % collectors.length]}\t${randomUUID()}`;
        for (const row of body.rows) parts.push(head, row.middle, receivedAt, row.tail);
        rows += body.rows.length;
        bytes += body.bytes;
        pushes++;
      }
      this.push(parts.join(''));
    },
  });
  try {
    await pipeline(source, client.query(copyFrom(COPY_SQL)));
  } finally {
    await client.end();
  }
  return { pushes, rows, bytes, seconds: (performance.now() - started) / 1000 };
}

async function measure(ctx: ScenarioContext, connections: number, durationMs: number, bodies: BodyRows[], collectors: string[]) {
  const meter = startGeneratorMeter();
  const cpu = startCpuWindow(() => ctx.stack.roots());
  const ticker = setInterval(() => ctx.progress.update(`${ctx.label}: COPY on ${connections} connection(s)`), 500);
  try {
    const results = await Promise.all(
      Array.from({ length: connections }, () => copyFor(ctx.stack.databaseUrl, bodies, collectors, durationMs)),
    );
    const seconds = Math.max(...results.map((r) => r.seconds));
    const sum = (k: 'pushes' | 'rows' | 'bytes') => results.reduce((a, r) => a + r[k], 0);
    const generator = meter.stop();
    return {
      rowsPerS: sum('rows') / seconds,
      pushesPerS: sum('pushes') / seconds,
      mbPerS: sum('bytes') / seconds / 1e6,
      generator,
      components: cpu.stop(),
    };
  } finally {
    clearInterval(ticker);
  }
}

/**
 * copy-limit: the physical anchor. The rows the 2 KB pushes of ingest-e2e become, COPYed straight
 * into the same partitioned collector_metrics (same indexes), with nothing else: no HTTP, queue,
 * ledger or state updates. What the pipeline reaches is read against this ceiling.
 */
export const copyLimit: Scenario = {
  name: 'copy-limit',
  goal: 'Bare COPY of the rows of the same 2 KB pushes into the same partitioned table: the physical ceiling e2e is compared with.',
  figures: [
    { key: 'c1_pushes_per_s', label: '1 connection: pushes/s (as rows)', unit: 'push/s', better: 'higher' },
    { key: 'c1_rows_per_s', label: '1 connection: rows/s', unit: 'row/s', better: 'higher' },
    { key: 'c1_mb_per_s', label: '1 connection: push MB/s', unit: 'MB/s', better: 'higher' },
    { key: 'c2_pushes_per_s', label: '2 connections: pushes/s (as rows)', unit: 'push/s', better: 'higher' },
    { key: 'c2_rows_per_s', label: '2 connections: rows/s', unit: 'row/s', better: 'higher' },
    { key: 'c2_mb_per_s', label: '2 connections: push MB/s', unit: 'MB/s', better: 'higher' },
    { key: 'best_pushes_per_s', label: 'best of both: pushes/s', unit: 'push/s', better: 'higher' },
  ],
  async run(ctx) {
    const durationMs = ctx.mode === 'full' ? 10_000 : 2_000;
    const bodies = bodyPool2k().map(prepare);
    const collectors = Array.from({ length: 1000 }, () => randomUUID());
    const one = await measure(ctx, 1, durationMs, bodies, collectors);
    await ctx.stack.resetData();
    const two = await measure(ctx, 2, durationMs, bodies, collectors);
    const m = (value: number, g = one.generator): Measurement => ({ value, generator: g });
    return {
      figures: {
        c1_pushes_per_s: m(one.pushesPerS),
        c1_rows_per_s: m(one.rowsPerS),
        c1_mb_per_s: m(one.mbPerS),
        c2_pushes_per_s: m(two.pushesPerS, two.generator),
        c2_rows_per_s: m(two.rowsPerS, two.generator),
        c2_mb_per_s: m(two.mbPerS, two.generator),
        best_pushes_per_s: m(
          Math.max(one.pushesPerS, two.pushesPerS),
          one.pushesPerS >= two.pushesPerS ? one.generator : two.generator,
        ),
      },
      components: one.components,
      notes: [
        `rows per push: ${bodies[0]!.rows.length} (one per metric element); a COPY streams for ${durationMs / 1000} s and commits`,
      ],
    };
  },
};
