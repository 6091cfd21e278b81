/**
 * `npm run chaos -- [--minutes N] [--seed S] [--collectors C] [--fault-gap S] [--timeout-ms MS] [--keep]`: every fault of
 * the single-fault tests at once, for minutes, under load, then an audit of exactly-once storage.
 *
 * Brings up its own PostgreSQL and Redis (AOF, appendfsync everysec), an admin service (in this
 * process), one ingest edge of two processes and two writers (the harnesses of test/), registers the
 * collectors through the admin service and drives each with the agent's own push client (spool,
 * pusher: same Idempotency-Key on 503/timeouts/connection errors, Retry-After honoured) and
 * heartbeats. Meanwhile, at seeded random intervals, it injects: SIGKILL of the edge's worker
 * process, SIGKILL of a writer, SIGTERM of a writer mid-batch (its batch held up by a lock), a
 * Redis crash (SIGKILL of redis-server: within what `appendfsync everysec` promises, README "When
 * Redis or PostgreSQL goes away"), Redis frozen (SIGSTOP) for seconds, PostgreSQL stopped immediately (SIGQUIT) and started again, and
 * PostgreSQL slowed (its processes SIGSTOPped, or a session holding a lock on the ledger). Then it
 * lets everything drain and audits: every push answered 200 is in collector_metrics exactly once
 * (all its rows, checksum matching), nothing stored that was never sent, no dead letters, collector
 * counters equal to what was committed, and `npm run lost-pushes` finds nothing. Exit code 1 on any
 * discrepancy. README "Operations: the chaos run".
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import pg from 'pg';
import { createCentralClient, createPusher, openSpool, type Pusher, type Spool } from '@pga/collector';
import { migrateDatabase } from '@pga/db';
import {
  alive,
  freePort,
  processTree,
  startPostgres,
  startRedis,
  waitFor,
  type PostgresHandle,
  type RedisHandle,
} from '@pga/local-stack';
import { createLogger } from '@pga/logger';
import { redisKeys } from '@pga/redis-keys';
import { seededRandom } from '../bench/src/load/payloads';
import { createHarness, edgeEnvOf, type Harness } from '../test/admin/harness';
import { form } from '../test/admin/fixtures';
import { spawnEdge, type EdgeProcess } from '../test/edge/harness';
import { spawnWriter, type ChildWriter } from '../test/writer/child-writer';
import { ensureDatabase } from './lib/setup';

const root = path.resolve(import.meta.dirname, '..');
const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string', default: '3' },
    seed: { type: 'string' },
    collectors: { type: 'string', default: '50' },
    'port-base': { type: 'string' },
    /** Longest gap between two faults of one injector, seconds (the shortest is a fifth of it). */
    'fault-gap': { type: 'string', default: '15' },
    /** Injectors running side by side (their faults overlap). */
    injectors: { type: 'string', default: '2' },
    /** The agents' HTTP timeout (COLLECTOR_HTTP_TIMEOUT_MS), ms. */
    'timeout-ms': { type: 'string', default: '5000' },
    keep: { type: 'boolean', default: false },
  },
});
const minutes = Number(args.minutes);
const seed = args.seed !== undefined ? Number(args.seed) : Math.floor(Math.random() * 2 ** 31);
const collectorCount = Number(args.collectors);
const faultGapMs = Number(args['fault-gap']) * 1000;
const timeoutMs = Number(args['timeout-ms']);
const lanes = Number(args.injectors);
if (
  !(minutes > 0) ||
  !Number.isInteger(seed) ||
  !(collectorCount > 0) ||
  !(faultGapMs > 0) ||
  !(timeoutMs >= 100) ||
  !Number.isInteger(lanes)
) {
  console.error(
    'usage: npm run chaos -- [--minutes N] [--seed S] [--collectors C] [--port-base P] [--fault-gap SECONDS] [--timeout-ms MS] [--injectors N] [--keep]',
  );
  process.exit(2);
}

// The fault schedule and the load's shape follow from the seed.
const random = seededRandom(seed);
const between = (lo: number, hi: number) => lo + random() * (hi - lo);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const sha256 = (b: string | Buffer) => createHash('sha256').update(b).digest('hex');
const started = Date.now();
const log = (msg: string) => console.log(`[chaos ${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s] ${msg}`);

let nextPort = args['port-base'] !== undefined ? Number(args['port-base']) : undefined;
const port = async () => (nextPort !== undefined ? nextPort++ : freePort());

const exitOf = (pid: number, timeoutMs = 60_000) => waitFor(`pid ${pid} to exit`, () => !alive(pid), timeoutMs, 50);

// ---------------------------------------------------------------------------------------------
// The servers: PostgreSQL and Redis of this run, stopped and started again by the faults.
// ---------------------------------------------------------------------------------------------
const workDir = path.join(root, '.data', `chaos-${process.pid}`);
mkdirSync(workDir, { recursive: true });
const pgPort = await port();
const redisPort = await port();
// fsync off is safe for a process crash (the page cache keeps it); synchronous_commit must stay on:
// a COMMIT the writer saw must survive an immediate stop, or the writer's ack would lose it.
const startPg = () =>
  startPostgres({
    dataDir: path.join(workDir, 'postgres'),
    port: pgPort,
    ephemeral: true,
    settings: { synchronous_commit: 'on' },
  });
const startRd = () => startRedis({ dataDir: path.join(workDir, 'redis'), port: redisPort });
let pgServer: PostgresHandle = await startPg();
let redisServer: RedisHandle = await startRd();
log(`PostgreSQL 127.0.0.1:${pgPort}, Redis 127.0.0.1:${redisPort} (AOF, appendfsync everysec), seed ${seed}`);

// The test helpers' environment (scripts/test.ts sets the same): the admin harness clones its
// database from the migrated template on this cluster.
Object.assign(process.env, {
  PGA_TEST_PG_URL: pgServer.url,
  PGA_TEST_PG_PORT: String(pgPort),
  PGA_TEST_TEMPLATE_DB: 'pga_template',
  PGA_TEST_REDIS_URL: redisServer.url,
  PGA_TEST_DATA_DIR: workDir,
});
await ensureDatabase(pgServer.url, 'pga_template');
await migrateDatabase(pgServer.urlFor('pga_template'));

const prefix = `chaos-${seed}`;
const h: Harness = await createHarness({ REDIS_URL: redisServer.url, REDIS_KEY_PREFIX: prefix });
const dbUrl = h.service.deps.config.DATABASE_URL;
const edgeEnv = { ...edgeEnvOf(h, redisServer.url), EDGE_PROCESSES: '2', INGEST_PORT: String(await port()) };
const writerEnv = (writerPort: number) => ({
  DATABASE_URL: dbUrl,
  REDIS_URL: redisServer.url,
  REDIS_KEY_PREFIX: prefix,
  WRITER_PORT: String(writerPort),
  WRITER_HOST: '127.0.0.1',
  LOG_LEVEL: 'warn',
  WRITER_MIGRATE: 'false',
  // A killed writer's jobs come back after the lock expires: 10 s instead of 30 keeps the run short.
  WRITER_LOCK_DURATION_MS: '10000',
  WRITER_STALLED_INTERVAL_MS: '5000',
});

// ---------------------------------------------------------------------------------------------
// The services: one edge of two processes, two writers; restarted whenever a fault ends one.
// ---------------------------------------------------------------------------------------------
const logs: Record<string, string[]> = {};
const keepOutput = (name: string, text: string) => (logs[name] ??= []).push(text);

let edge: EdgeProcess = await spawnEdge(edgeEnv);
const writerPorts = [await port(), await port()];
const writers: ChildWriter[] = [];
for (const [i, p] of writerPorts.entries()) writers[i] = spawnWriter(writerEnv(p));
await waitFor(
  'writers ready',
  async () => (await Promise.all(writerPorts.map((p) => fetch(`http://127.0.0.1:${p}/readyz`)))).every((r) => r.ok),
  60_000,
  200,
);
log(`edge ${edge.url} (2 processes), writers on ${writerPorts.join(', ')}`);

/**
 * Pushes the writers' ledger skipped (a redelivered job stored already: a writer died between COMMIT
 * and ack, or a job stalled), read from each writer process's /metrics every second: the last value
 * each process reported, summed.
 */
const writerCounters = new Map<number, { duplicates: number; stored: number }>();
async function scrapeWriters() {
  for (const [i, w] of writers.entries()) {
    const text = await fetch(`http://127.0.0.1:${writerPorts[i]}/metrics`, { signal: AbortSignal.timeout(900) }).then(
      (r) => r.text(),
      () => '',
    );
    const read = (name: string) => Number(new RegExp(`^${name} (\\d+)`, 'm').exec(text)?.[1] ?? NaN);
    const duplicates = read('writer_pushes_duplicate_total');
    const stored = read('writer_pushes_stored_total');
    if (w.child.pid !== undefined && Number.isFinite(duplicates) && Number.isFinite(stored))
      writerCounters.set(w.child.pid, { duplicates, stored });
  }
}

async function restartWriter(i: number) {
  keepOutput(`writer-${i}`, writers[i]!.output());
  writers[i] = spawnWriter(writerEnv(writerPorts[i]!));
}

// ---------------------------------------------------------------------------------------------
// The collectors: registered through the admin service, driven by the agent's push client.
// ---------------------------------------------------------------------------------------------
interface Sent {
  collectorId: string;
  records: number;
  checksum: string;
}
interface Acked {
  pushId: string;
  records: number;
  duplicate: boolean;
}
const sent = new Map<string, Sent>(); // by Idempotency-Key
const acked = new Map<string, Acked>(); // by Idempotency-Key
const answers: Record<string, number> = {};
const heartbeats = { ok: 0, failed: 0 };
/** Every heartbeat answered 200: the minute(s) it belongs to, for collector_heartbeats. */
const heartbeatMinutes: { collectorId: string; minutes: string[] }[] = [];
const count = (k: string) => (answers[k] = (answers[k] ?? 0) + 1);

interface Agent {
  id: string;
  spool: Spool;
  pusher: Pusher;
  heartbeat(): Promise<void>;
}
const quiet = createLogger({ name: 'chaos-agent', level: 'silent', pretty: false });
const admin = h.caller(h.admin);
const agents: Agent[] = [];
for (let i = 0; i < collectorCount; i++) {
  const reg = await admin.collectors.register(form({ name: `chaos-${i}`, collection_interval: 60 }));
  const id = reg.collector.id;
  const credentials = { collectorId: id, token: reg.token };
  const inner = createCentralClient({ baseUrl: edge.url, credentials: () => credentials, timeoutMs });
  const central = {
    ...inner,
    async push(gzipped: Buffer, key: string) {
      const res = await inner.push(gzipped, key);
      count(res.ok ? `${res.status}` : `${res.status || 'network'} ${res.code}`);
      if (res.ok) {
        const body = res.body as { records?: number; duplicate?: boolean; push_id?: string };
        const previous = acked.get(key);
        if (!previous || !body.duplicate)
          acked.set(key, { pushId: String(body.push_id), records: Number(body.records), duplicate: body.duplicate === true });
      }
      return res;
    },
  };
  const spool = await openSpool({ dir: path.join(workDir, 'spool', id), maxBytes: 1 << 30, maxFiles: 100_000, logger: quiet });
  const pusher = createPusher({
    spool,
    central,
    refreshToken: async () => false,
    logger: quiet,
    maxPerSecond: 20,
    backoff: { baseMs: 250, maxMs: 5000 },
    collectorId: () => id,
  });
  pusher.start();
  let beats = 0;
  agents.push({
    id,
    spool,
    pusher,
    async heartbeat() {
      const minute = (t: number) => new Date(Math.floor(t / 60_000) * 60_000).toISOString();
      const before = Date.now();
      const res = await central.heartbeat({
        timestamp: new Date().toISOString(),
        status: 'active',
        metrics_count: beats++,
        collection_time_ms: 12,
      });
      if (res.ok) {
        heartbeats.ok++;
        // The edge's clock put it in one of these minutes (this machine's clock, before and after).
        heartbeatMinutes.push({ collectorId: id, minutes: [...new Set([minute(before), minute(Date.now())])] });
      } else heartbeats.failed++;
    },
  });
}
log(`${agents.length} collectors registered through the admin service`);

const LARGE_EVERY = 200;
let largePushes = 0;

/** One snapshot into the agent's spool, as the agent's collection does (envelope shape). */
async function collect(agent: Agent) {
  const key = randomUUID();
  // One push in LARGE_EVERY is over 1 MiB: the edge keeps its body in Redis apart from its job (v3).
  const large = random() < 1 / LARGE_EVERY;
  const n = 1 + Math.floor(random() * 6);
  const metrics = Array.from({ length: n }, (_, i) => ({
    type: ['pg_stats', 'pg_query_stats', 'pg_activity', 'pg_locks'][i % 4],
    database: `db${i % 3}`,
    timestamp: new Date().toISOString(),
    chaos_key: key,
    i,
    queryid: BigInt.asIntN(64, BigInt(Math.floor(random() * 2 ** 53)) * 1009n).toString(),
    calls: Math.floor(random() * 1e6),
    ...(large ? { query: randomBytes(Math.ceil(1_600_000 / n / 2)).toString('hex') } : {}),
  }));
  if (large) largePushes++;
  const text = JSON.stringify({ collector_id: agent.id, hostname: 'chaos', version: 'chaos', metrics_count: n, metrics })
    // a 64-bit integer beyond 2^53, unquoted, as pg_stat_statements' queryid is sent
    .replace(/"queryid":"(-?\d+)"/g, '"queryid":$1');
  sent.set(key, { collectorId: agent.id, records: n, checksum: sha256(text) });
  await agent.spool.add(key, gzipSync(text));
  agent.pusher.notify();
}

// ---------------------------------------------------------------------------------------------
// The faults.
// ---------------------------------------------------------------------------------------------
const faults: Record<string, number> = {};
let crashesDuringRewrite = 0;
/** A fault skipped because another one holds what it needs. */
class Busy extends Error {}
const busy = new Set<string>();
const lock = async (resource: string, fn: () => Promise<void>) => {
  if (busy.has(resource)) return false;
  busy.add(resource);
  try {
    await fn();
  } finally {
    busy.delete(resource);
  }
  return true;
};

/** The edge's forked worker: a node process whose parent is the edge's primary (tsx CLI → primary → worker). */
function edgeWorkerPid(): number | undefined {
  const isNode = (pid: number) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0')[0]!.endsWith('node');
    } catch {
      return false;
    }
  };
  const tree = processTree(edge.child.pid!);
  const primary = tree.find((p) => p.ppid === edge.child.pid && isNode(p.pid));
  return tree.find((p) => primary && p.ppid === primary.pid && isNode(p.pid))?.pid;
}

function postgresPids(): number[] {
  return processTree(pgServer.pid).map((p) => p.pid);
}

async function pgAdminSession(): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: dbUrl, application_name: 'chaos' });
  c.on('error', () => undefined);
  await c.connect();
  return c;
}

/** A session holding ingest_ledger's lock for `ms`: every batch's COMMIT path waits on it. */
async function holdLedgerLock(ms: number): Promise<void> {
  const c = await pgAdminSession();
  try {
    await c.query('BEGIN');
    await c.query('LOCK TABLE ingest_ledger IN ACCESS EXCLUSIVE MODE');
    await sleep(ms);
    await c.query('COMMIT');
  } finally {
    await c.end().catch(() => undefined);
  }
}

const injectors: Record<string, () => Promise<boolean>> = {
  'edge worker SIGKILL': () =>
    lock('edge', async () => {
      const target = edgeWorkerPid();
      if (target === undefined) throw new Error('no edge worker process found');
      process.kill(target, 'SIGKILL');
      await sleep(between(500, 3000));
    }),
  'writer SIGKILL': () => {
    const i = Math.floor(random() * 2);
    return lock(`writer-${i}`, async () => {
      await writers[i]!.kill('SIGKILL');
      await sleep(between(200, 5000));
      await restartWriter(i);
    });
  },
  'writer SIGTERM mid-batch': () => {
    const i = Math.floor(random() * 2);
    return lock(`writer-${i}`, async () => {
      const done = await lock('pg', async () => {
        // The batch in flight waits on the ledger's lock while the writer is asked to stop; its
        // drain (WRITER_DRAIN_TIMEOUT_MS) ends before or after the lock is let go.
        const held = holdLedgerLock(between(1000, 14_000)).catch(() => undefined);
        await sleep(between(300, 1500));
        await writers[i]!.kill('SIGTERM');
        await held;
        await restartWriter(i);
      });
      if (!done) throw new Busy();
    });
  },
  'Redis crash (SIGKILL) + restart': () =>
    lock('redis', async () => {
      // Half the time during an AOF rewrite (a fork writing the new base file while the old one grows).
      if (random() < 0.5) {
        const c = new Redis(redisServer.url, { maxRetriesPerRequest: 1 });
        c.on('error', () => undefined);
        await c.bgrewriteaof().catch(() => undefined);
        c.disconnect();
        await sleep(between(0, 500));
        crashesDuringRewrite++;
      }
      process.kill(redisServer.pid, 'SIGKILL');
      await exitOf(redisServer.pid);
      await sleep(between(200, 5000));
      redisServer = await startRd();
    }),
  'Redis SIGSTOP (frozen)': () =>
    lock('redis', async () => {
      process.kill(redisServer.pid, 'SIGSTOP');
      await sleep(between(1000, 8000));
      process.kill(redisServer.pid, 'SIGCONT');
    }),
  'PostgreSQL immediate stop + start': () =>
    lock('pg', async () => {
      process.kill(pgServer.pid, 'SIGQUIT');
      await exitOf(pgServer.pid);
      await sleep(between(200, 8000));
      pgServer = await startPg();
    }),
  'PostgreSQL SIGSTOP (frozen)': () =>
    lock('pg', async () => {
      const pids = postgresPids();
      for (const pid of pids) process.kill(pid, 'SIGSTOP');
      await sleep(between(1000, 6000));
      for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGCONT');
    }),
  'PostgreSQL slow (ledger lock held)': () => lock('pg', () => holdLedgerLock(between(1000, 8000))),
};
const faultNames = Object.keys(injectors);

async function injectorLane(until: number) {
  while (Date.now() < until) {
    await sleep(between(faultGapMs / 5, faultGapMs));
    if (Date.now() >= until) break;
    const name = faultNames[Math.floor(random() * faultNames.length)]!;
    const t = Date.now();
    try {
      if (await injectors[name]!()) {
        faults[name] = (faults[name] ?? 0) + 1;
        log(`fault: ${name} (${((Date.now() - t) / 1000).toFixed(1)} s)`);
      }
    } catch (err) {
      if (err instanceof Busy) continue;
      faults[`${name} (failed to inject)`] = (faults[`${name} (failed to inject)`] ?? 0) + 1;
      log(`fault ${name} failed: ${(err as Error).message}`);
    }
  }
}

/** The edge primary or a writer exiting on its own is a finding; they are started again. */
async function supervise(until: () => boolean) {
  while (!until()) {
    await sleep(1000);
    await scrapeWriters();
    if (edge.child.exitCode !== null || edge.child.signalCode !== null) {
      log(`edge primary exited by itself (${edge.child.exitCode ?? edge.child.signalCode}): restarting it`);
      count('edge primary exit (unexpected)');
      keepOutput('edge', edge.output());
      edge = await spawnEdge(edgeEnv).catch(async () => {
        await sleep(2000);
        return spawnEdge(edgeEnv);
      });
    }
    for (const [i, w] of writers.entries()) {
      if (busy.has(`writer-${i}`)) continue;
      if (w.child.exitCode !== null || w.child.signalCode !== null) {
        log(`writer ${i} exited by itself (${w.child.exitCode ?? w.child.signalCode}): restarting it`);
        count(`writer exit (unexpected)`);
        await restartWriter(i);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The run.
// ---------------------------------------------------------------------------------------------
const until = Date.now() + minutes * 60_000;
let loadDone = false;
const load = (async () => {
  const next = agents.map(() => Date.now() + between(0, 2000));
  const beat = agents.map(() => Date.now() + between(0, 5000));
  while (Date.now() < until) {
    const now = Date.now();
    for (const [i, a] of agents.entries()) {
      if (now >= next[i]!) {
        next[i] = now + between(500, 3500);
        await collect(a);
      }
      if (now >= beat[i]!) {
        beat[i] = now + between(3000, 7000);
        void a.heartbeat();
      }
    }
    await sleep(100);
  }
  loadDone = true;
})();
let drained = false;
const supervisor = supervise(() => loadDone && drained);
await Promise.all([load, ...Array.from({ length: lanes }, () => injectorLane(until))]);
log(`load and faults over: ${sent.size} pushes collected; draining`);

// Heal: every server and service up (a fault that ended between checks has been restarted).
await waitFor('every spool pushed', () => agents.every((a) => a.spool.oldest() === undefined), 10 * 60_000, 500);
for (const a of agents) await a.pusher.stop();
const keys = redisKeys(prefix);
const redis = new Redis(redisServer.url, { maxRetriesPerRequest: null });
redis.on('error', () => undefined);
const queue = new Queue(keys.pushQueue, { connection: redis, prefix: keys.bullPrefix });
await waitFor(
  'the queue drained',
  async () => {
    const c = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'paused', 'waiting-children');
    return Object.values(c).every((n) => n === 0);
  },
  10 * 60_000,
  500,
);
await sleep(10_000); // the writers' last heartbeat flushes and rollup fold
drained = true;
await supervisor;

// ---------------------------------------------------------------------------------------------
// The audit.
// ---------------------------------------------------------------------------------------------
const pool = new pg.Pool({ connectionString: dbUrl, max: 2 });
const problems: string[] = [];
const stored = new Map<string, { rows: number; items: number; checksums: string[]; keys: string[] }>();
{
  const { rows } = await pool.query<{ push_id: string; rows: string; items: string; checksums: string[]; keys: string[] }>(
    `SELECT push_id::text, count(*) AS rows, count(DISTINCT metric_data->>'i') AS items,
            array_agg(DISTINCT checksum) AS checksums, array_agg(DISTINCT metric_data->>'chaos_key') AS keys
       FROM collector_metrics GROUP BY push_id`,
  );
  for (const r of rows)
    stored.set(r.push_id, { rows: Number(r.rows), items: Number(r.items), checksums: r.checksums, keys: r.keys });
}
const ledger = new Map<string, { rows: number; checksum: string; collector: string }>();
{
  const { rows } = await pool.query<{ push_id: string; row_count: number; checksum: string; collector_id: string }>(
    'SELECT push_id::text, row_count, checksum, collector_id::text FROM ingest_ledger',
  );
  for (const r of rows) ledger.set(r.push_id, { rows: r.row_count, checksum: r.checksum, collector: r.collector_id });
}
let lost = 0;
let duplicated = 0;
let corrupt = 0;
const pushIdOfKey = new Map<string, string>();
for (const [key, a] of acked) {
  const s = sent.get(key)!;
  pushIdOfKey.set(key, a.pushId);
  const got = stored.get(a.pushId);
  if (!got) {
    lost++;
    problems.push(
      `lost: push ${a.pushId} (key ${key}, collector ${s.collectorId}, ${s.records} rows) answered 200 but not stored`,
    );
    continue;
  }
  if (got.rows > s.records) {
    duplicated++;
    problems.push(`duplicated: push ${a.pushId} has ${got.rows} rows, ${s.records} sent`);
  } else if (got.rows < s.records || got.items !== s.records) {
    corrupt++;
    problems.push(`partial: push ${a.pushId} has ${got.rows} rows (${got.items} distinct), ${s.records} sent`);
  }
  if (a.records !== s.records) problems.push(`answer: push ${a.pushId} answered records ${a.records}, ${s.records} sent`);
  if (got.checksums.length !== 1 || got.checksums[0] !== s.checksum || got.keys.length !== 1 || got.keys[0] !== key) {
    corrupt++;
    problems.push(
      `checksum: push ${a.pushId} stored with ${got.checksums.join(',')} / keys ${got.keys.join(',')}, sent ${s.checksum}`,
    );
  }
  const l = ledger.get(a.pushId);
  if (!l || l.rows !== s.records || l.checksum !== s.checksum)
    problems.push(`ledger: push ${a.pushId} ${l ? `has ${l.rows} rows, checksum ${l.checksum}` : 'missing'}`);
}
const sentPushIds = new Set(pushIdOfKey.values());
const notAcked = [...sent.keys()].filter((k) => !acked.has(k));
for (const k of notAcked) problems.push(`never answered 200 by the end: key ${k}`);
let phantom = 0;
for (const [pushId, s] of stored) {
  if (sentPushIds.has(pushId)) continue;
  phantom++;
  problems.push(`stored but never sent (or never acknowledged): push ${pushId}, ${s.rows} rows, keys ${s.keys.join(',')}`);
}
for (const pushId of ledger.keys()) if (!stored.has(pushId)) problems.push(`ledger row without metrics: ${pushId}`);

const failedJobs = await queue.getJobs(['failed'], 0, 1000);
for (const j of failedJobs)
  problems.push(`dead letter: job ${j.id} (${j.data?.pushes?.length ?? '?'} pushes): ${j.failedReason}`);

const counters = await pool.query<{ id: string; success_count: string; metrics_collected: string; pushes: string; rows: string }>(
  `SELECT c.id::text, c.success_count, c.metrics_collected,
          (SELECT count(*) FROM ingest_ledger l WHERE l.collector_id = c.id) AS pushes,
          (SELECT coalesce(sum(row_count), 0) FROM ingest_ledger l WHERE l.collector_id = c.id) AS rows
     FROM collectors c WHERE c.deleted_at IS NULL`,
);
const expectedByCollector = new Map<string, { pushes: number; rows: number }>();
for (const [key] of acked) {
  const s = sent.get(key)!;
  const e = expectedByCollector.get(s.collectorId) ?? { pushes: 0, rows: 0 };
  e.pushes++;
  e.rows += s.records;
  expectedByCollector.set(s.collectorId, e);
}
let counterMismatches = 0;
for (const c of counters.rows) {
  const e = expectedByCollector.get(c.id) ?? { pushes: 0, rows: 0 };
  if (Number(c.success_count) !== e.pushes || Number(c.metrics_collected) !== e.rows || Number(c.pushes) !== e.pushes) {
    counterMismatches++;
    problems.push(
      `counters: collector ${c.id} success_count ${c.success_count} metrics_collected ${c.metrics_collected}, ledger ${c.pushes}/${c.rows}, acknowledged ${e.pushes}/${e.rows}`,
    );
  }
}
// Rollups: fold what is pending (as the writers' schedule does) and compare with the rows stored.
await pool.query('SELECT pga_fold_rollup_deltas()');
const rollups = await pool.query<{ collector_id: string; rolled: string; stored: string }>(
  `SELECT coalesce(r.collector_id, m.collector_id)::text AS collector_id, coalesce(r.rolled, 0) AS rolled, coalesce(m.stored, 0) AS stored
     FROM (SELECT collector_id, sum(row_count) AS rolled FROM collector_metrics_rollup GROUP BY 1) r
     FULL JOIN (SELECT collector_id, count(*) AS stored FROM collector_metrics GROUP BY 1) m USING (collector_id)
    WHERE coalesce(r.rolled, 0) <> coalesce(m.stored, 0)`,
);
for (const r of rollups.rows) problems.push(`rollup: collector ${r.collector_id} rolled up ${r.rolled} rows, ${r.stored} stored`);

// Heartbeats: every minute with a heartbeat answered 200 has its collector_heartbeats row.
const heartbeatRows = new Set(
  (
    await pool.query<{ k: string }>(
      `SELECT collector_id::text || ' ' || to_char(minute AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS".000Z"') AS k FROM collector_heartbeats`,
    )
  ).rows.map((r) => r.k),
);
let missingMinutes = 0;
for (const { collectorId, minutes } of heartbeatMinutes) {
  if (minutes.some((m) => heartbeatRows.has(`${collectorId} ${m}`))) continue;
  missingMinutes++;
  if (missingMinutes <= 10)
    problems.push(`heartbeat: collector ${collectorId} answered 200 at ${minutes.join('/')}: no collector_heartbeats row`);
}
const noHeartbeat = await pool.query(
  'SELECT count(*)::int AS n FROM collectors WHERE deleted_at IS NULL AND last_heartbeat IS NULL',
);

// `npm run lost-pushes` as an operator runs it (no grace: everything has drained).
const lostCli = spawnSync(path.join(root, 'node_modules/.bin/tsx'), [path.join(root, 'scripts/lost-pushes.ts')], {
  cwd: root,
  env: {
    PATH: process.env.PATH,
    DATABASE_URL: dbUrl,
    REDIS_URL: redisServer.url,
    REDIS_KEY_PREFIX: prefix,
    LOST_PUSHES_GRACE_SECONDS: '0',
  },
  encoding: 'utf8',
});
const lostListed = lostCli.stdout.split('\n').filter((l) => l.trim()).length;
if (lostCli.status !== 0 || lostListed !== lost)
  problems.push(
    `lost-pushes: exit ${lostCli.status}, lists ${lostListed}, the audit found ${lost} lost: ${lostCli.stderr.trim()}`,
  );

const duplicateAnswers = [...acked.values()].filter((a) => a.duplicate).length;
await scrapeWriters();
const ledgerSkips = [...writerCounters.values()].reduce((n, c) => n + c.duplicates, 0);
const storedByWriters = [...writerCounters.values()].reduce((n, c) => n + c.stored, 0);
const edgeMetrics = await fetch(`${edge.url}/metrics`).then(
  (r) => r.text(),
  () => '',
);
const workerRestarts = /^edge_worker_restarts_total (\d+)/m.exec(edgeMetrics)?.[1] ?? '?';
console.log(`
chaos run: seed ${seed}, ${minutes} min, ${agents.length} collectors, ${lanes} injector(s), a fault every ${faultGapMs / 5000}–${faultGapMs / 1000} s each, agent timeout ${timeoutMs} ms
  pushes sent ${sent.size} (over 1 MiB: ${largePushes}), answered 200 ${acked.size} (first 200 a duplicate: ${duplicateAnswers}), rows ${[...acked.keys()].reduce((n, k) => n + sent.get(k)!.records, 0)}
  answers: ${Object.entries(answers)
    .map(([k, v]) => `${k} ×${v}`)
    .join(', ')}
  heartbeats: ${heartbeats.ok} ok, ${heartbeats.failed} failed; collectors without a stored heartbeat ${noHeartbeat.rows[0].n}
  edge worker restarts (edge_worker_restarts_total): ${workerRestarts}
  writers (${writerCounters.size} processes, as last scraped): pushes stored ${storedByWriters}, skipped by the ledger as stored already ${ledgerSkips}
  faults injected: ${Object.values(faults).reduce((a, b) => a + b, 0)}
${Object.entries(faults)
  .map(([k, v]) => `    ${k}: ${v}${k.startsWith('Redis crash') ? ` (${crashesDuringRewrite} during an AOF rewrite)` : ''}`)
  .join('\n')}
audit:
  lost ${lost}, duplicated ${duplicated}, partial/corrupt ${corrupt}, stored but never sent ${phantom}
  dead letters ${failedJobs.length}, counter mismatches ${counterMismatches}, rollup mismatches ${rollups.rows.length}, heartbeat minutes missing ${missingMinutes} of ${heartbeatMinutes.length}
  lost-pushes lists ${lostListed}
  ${problems.length === 0 ? 'OK: everything acknowledged is stored exactly once' : `${problems.length} problem(s):`}`);
for (const p of problems.slice(0, 50)) console.log(`    ${p}`);

// ---------------------------------------------------------------------------------------------
// Stop everything, by PID; keep the services' logs when something is wrong.
// ---------------------------------------------------------------------------------------------
await queue.close().catch(() => undefined);
redis.disconnect();
await pool.end();
keepOutput('edge', edge.output());
await edge.stop();
for (const [i, w] of writers.entries()) {
  keepOutput(`writer-${i}`, w.output());
  await w.kill('SIGTERM');
}
await h.service.close().catch(() => undefined);
await redisServer.stop().catch(() => undefined);
await pgServer.stop().catch(() => undefined);
if (problems.length > 0 || args.keep) {
  for (const [name, parts] of Object.entries(logs)) writeFileSync(path.join(workDir, `${name}.log`), parts.join('\n'));
  console.log(`logs and data kept in ${workDir}`);
} else {
  rmSync(workDir, { recursive: true, force: true });
}
process.exit(problems.length === 0 ? 0 : 1);
