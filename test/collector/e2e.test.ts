import { readdirSync, readFileSync, statSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { createRuntime, readCollectorEnv, SQL_MARKER } from '@pga/collector';
import { startCentralStack, type CentralStack } from './helpers/central-stack';
import { FAST_ENV, newStateDir, runCollector, sleep, until } from './helpers/run-collector';
import { runCli, startCli } from './helpers/spawn-cli';
import { startTargetPostgres, type TargetPostgres } from './helpers/target-postgres';

/**
 * Issue 6 item 4 against the real central: ingest edge + writer (child processes), the test
 * PostgreSQL/Redis, and a PostgreSQL 15 target with pg_stat_statements and pgbench traffic.
 */
const PGBENCH_SELECT = 'SELECT abalance FROM pgbench_accounts WHERE aid = $1';

let target: TargetPostgres;
let stack: CentralStack;
beforeAll(async () => {
  [target, stack] = await Promise.all([startTargetPostgres(), startCentralStack()]);
});
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]();
  await target?.[Symbol.asyncDispose]();
});

const targetOf = (t: TargetPostgres, username = 'postgres') => ({
  host: '127.0.0.1',
  port: t.pg.port,
  database: 'postgres',
  username,
});
const envOf = (c: { id: string; token: string }) => ({
  COLLECTOR_ID: c.id,
  COLLECTOR_JWT_TOKEN: c.token,
  CENTRAL_API_URL: stack.url,
});
const snapshotTimestamp = (file: string) =>
  (JSON.parse(gunzipSync(readFileSync(file)).toString()) as { timestamp: string }).timestamp;
const edgeCount = async (series: string) => {
  const text = await (await fetch(`${stack.url}/metrics`)).text();
  return Number(
    text
      .split('\n')
      .find((line) => line.startsWith(`${series} `))
      ?.slice(series.length + 1) ?? 0,
  );
};
const targetSessions = () => target.sql(`SELECT 1 FROM pg_stat_activity WHERE application_name = 'pganalytics-collector'`);
/** The collector's own spool folder under its state folder (the default). */
const spoolOf = (stateDir: string, collectorId: string) => path.join(stateDir, 'spool', collectorId);
/**
 * One snapshot of collector `c` collected and spooled, not pushed (as when its agent's push failed);
 * returns its push_id.
 */
const spoolOneSnapshot = async (c: { id: string; token: string }, over: Record<string, string>) => {
  const config = readCollectorEnv({ ...FAST_ENV, ...envOf(c), ...over });
  const { agent } = await createRuntime(config, pino({ level: 'silent' }));
  await agent.pullConfig();
  const snapshot = await agent.collect({ spool: true });
  await agent.stop();
  return snapshot.pushId;
};
const spoolFiles = (dir: string) =>
  readdirSync(dir)
    .filter((n) => n.endsWith('.json.gz') && !n.startsWith('.tmp-'))
    .sort();

describe('collector → real ingest edge → writer → PostgreSQL', () => {
  it('stores snapshots whose query stats match pg_stat_statements (exact queryid, deltas), without its own queries', async () => {
    const c = await stack.collector(targetOf(target), { interval: 1, queryLimit: 20 });
    await target.pgbench(['-S', '-c', '2', '-t', '50']);
    await using collector = await runCollector(envOf(c));
    await until('two snapshots stored', async () => (await stack.pushesStored(c.id)).length >= 2);
    await target.pgbench(['-S', '-c', '2', '-t', '60']);
    const after = collector.spooled().length;
    await until('two more snapshots stored', async () => (await stack.pushesStored(c.id)).length >= after + 2);
    // Heartbeats carry the collection time and count to the central (edge → Redis → writer flush).
    const reported = await until('collection time reported centrally', async () => {
      const { rows } = await stack.pool.query(
        `SELECT avg_collection_time_ms, last_collection_count, agent_version FROM collectors WHERE id = $1 AND avg_collection_time_ms > 0`,
        [c.id],
      );
      return rows[0];
    });
    expect(reported.agent_version).toBe('0.1.0');
    expect(reported.last_collection_count).toBeGreaterThanOrEqual(7); // one element per family at least
    await collector.stop();

    const [truth] = await target.sql<{ queryid: string; calls: string }>(
      `SELECT queryid::text, calls::text FROM pg_stat_statements WHERE query = $1 AND toplevel`,
      [PGBENCH_SELECT],
    );
    const { rows } = await stack.pool.query<{ queryid: string; calls: string; dcalls: string | null }>(
      `SELECT q->>'queryid' AS queryid, q->>'calls' AS calls, q->'delta'->>'calls' AS dcalls
         FROM collector_metrics m, jsonb_array_elements(m.metric_data->'queries') q
        WHERE m.collector_id = $1 AND m.metric_type = 'pg_query_stats' AND q->>'text' = $2
        ORDER BY m.metric_data->>'timestamp'`,
      [c.id, PGBENCH_SELECT],
    );
    expect(rows.length).toBeGreaterThanOrEqual(2);
    // The 64-bit queryid went through edge, queue and writer digit for digit.
    for (const r of rows) expect(r.queryid).toBe(truth!.queryid);
    expect(rows.at(-1)!.calls).toBe(truth!.calls);
    expect(BigInt(truth!.calls)).toBe(220n);
    // Per-interval deltas add up to the cumulative counter's growth.
    const sum = rows.slice(1).reduce((s, r) => s + BigInt(r.dcalls!), 0n);
    expect(sum).toBe(BigInt(rows.at(-1)!.calls) - BigInt(rows[0]!.calls));

    const own = await stack.pool.query(
      `SELECT q->>'text' FROM collector_metrics m, jsonb_array_elements(m.metric_data->'queries') q
        WHERE m.collector_id = $1 AND (q->>'text' LIKE $2 OR q->>'text' ~ 'pg_stat_activity|pg_statio_user|pg_replication_slots')`,
      [c.id, `${SQL_MARKER}%`],
    );
    expect(own.rows).toEqual([]);
    const types = await stack.pool.query<{ metric_type: string }>(
      `SELECT DISTINCT metric_type FROM collector_metrics WHERE collector_id = $1 ORDER BY 1`,
      [c.id],
    );
    expect(types.rows.map((r) => r.metric_type)).toEqual([
      'pg_cache',
      'pg_connections',
      'pg_locks',
      'pg_query_stats',
      'pg_replication',
      'pg_server',
      'pg_stats',
    ]);
    const status = await stack.pool.query(`SELECT status, metrics_collected FROM collectors WHERE id = $1`, [c.id]);
    expect(status.rows[0].status).toBe('active');
  });

  it('spools while the edge is down and delivers every snapshot exactly once, in order, when it is back', async () => {
    const c = await stack.collector(targetOf(target), { interval: 1, queryLimit: 5 });
    await using collector = await runCollector(envOf(c));
    await until('a snapshot stored', async () => (await stack.pushesStored(c.id)).length >= 1);
    await stack.stopEdge('SIGKILL');
    const before = collector.spooled().length;
    try {
      await until('three snapshots spooled while the edge is down', () => collector.spooled().length >= before + 3);
    } finally {
      await stack.startEdge();
    }
    await until(
      'spool drained',
      async () => collector.runtime.spool.stats().files === 0 && (await stack.pushesStored(c.id)).length >= before + 3,
    );
    await collector.stop();
    const spooled = collector.spooledTimestamps();
    const pending = collector.runtime.spool.stats().files;
    // The writer stores asynchronously after the edge's 200: let it catch up before counting.
    await until('writer caught up', async () => (await stack.pushesStored(c.id)).length >= spooled.length - pending);
    await sleep(500);
    const stored = await stack.pushesStored(c.id);
    expect(stored.length + pending).toBe(spooled.length);
    expect(stored.every((s) => s.n === '1')).toBe(true);
    // Stored in the order taken (received_at), one stored push per snapshot (matched by its timestamp).
    expect(stored.map((s) => s.ts)).toEqual(spooled.slice(0, stored.length));
  });

  it('loses nothing when the collector is killed with SIGKILL mid-push, and stores nothing twice', async () => {
    const c = await stack.collector(targetOf(target), { interval: 1, queryLimit: 5 });
    const env = { ...FAST_ENV, ...envOf(c), COLLECTOR_STATE_DIR: newStateDir(), LOG_LEVEL: 'warn' };
    const first = startCli([], env);
    let inSpool: string[] = [];
    try {
      await until('a snapshot stored', async () => (await stack.pushesStored(c.id)).length >= 1);
      // A frozen edge accepts the connection but never answers: the push is in flight.
      stack.pauseEdge();
      await until('two snapshots waiting', () => spoolFiles(spoolOf(env.COLLECTOR_STATE_DIR, c.id)).length >= 2);
      await sleep(500);
    } finally {
      first.kill('SIGKILL');
      await new Promise((r) => first.once('exit', r));
      inSpool = spoolFiles(spoolOf(env.COLLECTOR_STATE_DIR, c.id)).map((name) =>
        snapshotTimestamp(path.join(spoolOf(env.COLLECTOR_STATE_DIR, c.id), name)),
      );
      stack.resumeEdge();
    }
    expect(inSpool.length).toBeGreaterThanOrEqual(2);
    const second = startCli([], env);
    try {
      await until('the killed run’s spool stored', async () => {
        const stamps = (await stack.pushesStored(c.id)).map((s) => s.ts);
        return inSpool.every((stamp) => stamps.includes(stamp));
      });
    } finally {
      second.kill('SIGTERM');
      await new Promise((r) => second.once('exit', r));
    }
    const stored = await stack.pushesStored(c.id);
    expect(stored.every((s) => s.n === '1')).toBe(true);
    const ledger = await stack.pool.query(
      `SELECT count(*)::int AS n, count(DISTINCT push_id)::int AS d FROM ingest_ledger WHERE collector_id = $1`,
      [c.id],
    );
    expect(ledger.rows[0].n).toBe(ledger.rows[0].d);
  });

  it('applies a new interval and query limit from the central without a restart', async () => {
    const c = await stack.collector(targetOf(target), { interval: 1, queryLimit: 10 });
    await using collector = await runCollector(envOf(c));
    const queriesPerPush = async () =>
      (
        await stack.pool.query<{ n: number; ts: string }>(
          `SELECT sum(jsonb_array_length(metric_data->'queries'))::int AS n, min(metric_data->>'timestamp') AS ts
             FROM collector_metrics WHERE collector_id = $1 AND metric_type = 'pg_query_stats' GROUP BY push_id ORDER BY 2`,
          [c.id],
        )
      ).rows;
    await target.pgbench(['-c', '1', '-t', '30']);
    await until('a snapshot with more than 2 statements', async () => (await queriesPerPush()).some((r) => r.n > 2));

    const version = await stack.updateConfig(c.id, { query_limit: 2, collection_interval: 2 });
    await until('config applied', () => collector.runtime.agent.status().config.configVersion === version);
    const mark = (await queriesPerPush()).length + 1;
    for (let i = 0; i < 3; i++) await target.pgbench(['-c', '1', '-t', '30']).then(() => sleep(700));
    await until('three snapshots under the new config', async () => (await queriesPerPush()).length >= mark + 3, 20_000);
    const later = (await queriesPerPush()).slice(mark);
    for (const r of later) expect(r.n).toBeLessThanOrEqual(2);
    const gaps = later.slice(1).map((r, i) => Date.parse(r.ts) - Date.parse(later[i]!.ts));
    for (const g of gaps) expect(g).toBeGreaterThanOrEqual(1500);
  });

  it('shows bad target credentials centrally as status error with the stage named', async () => {
    const c = await stack.collector(targetOf(target, 'no_such_user'), { interval: 1 });
    await using _collector = await runCollector(envOf(c));
    const row = await until('error status in PostgreSQL', async () => {
      const { rows } = await stack.pool.query<{ status: string; last_error: string | null }>(
        `SELECT status, last_error FROM collectors WHERE id = $1`,
        [c.id],
      );
      return rows[0]?.status === 'error' && rows[0];
    });
    expect(row.last_error).toMatch(/^target-connect: .*no_such_user/);
  });

  it('enrolls with a registration secret, then runs from the saved id and token', async () => {
    const secret = `enroll-${Date.now()}-secret`;
    await stack.enrollmentSecret(secret);
    const stateDir = newStateDir();
    const enrolled = await runCli(['--enroll'], {
      CENTRAL_API_URL: stack.url,
      COLLECTOR_STATE_DIR: stateDir,
      REGISTRATION_SECRET: secret,
      COLLECTOR_NAME: 'e2e-enrolled',
    });
    expect(enrolled.code, enrolled.stderr).toBe(0);
    const state = JSON.parse(readFileSync(path.join(stateDir, 'collector.json'), 'utf8')) as { collector_id: string };
    expect(statSync(path.join(stateDir, 'collector.json')).mode & 0o777).toBe(0o600);
    const { rows } = await stack.pool.query(`SELECT name, status FROM collectors WHERE id = $1`, [state.collector_id]);
    expect(rows).toEqual([{ name: 'e2e-enrolled', status: 'pending' }]);
    // Single-use secret: a second enrollment is refused.
    const again = await runCli(['--enroll'], {
      CENTRAL_API_URL: stack.url,
      COLLECTOR_STATE_DIR: newStateDir(),
      REGISTRATION_SECRET: secret,
    });
    expect(again.code).toBe(1);

    await stack.retarget(state.collector_id, targetOf(target));
    const once = await runCli(['--once'], { ...FAST_ENV, CENTRAL_API_URL: stack.url, COLLECTOR_STATE_DIR: stateDir });
    expect(once.code, once.stderr).toBe(0);
    await until('the snapshot stored', async () => (await stack.pushesStored(state.collector_id)).length === 1);
  });

  it('refreshes its token at the real edge before it expires and keeps pushing', async () => {
    const c = await stack.collector(targetOf(target), { interval: 1, ttlSeconds: 5 });
    await using collector = await runCollector(envOf(c));
    await until('token refreshed', () => collector.logs.some((l) => l.msg === 'token refreshed'), 15_000);
    await sleep(2500); // the first token has now expired
    const n = (await stack.pushesStored(c.id)).length;
    await until('pushes stored with the refreshed token', async () => (await stack.pushesStored(c.id)).length >= n + 2);
    const tokens = await stack.pool.query(`SELECT count(*)::int AS n FROM collector_tokens WHERE collector_id = $1`, [c.id]);
    expect(tokens.rows[0].n).toBe(2);
  });
  it('pauses while the edge refuses it as disabled (403), keeps heartbeating, and resumes at once when enabled again', async () => {
    const c = await stack.collector(targetOf(target), { interval: 1, queryLimit: 5 });
    // A production-like push back-off ceiling: pushing must not wait it out after the re-enable.
    await using collector = await runCollector({
      ...envOf(c),
      COLLECTOR_BACKOFF_BASE_MS: '1000',
      COLLECTOR_BACKOFF_MAX_MS: '60000',
    });
    await until('a snapshot stored', async () => (await stack.pushesStored(c.id)).length >= 1);
    await stack.setEnabled(c.id, false);
    // The edge refuses within a second; the agent notices at its next heartbeat or push (≤ 1 s here).
    await sleep(2500);
    const spooledWhileDisabled = collector.spooled().length;
    const refusedBefore = await edgeCount('edge_http_requests_total{route="heartbeat",status="403"}');
    await sleep(5000);
    // Nothing collected or spooled while disabled, no session held on the target…
    expect(collector.spooled().length).toBe(spooledWhileDisabled);
    expect(await targetSessions()).toHaveLength(0);
    // …but heartbeats went on at their period (1 s) to notice the re-enable.
    expect((await edgeCount('edge_http_requests_total{route="heartbeat",status="403"}')) - refusedBefore).toBeGreaterThanOrEqual(
      3,
    );
    const disabledLogs = collector.logs.filter((l) => l.msg === 'collector disabled by the central');
    expect(disabledLogs).toHaveLength(1);
    expect(collector.logs.filter((l) => l.msg === 'heartbeat failed')).toHaveLength(0);
    const disabledAt = disabledLogs[0]!.time as number;

    const stored = (await stack.pushesStored(c.id)).length;
    const enabledAt = Date.now();
    await stack.setEnabled(c.id, true);
    await until('a push stored after the re-enable', async () => (await stack.pushesStored(c.id)).length > stored, 15_000);
    // Heartbeat (≤ 1 s) → collect → push → stored: seconds, where a back-off grown on the 403s
    // (its ceiling is 60 s here) would take tens. Bounded loosely: a loaded machine is slow too.
    expect(Date.now() - enabledAt).toBeLessThan(10_000);
    expect(collector.logs.filter((l) => l.msg === 'collector enabled again')).toHaveLength(1);
    await until('spool drained', () => collector.runtime.spool.stats().files === 0);
    // No snapshot taken while the agent knew it was disabled reached the central.
    await sleep(500);
    const taken = (await stack.pushesStored(c.id)).map((p) => Date.parse(p.ts));
    expect(taken.filter((t) => t > disabledAt && t < enabledAt)).toEqual([]);
  });

  it('heartbeats twice per collection interval, even when stopped and the heartbeat period is longer', async () => {
    const c = await stack.collector(targetOf(target), { interval: 2 });
    await stack.sendCommand(c.id, 'stop');
    await using collector = await runCollector({ ...envOf(c), COLLECTOR_HEARTBEAT_INTERVAL: '60' });
    await until('stopped', () => collector.runtime.agent.status().stoppedByCommand);
    // No pushes while stopped: the heartbeats alone must keep it live (central: 2 × interval).
    const seen = new Set<string>();
    const until9s = Date.now() + 9000;
    while (Date.now() < until9s) {
      const last = await stack.lastHeartbeatSeen(c.id);
      if (last) seen.add(last);
      await sleep(200);
    }
    // A heartbeat a second (half the 2 s interval; the old agent: one in 60 s). Each gap below what
    // the central tolerates (2 × interval), with room for a loaded machine's jitter.
    const times = [...seen].map((t) => Date.parse(t)).sort((a, b) => a - b);
    expect(times.length).toBeGreaterThanOrEqual(5);
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    for (const g of gaps) expect(g).toBeLessThan(4000);
  });

  it('stays stopped across an agent restart until the admin resumes it', async () => {
    const c = await stack.collector(targetOf(target), { interval: 1, queryLimit: 5 });
    const stateDir = newStateDir();
    const env = { ...envOf(c), COLLECTOR_STATE_DIR: stateDir };
    const first = await runCollector(env);
    try {
      await until('a snapshot stored', async () => (await stack.pushesStored(c.id)).length >= 1);
      await stack.sendCommand(c.id, 'stop');
      await until('stopped', () => first.runtime.agent.status().stoppedByCommand);
    } finally {
      await first.stop(); // SIGTERM
    }

    await using second = await runCollector(env);
    expect(second.runtime.agent.status().stoppedByCommand).toBe(true);
    expect(second.logs.some((l) => l.msg === 'stopped by an admin command: not collecting until resume or restart')).toBe(true);
    // What was spooled before the stop (a collection in flight when it came included) is still
    // pushed, by design: let it go and be stored, so the count below can only grow by what a wrongly
    // collecting agent would add.
    await until('the spool pushed', () => spoolFiles(spoolOf(stateDir, c.id)).length === 0);
    let storedBefore = -1;
    let steady = 0;
    await until('stored pushes steady for 1 s', async () => {
      const n = (await stack.pushesStored(c.id)).length;
      steady = n === storedBefore ? steady + 1 : 0;
      storedBefore = n;
      return steady >= 4 ? true : (await sleep(250), false);
    });
    await sleep(3000);
    expect(second.spooled()).toHaveLength(0);
    expect(await stack.pushesStored(c.id)).toHaveLength(storedBefore);
    expect(await targetSessions()).toHaveLength(0);

    await stack.sendCommand(c.id, 'resume');
    await until('pushes after resume', async () => (await stack.pushesStored(c.id)).length >= storedBefore + 2);
    await second.stop();
    // Resumed state is what the next start sees too.
    await using third = await runCollector(env);
    expect(third.runtime.agent.status().stoppedByCommand).toBe(false);
    await until('a snapshot spooled by the third start', () => third.spooled().length >= 1);
  });

  it('sets aside a snapshot of another collector found in its spool (403 COLLECTOR_MISMATCH) and pushes its own', async () => {
    const [a, b] = [await stack.collector(targetOf(target)), await stack.collector(targetOf(target), { interval: 1 })];
    // Two agents given one spool folder: A's unpushed snapshot is the oldest in B's spool.
    const shared = path.join(newStateDir(), 'spool');
    const theirs = await spoolOneSnapshot(a, { COLLECTOR_STATE_DIR: newStateDir(), COLLECTOR_SPOOL_DIR: shared });
    await using collector = await runCollector({ ...envOf(b), COLLECTOR_SPOOL_DIR: shared });
    // Before: B retried A's snapshot with back-off for ever and none of its own was pushed.
    await until('two of its own snapshots stored', async () => (await stack.pushesStored(b.id)).length >= 2);
    expect(readdirSync(path.join(shared, 'rejected')).some((n) => n.includes(theirs))).toBe(true);
    const aside = collector.logs.filter((l) => l.level === 50 && String(l.msg).includes('set aside'));
    expect(aside).toHaveLength(1);
    expect(aside[0]).toMatchObject({
      push_id: theirs,
      reason: expect.stringMatching(/403 COLLECTOR_MISMATCH.*another collector/),
    });
    expect(await stack.pushesStored(a.id)).toHaveLength(0);
  });

  it('keeps its own snapshots when its token is another collector’s (403 COLLECTOR_MISMATCH): an ERROR, retried, nothing set aside', async () => {
    const [a, b] = [await stack.collector(targetOf(target)), await stack.collector(targetOf(target))];
    const spool = path.join(newStateDir(), 'spool');
    const own = await spoolOneSnapshot(a, { COLLECTOR_STATE_DIR: newStateDir(), COLLECTOR_SPOOL_DIR: spool });
    // A's id with B's token (two collectors' credentials mixed up): every push is refused as a
    // mismatch. Setting the snapshots aside would throw away the backlog a fix of the credentials
    // would have delivered.
    await using collector = await runCollector({ ...envOf(b), COLLECTOR_ID: a.id, COLLECTOR_SPOOL_DIR: spool });
    await until('the refusal logged', () =>
      collector.logs.some((l) => l.level === 50 && String(l.msg).startsWith('push refused: the token is not this collector')),
    );
    expect(spoolFiles(spool)).toContainEqual(expect.stringContaining(own));
    expect(collector.logs.filter((l) => String(l.msg).includes('set aside'))).toEqual([]);
    expect(await stack.pushesStored(a.id)).toHaveLength(0);
  });

  it('pushes the snapshots an earlier version left in the shared default spool folder, and leaves other collectors’ there', async () => {
    const [a, b] = [await stack.collector(targetOf(target)), await stack.collector(targetOf(target), { interval: 1 })];
    const stateDir = newStateDir();
    // Earlier versions spooled every collector of a state folder into <state dir>/spool itself.
    const legacy = path.join(stateDir, 'spool');
    const own = await spoolOneSnapshot(b, { COLLECTOR_STATE_DIR: stateDir, COLLECTOR_SPOOL_DIR: legacy });
    const theirs = await spoolOneSnapshot(a, { COLLECTOR_STATE_DIR: stateDir, COLLECTOR_SPOOL_DIR: legacy });
    const ownTimestamp = snapshotTimestamp(
      path.join(
        legacy,
        spoolFiles(legacy).find((n) => n.includes(own))!,
      ),
    );

    await using collector = await runCollector({ ...envOf(b), COLLECTOR_STATE_DIR: stateDir });
    await until('the earlier snapshot stored', async () => (await stack.pushesStored(b.id)).some((p) => p.ts === ownTimestamp));
    expect(collector.logs.some((l) => l.level === 50)).toBe(false);
    // A's snapshot waits where A's agent will look for it.
    expect(spoolFiles(legacy)).toEqual([expect.stringContaining(theirs)]);
    await until('its new snapshots in a folder of its own', () => collector.spooled().length >= 1);
    expect(readdirSync(spoolOf(stateDir, b.id)).every((n) => !n.includes(theirs))).toBe(true);
  });
});
