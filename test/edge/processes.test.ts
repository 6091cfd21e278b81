import path from 'node:path';
import { ERROR_HTTP_STATUS } from '@pga/contracts';
import { revokeCollectorTokens } from '@pga/db';
import {
  answeringPid,
  freePort,
  freshGet,
  processTree,
  readProc,
  startRedis,
  startOnFreePort,
  type RedisHandle,
} from '@pga/local-stack';
import { publishCollectorChange } from '@pga/redis-keys';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EdgeWorld, freshRequest, spawnEdge, waitUntil, type EdgeProcess, type TestCollector } from './harness';
import { testEnv, uniquePrefix } from '../helpers';

/** The real entry point: several processes on one port, the change feed reaching all of them. */
describe('edge processes (main.ts, EDGE_PROCESSES=2)', () => {
  let world: EdgeWorld;
  let inProcess: { port: number };
  let cluster: EdgeProcess;
  let c: TestCollector;
  let n = 0;
  const pushOn = (port: number, token: string) =>
    freshRequest(
      port,
      'POST',
      '/api/v1/metrics/push',
      { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      `{"n":${++n},"t":${Date.now()}}`,
    );

  beforeAll(async () => {
    world = await EdgeWorld.create();
    inProcess = await world.startEdge();
    cluster = await spawnEdge(
      world.env({ EDGE_PROCESSES: '2', INGEST_PORT: String(await freePort()), RATE_LIMIT_PER_SECOND: '0' }),
    );
    c = await world.collector();
  }, 60_000);
  afterAll(async () => {
    await cluster?.stop();
    await world?.[Symbol.asyncDispose]();
  });

  it('spreads connections over two processes sharing the port', async () => {
    const pids = new Set<number>();
    for (let i = 0; i < 400 && pids.size < 2; i++) {
      // Wait for both workers: the second may still be starting.
      const res = await freshGet(cluster.port, '/healthz');
      if (res.status === 200) pids.add(answeringPid(res.body)!);
      if (pids.size < 2) await new Promise((r) => setTimeout(r, 50));
    }
    expect(pids.size).toBe(2);
  });

  it('/metrics of a fresh edge has edge_rejections_total for every error code at 0, summed over the processes (an alert on the first 503 needs the series before it)', async () => {
    let text = '';
    await waitUntil(
      async () => /^edge_processes 2$/m.test((text = (await freshRequest(cluster.port, 'GET', '/metrics')).body)),
      10_000,
      'both processes in the sum',
    );
    for (const reason of Object.keys(ERROR_HTTP_STATUS))
      expect(text).toMatch(new RegExp(`^edge_rejections_total\\{reason="${reason}"\\} 0$`, 'm'));
  });

  it('an edge started on the port another edge holds stops with an error instead of joining it', async () => {
    // uWebSockets.js listens with SO_REUSEPORT (how our processes share the port): without a check,
    // a second install's edge would join this port and take a share of its collectors' connections.
    const pids = async () => {
      const seen = new Set<number>();
      for (let i = 0; i < 40; i++) seen.add(answeringPid((await freshGet(cluster.port, '/healthz')).body)!);
      return seen;
    };
    const before = await pids();
    // Its start-up wait may see this edge answering first: what counts is that it exits, and why.
    let said: string;
    try {
      const intruder = await spawnEdge(world.env({ EDGE_PROCESSES: '2', INGEST_PORT: String(cluster.port), LOG_LEVEL: 'info' }));
      try {
        await waitUntil(async () => intruder.child.exitCode !== null, 10_000, 'the second edge to exit');
        expect(intruder.child.exitCode).toBe(1);
        // 'exit' may come before the last of its output is read.
        await waitUntil(async () => intruder.child.stdout!.closed && intruder.child.stderr!.closed, 5000, 'its output');
        said = intruder.output();
      } finally {
        await intruder.stop();
      }
    } catch (err) {
      // It exited during its start-up wait: spawnEdge says with which code.
      said = String(err);
      expect(said).toContain('edge exited with code 1:');
    }
    expect(said).toMatch(new RegExp(`port ${cluster.port} on 127\\.0\\.0\\.1 is in use`));
    // Every connection still reaches this edge's own processes.
    for (const pid of await pids()) expect(before).toContain(pid);
  });

  it('refuses a revoked token within 1 s on every edge process, cache warm', async () => {
    // Warm every process's cache: enough fresh connections to reach both workers.
    for (let i = 0; i < 10; i++) expect((await pushOn(cluster.port, c.token)).status).toBe(200);
    expect((await pushOn(inProcess.port, c.token)).status).toBe(200);

    const jtis = await revokeCollectorTokens(world.pool, c.id, 'revoked');
    const started = Date.now();
    await publishCollectorChange(world.redis, world.keys, { collector_id: c.id, kind: 'revoked', jtis });
    let allRefused = false;
    while (!allRefused && Date.now() - started < 1000) {
      const answers = await Promise.all([
        ...Array.from({ length: 8 }, () => pushOn(cluster.port, c.token)),
        pushOn(inProcess.port, c.token),
      ]);
      allRefused = answers.every((a) => a.status === 401);
    }
    expect(allRefused).toBe(true);
    expect(Date.now() - started).toBeLessThan(1000);
    for (let i = 0; i < 16; i++) expect((await pushOn(cluster.port, c.token)).status).toBe(401);
  });

  it('/metrics sums every process', async () => {
    const fresh = await world.collector();
    const before = await pushCount(cluster.port);
    let ok = 0;
    for (let i = 0; i < 12; i++) if ((await pushOn(cluster.port, fresh.token)).status === 200) ok++;
    expect(ok).toBe(12);
    expect(await pushCount(cluster.port)).toBe(before + 12);
    const text = (await freshRequest(cluster.port, 'GET', '/metrics')).body;
    for (const name of [
      'edge_enqueue_latency_seconds_bucket',
      'edge_rejections_total',
      'edge_token_cache_lookups_total',
      'edge_request_body_bytes_total',
    ])
      expect(text).toContain(name);
    // prom-client's process metrics, aggregated over the processes, under the edge's prefix once.
    expect(text).toMatch(/^edge_process_resident_memory_bytes \d+/m);
    expect(text).toMatch(/^edge_nodejs_eventloop_lag_p99_seconds [\d.e-]+$/m);
    expect(text).not.toContain('edge_process_process_');
    // Readiness against the processes serving (a sum of 1 per process), and no restart yet.
    expect(text).toMatch(/^edge_processes 2$/m);
    expect(text).toMatch(/^edge_ready 2$/m);
    expect(text).toMatch(/^edge_worker_restarts_total 0$/m);
    // Each process that verified the token keeps it: 1 or 2 entries for it, summed.
    expect(Number(/^edge_token_cache_entries (\d+)$/m.exec(text)?.[1])).toBeGreaterThanOrEqual(1);
  });

  it('/metrics counts a token that fails verification as invalid, not as a cache miss', async () => {
    const lookups = async () => {
      const text = (await freshRequest(cluster.port, 'GET', '/metrics')).body;
      const value = (result: string) =>
        Number(new RegExp(`^edge_token_cache_lookups_total\\{result="${result}"\\} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
      const entries = Number(/^edge_token_cache_entries (\d+)$/m.exec(text)?.[1]);
      return { miss: value('miss'), invalid: value('invalid'), entries };
    };
    const before = await lookups();
    const [header, payload] = c.token.split('.');
    const forged = `${header}.${payload}.${'A'.repeat(43)}`; // a well-formed token, signed by no one
    for (let i = 0; i < 3; i++) expect((await pushOn(cluster.port, forged)).status).toBe(401);
    const after = await lookups();
    expect(after.invalid - before.invalid).toBe(3);
    expect(after.miss).toBe(before.miss);
    expect(after.entries).toBe(before.entries); // a token that failed verification is not cached
  });

  it('/metrics counters never go down when a worker dies (Prometheus would count its whole total again)', async () => {
    const fresh = await world.collector();
    for (let i = 0; i < 20; i++) expect((await pushOn(cluster.port, fresh.token)).status).toBe(200);
    // The spawned tsx wrapper runs the primary, which forked the worker (the primary's child that
    // answers requests).
    const primary = processTree(cluster.child.pid!).find((p) => p.ppid === cluster.child.pid)!.pid;
    let worker: number | undefined;
    for (let i = 0; i < 400 && worker === undefined; i++) {
      const pid = answeringPid((await freshGet(cluster.port, '/healthz')).body);
      if (pid && pid !== primary) worker = pid;
    }
    expect(worker).toBeDefined();
    expect(readProc(worker!)?.ppid).toBe(primary);
    const before = await requestTotal(cluster.port);
    expect(before).toBeGreaterThanOrEqual(20);
    process.kill(worker!, 'SIGKILL');
    // Gone means reaped by the primary, not merely a zombie: after SIGKILL the thread-group leader
    // shows `Z` while the process's last threads are still exiting, holding its files, so its listen
    // socket stays in the port's SO_REUSEPORT group for up to a few hundred milliseconds more and the
    // kernel resets the connections it hands that socket meanwhile (net.ipv4.tcp_migrate_req=0): no
    // process of the edge could answer those. Once reaped, every thread has exited and the socket is
    // closed.
    await waitUntil(async () => readProc(worker!) === undefined, 5000, 'worker reaped');
    // From then on every scrape is answered (by the primary until the replacement joins), and no sum
    // is below the one before it: the dead worker's counts stay in.
    let total = before;
    const deadline = Date.now() + 20_000;
    for (let replaced = false; !replaced;) {
      const now = await requestTotal(cluster.port);
      expect(now).toBeGreaterThanOrEqual(total);
      total = now;
      const pid = answeringPid((await freshGet(cluster.port, '/healthz')).body);
      replaced = pid !== undefined && pid !== primary && pid !== worker;
      if (!replaced && Date.now() > deadline) throw new Error('timed out waiting for a new worker ready');
    }
    // Its replacement joined; the sum still holds the dead worker's counts, and the crash is counted.
    expect(await requestTotal(cluster.port)).toBeGreaterThanOrEqual(total);
    expect((await freshRequest(cluster.port, 'GET', '/metrics')).body).toMatch(/^edge_worker_restarts_total 1$/m);
  });
});

/** Every edge_http_requests_total series added up. */
async function requestTotal(port: number): Promise<number> {
  const res = await freshRequest(port, 'GET', '/metrics');
  expect(res.status).toBe(200);
  return res.body
    .split('\n')
    .filter((l) => l.startsWith('edge_http_requests_total{'))
    .reduce((sum, l) => sum + Number(l.split(' ').at(-1)), 0);
}

async function pushCount(port: number): Promise<number> {
  const text = (await freshRequest(port, 'GET', '/metrics')).body;
  const line = text
    .split('\n')
    .find((l) => l.startsWith('edge_http_requests_total{') && l.includes('route="push"') && l.includes('status="200"'));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

describe('a starting edge worker', () => {
  it('joins the port only once it is ready, so no connection of the fleet lands on a process that must refuse it', async () => {
    // Redis is not there yet: the primary listens (and answers /readyz 503), the worker waits.
    const redisPort = await freePort();
    const redisDir = path.join(testEnv.dataDir, uniquePrefix('edge-join'));
    let redis: RedisHandle | undefined;
    const startOwnRedis = async () => (redis ??= await startRedis({ dataDir: redisDir, port: redisPort }));
    const world = await EdgeWorld.create({ redisUrl: `redis://127.0.0.1:${redisPort}` });
    try {
      await using edge = await spawnEdge(
        world.env({ EDGE_PROCESSES: '2', INGEST_PORT: String(await freePort()), LOG_LEVEL: 'info', RATE_LIMIT_PER_SECOND: '0' }),
        { waitReady: false },
      );
      const pids = new Set<number>();
      const probe = async (pathname: string) => {
        const res = await freshGet(edge.port, pathname);
        if (res.status === 200) pids.add(answeringPid(res.body)!);
      };
      // The worker is up once it says it waits (or, were it listening already, once it answers).
      await waitUntil(
        async () => edge.output().includes('joining the port once ready') || (await probe('/healthz'), pids.size === 2),
        20_000,
        'the worker to start',
      );
      // 40 fresh connections: were the worker listening, all of them reaching one process has odds of 2^-39.
      for (let i = 0; i < 40; i++) await probe('/healthz');
      expect(pids.size).toBe(1);

      await startOwnRedis();
      // Both processes ready: the worker joined the port, and the primary (which listened all along) recovered.
      pids.clear();
      await waitUntil(async () => (await probe('/readyz'), pids.size === 2), 20_000, 'both processes ready');
      const c = await world.collector();
      for (let i = 0; i < 20; i++) {
        const res = await freshRequest(
          edge.port,
          'POST',
          '/api/v1/metrics/push',
          { authorization: `Bearer ${c.token}`, 'content-type': 'application/json' },
          `{"join":${i}}`,
        );
        expect(res.status).toBe(200);
      }
      // Both subscribed to the change feed, though Redis was away when they first tried: a
      // revocation reaches every process within 1 s.
      const jtis = await revokeCollectorTokens(world.pool, c.id, 'revoked');
      const started = Date.now();
      await publishCollectorChange(world.redis, world.keys, { collector_id: c.id, kind: 'revoked', jtis });
      const pushFresh = (i: number) =>
        freshRequest(
          edge.port,
          'POST',
          '/api/v1/metrics/push',
          { authorization: `Bearer ${c.token}`, 'content-type': 'application/json' },
          `{"after":${i}}`,
        );
      let allRefused = false;
      while (!allRefused && Date.now() - started < 1000)
        allRefused = (await Promise.all(Array.from({ length: 8 }, (_, i) => pushFresh(i)))).every((a) => a.status === 401);
      expect(allRefused).toBe(true);
      expect(Date.now() - started).toBeLessThan(1000);
      for (let i = 0; i < 16; i++) expect((await pushFresh(100 + i)).status).toBe(401);
    } finally {
      // The world's clean-up talks to its Redis: start it if the test failed before it did.
      await startOwnRedis();
      await world[Symbol.asyncDispose]();
      await redis?.stop();
    }
  });
});

describe('SIGTERM drain', () => {
  it('turns readiness off, finishes the in-flight push, exits 0', async () => {
    // A Redis of its own: its writes are paused below, which must not stall other suites' Redis.
    const redis = await startOnFreePort((port) =>
      startRedis({ dataDir: path.join(testEnv.dataDir, uniquePrefix('drain-redis')), port }),
    );
    await using _stopRedis = { [Symbol.asyncDispose]: () => redis.stop() };
    await using world = await EdgeWorld.create({ redisUrl: redis.url });
    const c = await world.collector();
    const edge = await spawnEdge(world.env({ INGEST_PORT: String(await freePort()) }));
    try {
      let readyDuringDrain = '';
      const keepAlive = freshRequest(edge.port, 'GET', '/healthz'); // sanity: the edge answers
      expect((await keepAlive).status).toBe(200);
      // Redis holds every write for 600 ms (reads go on): the push's enqueue is still waiting for
      // Redis when SIGTERM arrives.
      await world.redis.call('CLIENT', 'PAUSE', '600', 'WRITE');
      let answered = false;
      const inflight = fetch(`${edge.url}/api/v1/metrics/push`, {
        method: 'POST',
        headers: { authorization: `Bearer ${c.token}`, 'content-type': 'application/json' },
        body: '{"drain":1}',
      }).finally(() => (answered = true));
      await new Promise((r) => setTimeout(r, 150));
      expect(answered).toBe(false);
      const exited = edge.stop();
      await new Promise((r) => setTimeout(r, 150));
      readyDuringDrain = await fetch(`${edge.url}/readyz`).then(
        (r) => String(r.status),
        () => 'refused',
      );
      const res = await inflight;
      expect(res.status).toBe(200);
      const body = (await res.json()) as { push_id: string };
      expect(await exited).toBe(0);
      // Either the listen socket is already closed, or a reused connection hears 503.
      expect(['refused', '503']).toContain(readyDuringDrain);
      expect((await world.queuedPushes()).map((p) => p.push_id)).toContain(body.push_id);
    } finally {
      await edge.stop();
    }
  });
});
