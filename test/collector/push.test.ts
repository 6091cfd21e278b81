import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CollectorConfig } from '@pga/contracts';
import { startPeerCentral, type PeerCentral } from './helpers/peer-central';
import { runCollector, sleep, until } from './helpers/run-collector';
import { startTargetPostgres, type TargetPostgres } from './helpers/target-postgres';

let target: TargetPostgres;
beforeAll(async () => {
  target = await startTargetPostgres();
});
afterAll(async () => {
  await target?.[Symbol.asyncDispose]();
});

const configFor = (t: TargetPostgres, over: Partial<CollectorConfig> = {}): CollectorConfig => ({
  config_version: 1,
  enabled: true,
  collection_interval: 1,
  query_limit: 5,
  target: {
    type: 'postgresql',
    host: '127.0.0.1',
    port: t.pg.port,
    database: 'postgres',
    username: 'postgres',
    password: '',
    ssl_mode: 'disable',
  },
  ...over,
});

async function setup(peerOptions?: Parameters<typeof startPeerCentral>[0]) {
  const peer = await startPeerCentral(peerOptions);
  peer.state.config = configFor(target);
  const token = await peer.issueToken();
  const env = { COLLECTOR_ID: peer.collectorId, COLLECTOR_JWT_TOKEN: token, CENTRAL_API_URL: peer.url };
  return { peer, token, env };
}

describe('collector ↔ central protocol peer', () => {
  let peer: PeerCentral | undefined;
  afterAll(async () => peer?.goDown());

  it('spools through an outage of the central and then delivers every snapshot exactly once, in order', async () => {
    const s = await setup();
    peer = s.peer;
    await using collector = await runCollector(s.env);
    await until('two pushes', () => s.peer.state.pushes.length >= 2);
    await s.peer.goDown();
    const before = collector.spooled().length;
    await until('three snapshots spooled while the central is down', () => collector.spooled().length >= before + 3);
    expect(collector.runtime.spool.stats().files).toBeGreaterThanOrEqual(3);
    await s.peer.comeBack();
    await until('spool drained', () => collector.runtime.spool.stats().files === 0 && s.peer.state.pushes.length >= before + 3);
    await collector.stop();
    const received = s.peer.state.pushes.map((p) => p.pushId);
    const spooled = collector.spooled();
    // Exactly once (nothing stored twice), in the order the snapshots were taken; whatever was not
    // yet pushed when the collector stopped is still in the spool.
    expect(new Set(received).size).toBe(received.length);
    expect(received).toEqual(spooled.slice(0, received.length));
    expect(received.length + collector.runtime.spool.stats().files).toBe(spooled.length);
    expect(s.peer.state.pushAttempts.filter((a) => a.status === 200)).toHaveLength(received.length);
    const stamps = s.peer.state.pushes.map((p) => Date.parse(p.envelope.timestamp));
    expect([...stamps].sort((a, b) => a - b)).toEqual(stamps);
    // The edge is told the push_id twice: in the body and as Idempotency-Key.
    for (const p of s.peer.state.pushes) expect(p.envelope.push_id).toBe(p.pushId);
    expect(collector.logs.some((l) => l.msg === 'push failed; will retry')).toBe(true);
  });

  it('drains a backlog oldest first at the bounded rate after an outage', async () => {
    const s = await setup();
    await using _peer = s.peer;
    await using collector = await runCollector({ ...s.env, COLLECTOR_PUSH_MAX_PER_SECOND: '2' });
    await until('a push', () => s.peer.state.pushes.length >= 1);
    await s.peer.goDown();
    const before = collector.spooled().length;
    await until('a backlog of four', () => collector.spooled().length >= before + 4);
    await s.peer.comeBack();
    const from = s.peer.state.pushes.length;
    await until('backlog drained', () => s.peer.state.pushes.length >= from + 4);
    const drained = s.peer.state.pushes.slice(from, from + 4);
    const positions = drained.map((p) => collector.spooled().indexOf(p.pushId));
    expect(positions.every((pos, i) => pos >= 0 && (i === 0 || pos > positions[i - 1]!))).toBe(true);
    const gaps = drained.slice(1).map((p, i) => p.at - drained[i]!.at);
    // 2 pushes per second. Arrival times are taken by the peer, so one gap can shrink by the jitter
    // of a busy machine; the rate itself is the span: 3 intervals of 500 ms (10 % slack), and no
    // two pushes back to back (an unpaced drain shows gaps of a few ms).
    for (const gap of gaps) expect(gap).toBeGreaterThanOrEqual(300);
    expect(drained.at(-1)!.at - drained[0]!.at).toBeGreaterThanOrEqual(1350);
  });

  it('honours Retry-After on 429 and 503', async () => {
    const s = await setup();
    await using _peer = s.peer;
    let answered = 0;
    s.peer.state.onPush = () => {
      answered++;
      if (answered === 1)
        return { status: 429, headers: { 'retry-after': '2' }, body: { error: { code: 'RATE_LIMITED', message: 'slow down' } } };
      if (answered === 2)
        return { status: 503, headers: { 'retry-after': '1' }, body: { error: { code: 'UNAVAILABLE', message: 'busy' } } };
      return undefined;
    };
    await using _collector = await runCollector(s.env);
    await until('first push accepted', () => s.peer.state.pushes.length >= 1);
    const [a, b, c] = s.peer.state.pushAttempts;
    expect(a!.status).toBe(429);
    expect(b!.pushId).toBe(a!.pushId);
    expect(b!.at - a!.at).toBeGreaterThanOrEqual(1900);
    expect(c!.at - b!.at).toBeGreaterThanOrEqual(900);
    expect(s.peer.state.pushes[0]!.pushId).toBe(a!.pushId);
  });

  it('retries a push whose connection was cut mid-upload without an answer: back-off, the same Idempotency-Key, stored once and in order', async () => {
    // What a collector sees when the edge (uWS.js) cuts off an upload arriving too slowly: the
    // connection closed with no answer. The snapshot stays first in the spool and is pushed again.
    const s = await setup();
    await using _peer = s.peer;
    let first: string | undefined;
    s.peer.state.cutPush = (pushId) => {
      first ??= pushId;
      return pushId === first && s.peer.state.cuts.length < 2;
    };
    await using collector = await runCollector(s.env);
    await until('the cut push stored', () => s.peer.state.pushes.some((p) => p.pushId === first));
    const [cut1, cut2] = s.peer.state.cuts;
    expect(s.peer.state.cuts.map((c) => c.pushId)).toEqual([first, first]);
    const stored = s.peer.state.pushAttempts.filter((a) => a.pushId === first);
    expect(stored.map((a) => a.status)).toEqual([200]);
    // Back-off (FAST_ENV: 200 ms doubling, equal jitter): 100-200 ms, then 200-400 ms.
    expect(cut2!.at - cut1!.at).toBeGreaterThanOrEqual(90);
    expect(stored[0]!.at - cut2!.at).toBeGreaterThanOrEqual(190);
    // Nothing overtook it, and it was stored once.
    expect(s.peer.state.pushes[0]!.pushId).toBe(first);
    expect(s.peer.state.pushes.filter((p) => p.pushId === first)).toHaveLength(1);
    const failures = collector.logs.filter((l) => l.msg === 'push failed; will retry');
    expect(failures.slice(0, 2).map((l) => [l.attempt, String(l.error).startsWith('push: network NETWORK')])).toEqual([
      [1, true],
      [2, true],
    ]);
  });

  it('sets aside a snapshot the central rejects with 400 or 413 and goes on with the next', async () => {
    const s = await setup();
    await using _peer = s.peer;
    const rejected: string[] = [];
    s.peer.state.onPush = (pushId) => {
      if (rejected.length < 2 && !rejected.includes(pushId)) {
        rejected.push(pushId);
        return rejected.length === 1
          ? { status: 400, body: { error: { code: 'INVALID_PAYLOAD', message: 'bad' } } }
          : { status: 413, body: { error: { code: 'PAYLOAD_TOO_LARGE', message: 'big' } } };
      }
      return undefined;
    };
    await using collector = await runCollector(s.env);
    await until('a push accepted after two rejections', () => s.peer.state.pushes.length >= 1 && rejected.length === 2);
    await sleep(1500);
    for (const id of rejected) {
      expect(s.peer.state.pushAttempts.filter((a) => a.pushId === id)).toHaveLength(1);
      expect(s.peer.state.pushes.some((p) => p.pushId === id)).toBe(false);
    }
    const aside = readdirSync(path.join(collector.stateDir, 'spool', s.peer.collectorId, 'rejected'));
    expect(aside.map((n) => n.slice(13, 49)).sort()).toEqual([...rejected].sort());
    expect(collector.logs.filter((l) => l.level === 50 && String(l.msg).includes('set aside'))).toHaveLength(2);
  });

  it('answers a 401 with one token refresh, then waits instead of looping', async () => {
    const s = await setup();
    await using _peer = s.peer;
    s.peer.state.onPush = () => ({ status: 401, body: { error: { code: 'UNAUTHORIZED', message: 'revoked' } } });
    await using collector = await runCollector(s.env);
    await until('a push attempt', () => s.peer.state.pushAttempts.length >= 1);
    await sleep(3000);
    expect(s.peer.state.refreshes).toBe(1);
    // 1 attempt + 1 after the refresh + back-off retries (200 ms doubling, 1 s cap) within 3 s: a handful, not hundreds.
    expect(s.peer.state.pushAttempts.length).toBeLessThanOrEqual(8);
    expect(collector.runtime.agent.status()).toMatchObject({ status: 'error' });
    expect(collector.runtime.agent.status().lastError).toMatch(/401 UNAUTHORIZED/);
    // Heartbeats carry the failure to the central.
    await until('error heartbeat', () => s.peer.state.heartbeats.some((h) => h.body.status === 'error'));
  });

  it('keeps its heartbeat schedule while a push hangs, and reports collection time', async () => {
    const s = await setup();
    await using _peer = s.peer;
    s.peer.state.onPush = () => 'hang';
    await using _collector = await runCollector({ ...s.env, COLLECTOR_HTTP_TIMEOUT_MS: '20000' });
    await until('a hanging push', () => s.peer.state.pushAttempts.length >= 1);
    const from = s.peer.state.heartbeats.length;
    await sleep(3200);
    expect(s.peer.state.pushAttempts).toHaveLength(1);
    expect(s.peer.state.heartbeats.length - from).toBeGreaterThanOrEqual(2);
    const last = s.peer.state.heartbeats.at(-1)!.body;
    expect(last).toMatchObject({ status: 'active', version: '0.1.0' });
    expect(s.peer.state.heartbeats.some((h) => (h.body.collection_time_ms as number) > 0)).toBe(true);
    s.peer.releaseHanging();
  });

  it('reports each collection’s time in one accepted heartbeat, not in every heartbeat until the next collection', async () => {
    // The central folds each reported time into avg/max_collection_time_ms: repeated, one collection
    // weighed as many times as heartbeats came (here 1 s heartbeats, one collection every 30 s).
    const s = await setup();
    await using _peer = s.peer;
    s.peer.state.config = configFor(target, { collection_interval: 30 });
    await using _collector = await runCollector(s.env);
    await until('a push', () => s.peer.state.pushes.length >= 1);
    await until('three heartbeats after it', () => s.peer.state.heartbeats.length >= 4, 10_000);
    await sleep(1500);
    const timed = s.peer.state.heartbeats.filter((h) => h.body.collection_time_ms !== undefined);
    expect(timed).toHaveLength(1);
    expect(timed[0]!.body.collection_time_ms).toBeGreaterThan(0);
  });

  it('applies a new interval and query limit without a restart, and obeys stop/resume', async () => {
    const s = await setup();
    await using _peer = s.peer;
    await target.pgbench(['-c', '1', '-t', '20']);
    s.peer.state.config = configFor(target, { query_limit: 4, collection_interval: 1 });
    await using collector = await runCollector(s.env);
    const queriesOf = (i: number) =>
      s.peer.state.pushes[i]!.envelope.metrics.filter((m) => m.type === 'pg_query_stats').flatMap(
        (m) => (m as unknown as { queries: unknown[] }).queries,
      );
    await until('two pushes', () => s.peer.state.pushes.length >= 2);
    expect(queriesOf(0).length).toBe(4);

    s.peer.state.config = configFor(target, { config_version: 2, query_limit: 2, collection_interval: 3 });
    await until('config v2 applied', () => collector.runtime.agent.status().config.configVersion === 2);
    const mark = s.peer.state.pushes.length;
    await target.pgbench(['-c', '1', '-t', '20']);
    await until('two pushes under v2', () => s.peer.state.pushes.length >= mark + 2, 15_000);
    const [p, q] = s.peer.state.pushes.slice(mark + 0, mark + 2);
    expect(queriesOf(mark).length).toBeLessThanOrEqual(2);
    expect(queriesOf(mark + 1).length).toBeLessThanOrEqual(2);
    expect(Date.parse(q!.envelope.timestamp) - Date.parse(p!.envelope.timestamp)).toBeGreaterThanOrEqual(2500);
    expect(s.peer.state.configPulls).toBeGreaterThanOrEqual(2);

    s.peer.state.config = configFor(target, { config_version: 3, query_limit: 2, collection_interval: 1 });
    s.peer.state.commands.push({ id: 'c1', action: 'stop' });
    await until('stopped', () => collector.runtime.agent.status().stoppedByCommand);
    await sleep(300);
    const stoppedAt = collector.spooled().length;
    await sleep(2500);
    expect(collector.spooled().length).toBe(stoppedAt);
    const sessions = await target.sql(`SELECT 1 FROM pg_stat_activity WHERE application_name = 'pganalytics-collector'`);
    expect(sessions).toHaveLength(0);
    s.peer.state.commands.push({ id: 'c2', action: 'resume' });
    await until('collecting again', () => collector.spooled().length >= stoppedAt + 2);
  });

  it('collects nothing while disabled centrally, heartbeats meanwhile, and starts when enabled', async () => {
    const s = await setup();
    await using _peer = s.peer;
    s.peer.state.config = configFor(target, { enabled: false });
    await using collector = await runCollector(s.env);
    await sleep(2500);
    expect(collector.spooled()).toHaveLength(0);
    expect(s.peer.state.heartbeats.length).toBeGreaterThanOrEqual(2);
    expect(await target.sql(`SELECT 1 FROM pg_stat_activity WHERE application_name = 'pganalytics-collector'`)).toHaveLength(0);
    s.peer.state.config = configFor(target, { config_version: 2, enabled: true });
    await until('pushes after enabling', () => s.peer.state.pushes.length >= 1);
  });

  it('reports bad target credentials as an error heartbeat naming the stage', async () => {
    const s = await setup();
    await using _peer = s.peer;
    s.peer.state.config = configFor(target, { target: { ...configFor(target).target, username: 'no_such_user' } });
    await using _collector = await runCollector(s.env);
    const hb = await until('error heartbeat', () => s.peer.state.heartbeats.find((h) => h.body.status === 'error'));
    expect(hb.body.last_error).toMatch(/^target-connect: .*no_such_user/);
    expect(s.peer.state.pushes).toHaveLength(0);
  });

  it('refreshes its token before expiry and keeps the new one (0600) for the next start', async () => {
    const s = await setup({ tokenTtlSeconds: 4 });
    await using _peer = s.peer;
    await using collector = await runCollector(s.env);
    await until('a refresh', () => s.peer.state.refreshes >= 1, 10_000);
    const file = path.join(collector.stateDir, 'collector.json');
    await until('state file', () => statSync(file, { throwIfNoEntry: false }));
    expect(statSync(file).mode & 0o777).toBe(0o600);
    // Still pushing after the first token expired.
    await sleep(1500);
    const n = s.peer.state.pushes.length;
    await until('more pushes with the refreshed token', () => s.peer.state.pushes.length > n);
  });
});
