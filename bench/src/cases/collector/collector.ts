import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { findExecutable, POSTGRES_BIN_DIRS } from '@pga/local-stack';
import { startGeneratorMeter } from '../../harness/generator-meter';
import { spread } from '../../harness/stats';
import type { Scenario, ScenarioContext } from '../../harness/scenario';
import { REPO_ROOT } from '../../harness/stack';

const run = promisify(execFile);
const TARGET_DB = 'pga_target';

function pgbenchArgs(ctx: ScenarioContext): string[] {
  return ['-h', '127.0.0.1', '-p', String(ctx.stack.pg.port), '-U', 'postgres'];
}

async function pgbench(ctx: ScenarioContext, seconds: number): Promise<number> {
  const { stdout } = await run(findExecutable('pgbench', POSTGRES_BIN_DIRS)!, [
    ...pgbenchArgs(ctx),
    '-n',
    '-c',
    '4',
    '-j',
    '2',
    '-T',
    String(seconds),
    TARGET_DB,
  ]);
  const tps = /tps = ([\d.]+)/.exec(stdout)?.[1];
  if (!tps) throw new Error(`pgbench printed no tps: ${stdout.slice(-300)}`);
  return Number(tps);
}

/**
 * collector: the agent's cost on the database it monitors. pgbench runs alone, then again while
 * the agent's own snapshot code (@pga/collector's createSnapshotCollector over its one session)
 * collects every second, 60 × more often than its default interval so the cost is visible.
 */
export const collector: Scenario = {
  name: 'collector',
  goal: 'The agent’s cost on the monitored database under pgbench: collection time per snapshot, its own queries’ time, connections held, pgbench TPS with and without it.',
  figures: [
    { key: 'snapshot_p50_ms', label: 'collection time per snapshot: median', unit: 'ms', better: 'lower' },
    { key: 'snapshot_max_ms', label: 'collection time per snapshot: max', unit: 'ms', better: 'lower' },
    { key: 'own_query_ms', label: 'its own statements’ time per snapshot (round trips)', unit: 'ms', better: 'lower' },
    { key: 'statements', label: 'statements per snapshot', unit: 'stmt', better: 'lower' },
    { key: 'snapshot_kb', label: 'push body per snapshot', unit: 'KB', better: 'none' },
    { key: 'connections_held', label: 'connections held on the target (max seen)', unit: 'conn', better: 'lower', target: '1' },
    { key: 'tps_alone', label: 'pgbench TPS without the agent', unit: 'tx/s', better: 'higher' },
    { key: 'tps_with', label: 'pgbench TPS with the agent collecting every second', unit: 'tx/s', better: 'higher' },
    { key: 'tps_change_pct', label: 'TPS change with the agent', unit: '%', better: 'higher' },
  ],
  unavailable() {
    if (!existsSync(path.join(REPO_ROOT, 'collector/src/collect/collect-snapshot.ts')))
      return 'needs the collector (collector/ not built yet)';
    if (!findExecutable('pgbench', POSTGRES_BIN_DIRS)) return 'needs pgbench (apt-get install postgresql-contrib)';
    return undefined;
  },
  async setup(ctx) {
    const admin = new pg.Client({ connectionString: ctx.stack.pg.url });
    await admin.connect();
    const { rowCount } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [TARGET_DB]);
    if (!rowCount) await admin.query(`CREATE DATABASE ${TARGET_DB}`);
    await admin.end();
    const target = new pg.Client({ connectionString: ctx.stack.pg.urlFor(TARGET_DB) });
    await target.connect();
    await target.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
    await target.end();
    ctx.progress.update(`${ctx.label}: pgbench -i`);
    await run(findExecutable('pgbench', POSTGRES_BIN_DIRS)!, [
      ...pgbenchArgs(ctx),
      '-i',
      '-q',
      '-s',
      ctx.mode === 'full' ? '20' : '2',
      TARGET_DB,
    ]);
  },
  async run(ctx) {
    const { openTargetConnection, createSnapshotCollector, stringifyJson, COLLECTOR_APPLICATION_NAME } =
      await import('@pga/collector');
    const seconds = ctx.mode === 'full' ? 30 : 3;
    ctx.progress.update(`${ctx.label}: pgbench alone ${seconds} s`);
    const tpsAlone = await pgbench(ctx, seconds);

    ctx.progress.update(`${ctx.label}: pgbench ${seconds} s with the agent collecting every second`);
    const conn = await openTargetConnection({ url: ctx.stack.pg.urlFor(TARGET_DB) }, { statementTimeoutMs: 5000 });
    let statementMs = 0;
    let statements = 0;
    const timed: typeof conn = Object.create(conn);
    timed.query = async (sql, params) => {
      const t = performance.now();
      try {
        return await conn.query(sql, params);
      } finally {
        statementMs += performance.now() - t;
        statements++;
      }
    };
    const snapper = createSnapshotCollector({ collectorId: randomUUID() });
    const watcher = new pg.Client({ connectionString: ctx.stack.pg.url });
    await watcher.connect();
    const meter = startGeneratorMeter();
    const bench = pgbench(ctx, seconds);
    let done = false;
    void bench.finally(() => (done = true)).catch(() => undefined);
    const collection: number[] = [];
    const ownMs: number[] = [];
    const perSnapshot: number[] = [];
    const sizes: number[] = [];
    let held = 0;
    while (!done) {
      const t = performance.now();
      statementMs = 0;
      statements = 0;
      const snap = await snapper.collect(timed, { queryLimit: 100 });
      collection.push(snap.collectionTimeMs);
      ownMs.push(statementMs);
      perSnapshot.push(statements);
      sizes.push(Buffer.byteLength(stringifyJson(snap.envelope)) / 1000);
      const { rows } = await watcher.query<{ n: string }>(
        'SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1',
        [COLLECTOR_APPLICATION_NAME],
      );
      held = Math.max(held, Number(rows[0]!.n));
      await new Promise((r) => setTimeout(r, Math.max(0, 1000 - (performance.now() - t))));
    }
    const tpsWith = await bench;
    // The agent's snapshot code runs in this process: its CPU is the "generator" share here.
    const g = meter.stop();
    await conn.close();
    await watcher.end();
    return {
      figures: {
        snapshot_p50_ms: { value: spread(collection).median, generator: g },
        snapshot_max_ms: { value: spread(collection).max, generator: g },
        own_query_ms: { value: spread(ownMs).median, generator: g },
        statements: { value: spread(perSnapshot).median, generator: g },
        snapshot_kb: { value: spread(sizes).median, generator: g },
        connections_held: { value: held },
        tps_alone: { value: tpsAlone },
        tps_with: { value: tpsWith, generator: g },
        tps_change_pct: { value: ((tpsWith - tpsAlone) / tpsAlone) * 100, generator: g },
      },
      notes: [
        `pgbench -c 4 -j 2 -T ${seconds} on a scale-${ctx.mode === 'full' ? 20 : 2} database in the bench cluster; ${collection.length} snapshots per run; TPS on a shared machine varies by several % between runs`,
      ],
    };
  },
};
