/**
 * fleet-outage: the thundering herd after an outage, measured on loopback.
 *
 * Starts its own PostgreSQL, Redis, writer and edge (ports from FLEET_PORT_BASE, default 23050),
 * then runs N simulated collectors in this process. Each is the agent's real push path
 * (`createPusher` + `createCentralClient`, the default backoff and drain rate) over an in-memory
 * spool, "collecting" one ~2 KB snapshot every INTERVAL seconds at its own random phase. After a
 * warm-up, one outage of OUTAGE seconds: `edge` (the edge stopped and started again), `redis-full`
 * (Redis `maxmemory` set just above its use, so the edge is over its memory budget: 503) or
 * `redis-down` (Redis stopped and started again: 503 "queue unreachable"). Prints the per-second
 * push arrivals at the edge by answer, the peak arrival rate after recovery, the time until every
 * backlog is drained, and the audit (every snapshot acknowledged once, stored once).
 *
 *   node --import tsx bench/src/fleet-outage/fleet-outage.ts --collectors 1000 --outage redis-full
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import pg from 'pg';
import { migrateDatabase } from '@pga/db';
import { spawnServer, startPostgres, startRedis, stopChild, waitForProcesses } from '@pga/local-stack';
import { createLogger } from '@pga/logger';
import { createCollectorTokens } from '@pga/tokens';
import { createCentralClient, type CentralClient } from '../../../collector/src/central/central-client';
import { createPusher, type Pusher } from '../../../collector/src/push/pusher';
import type { Spool, SpoolEntry } from '../../../collector/src/spool/spool';
import { makeBodyPool, type PushBody } from '../load/payloads';

const REPO = path.resolve(import.meta.dirname, '../../..');
const { values: args } = parseArgs({
  options: {
    collectors: { type: 'string', default: '1000' },
    interval: { type: 'string', default: '10' },
    outage: { type: 'string', default: 'redis-full' },
    'outage-seconds': { type: 'string', default: '60' },
    warmup: { type: 'string', default: '20' },
    'max-after': { type: 'string', default: '400' },
  },
});
const N = Number(args.collectors);
const INTERVAL_MS = Number(args.interval) * 1000;
const OUTAGE = args.outage!;
const OUTAGE_MS = Number(args['outage-seconds']) * 1000;
const WARMUP_MS = Number(args.warmup) * 1000;
const MAX_AFTER_MS = Number(args['max-after']) * 1000;
const PORT_BASE = Number(process.env.FLEET_PORT_BASE ?? 23050);
const [PG_PORT, REDIS_PORT, WRITER_PORT, EDGE_PORT] = [PORT_BASE, PORT_BASE + 1, PORT_BASE + 2, PORT_BASE + 3];

/** An in-memory Spool (same contract as the agent's on-disk one, unbounded here). */
function memorySpool(): Spool & { bodies: Map<string, Buffer> } {
  const entries: SpoolEntry[] = [];
  const bodies = new Map<string, Buffer>();
  return {
    bodies,
    async add(pushId, gzipped) {
      const entry = { name: pushId, pushId, bytes: gzipped.length };
      entries.push(entry);
      bodies.set(pushId, gzipped);
      return entry;
    },
    oldest: () => entries[0],
    read: async (e) => bodies.get(e.pushId)!,
    async remove(e) {
      const i = entries.indexOf(e);
      if (i >= 0) entries.splice(i, 1);
      bodies.delete(e.pushId);
    },
    async setAside(e) {
      const i = entries.indexOf(e);
      if (i >= 0) entries.splice(i, 1);
    },
    stats: () => ({ files: entries.length, bytes: 0, dropped: 0, setAside: 0 }),
  };
}

// --- what the edge saw, per second since the start of the fleet ---
let t0 = 0;
const sec = () => Math.floor((Date.now() - t0) / 1000);
const perSecond = new Map<number, Record<string, number>>();
const per100ms = new Map<number, number>();
/** One request, counted in the second it was sent (its arrival at the edge), by its answer. */
function count(s: number, what: string) {
  const row = perSecond.get(s) ?? {};
  row[what] = (row[what] ?? 0) + 1;
  perSecond.set(s, row);
}
// Acks: push id (ours, the Idempotency-Key) → edge push ids acknowledged, duplicates.
const acks = new Map<string, { edgeId: string; duplicate: boolean }[]>();
const generated: string[] = [];

function recording(central: CentralClient): CentralClient {
  return {
    ...central,
    async push(body, pushId) {
      const b = Math.floor((Date.now() - t0) / 100);
      per100ms.set(b, (per100ms.get(b) ?? 0) + 1);
      const s = sec();
      const res = await central.push(body, pushId);
      count(s, res.ok ? '200' : res.status ? String(res.status) : 'net');
      if (res.ok) {
        const a = res.body as { push_id: string; duplicate?: boolean };
        const list = acks.get(pushId) ?? [];
        list.push({ edgeId: a.push_id, duplicate: a.duplicate === true });
        acks.set(pushId, list);
      }
      return res;
    },
  };
}

async function main() {
  const work = mkdtempSync(path.join(os.tmpdir(), 'fleet-outage-'));
  const cleanups: (() => Promise<void>)[] = [];
  const cleanup = async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
  };
  process.on('SIGINT', () => void cleanup().then(() => process.exit(130)));
  try {
    const pgh = await startPostgres({ dataDir: path.join(work, 'pg'), port: PG_PORT });
    cleanups.push(() => pgh.stop());
    const startOurRedis = () => startRedis({ dataDir: path.join(work, 'redis'), port: REDIS_PORT, appendOnly: true });
    let redis = await startOurRedis();
    cleanups.push(() => redis.stop());
    const admin = new pg.Client({ connectionString: pgh.url });
    await admin.connect();
    await admin.query('CREATE DATABASE pga_fleet');
    await admin.end();
    const databaseUrl = pgh.urlFor('pga_fleet');
    await migrateDatabase(databaseUrl);
    const secrets = {
      JWT_SECRET: randomUUID() + randomUUID(),
      ENCRYPTION_KEY: `k1:${Buffer.alloc(32, 7).toString('base64')}`,
      JWT_ISSUER: 'pganalytics-central',
      JWT_AUDIENCE: 'pganalytics-collectors',
    };
    const base = {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/tmp',
      DATABASE_URL: databaseUrl,
      REDIS_URL: redis.url,
      LOG_LEVEL: 'warn',
      ...secrets,
    };
    const service = async (name: string, entry: string, port: number, env: Record<string, string>, health: string) => {
      const child = spawnServer(process.execPath, ['--import', 'tsx', path.join(REPO, entry)], path.join(work, `${name}.log`), {
        cwd: REPO,
        env: { ...base, ...env },
      });
      await waitForProcesses(port, health, { timeoutMs: 90_000 });
      return child;
    };
    const writer = await service(
      'writer',
      'services/writer/src/main.ts',
      WRITER_PORT,
      { WRITER_PORT: String(WRITER_PORT), WRITER_HOST: '127.0.0.1' },
      '/healthz',
    );
    cleanups.push(() => stopChild(writer, 'SIGTERM'));
    const edgeEnv = { INGEST_PORT: String(EDGE_PORT), INGEST_HOST: '127.0.0.1' };
    const startEdge = () => service('edge', 'services/ingest-edge/src/main.ts', EDGE_PORT, edgeEnv, '/readyz');
    let edge = await startEdge();
    cleanups.push(() => stopChild(edge, 'SIGTERM'));

    const tokens = createCollectorTokens({
      secret: secrets.JWT_SECRET,
      issuer: secrets.JWT_ISSUER,
      audience: secrets.JWT_AUDIENCE,
    });
    const logger = createLogger({ name: 'fleet', level: 'silent' });
    const bodies: PushBody[] = makeBodyPool(42, '2k', 64);
    const fleet: { pusher: Pusher; spool: ReturnType<typeof memorySpool>; timer?: NodeJS.Timeout }[] = [];
    for (let i = 0; i < N; i++) {
      const id = randomUUID();
      const { token } = await tokens.issue(id);
      const spool = memorySpool();
      const central = recording(
        createCentralClient({
          baseUrl: `http://127.0.0.1:${EDGE_PORT}`,
          credentials: () => ({ collectorId: id, token }),
          timeoutMs: 15_000,
        }),
      );
      const pusher = createPusher({
        spool,
        central,
        refreshToken: async () => false,
        logger,
        maxPerSecond: 5,
        backoff: { baseMs: 1000, maxMs: 300_000 },
        collectorId: () => id,
      });
      fleet.push({ pusher, spool });
    }
    let collecting = true;
    t0 = Date.now();
    fleet.forEach((c, i) => {
      c.pusher.start();
      const collect = () => {
        if (!collecting) return;
        const pushId = randomUUID();
        generated.push(pushId);
        void c.spool.add(pushId, bodies[generated.length % bodies.length]!.gzip).then(() => c.pusher.notify());
      };
      setTimeout(() => {
        collect();
        c.timer = setInterval(collect, INTERVAL_MS);
      }, Math.random() * INTERVAL_MS);
      void i;
    });
    const backlog = () => fleet.reduce((m, c) => Math.max(m, c.spool.stats().files), 0);
    const spooled = () => fleet.reduce((s, c) => s + c.spool.stats().files, 0);
    const progress = setInterval(() => {
      const r = perSecond.get(sec() - 1) ?? {};
      console.error(`t=${sec()}s arrivals ${JSON.stringify(r)} spooled ${spooled()} max backlog ${backlog()}`);
    }, 5000);

    await new Promise((r) => setTimeout(r, WARMUP_MS));
    const outageStart = sec();
    console.error(`outage (${OUTAGE}) at t=${outageStart}s for ${OUTAGE_MS / 1000}s`);
    const r = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    if (OUTAGE === 'edge') {
      await stopChild(edge, 'SIGTERM');
    } else if (OUTAGE === 'redis-full') {
      await r.connect();
      const used = Number(/used_memory:(\d+)/.exec(await r.info('memory'))![1]);
      await r.config('SET', 'maxmemory', String(Math.floor(used * 1.05)));
    } else if (OUTAGE === 'redis-down') {
      await redis.stop();
    } else throw new Error(`unknown --outage ${OUTAGE}`);
    await new Promise((res) => setTimeout(res, OUTAGE_MS));
    if (OUTAGE === 'edge') edge = await startEdge();
    else if (OUTAGE === 'redis-full') await r.config('SET', 'maxmemory', '0');
    else redis = await startOurRedis();
    r.disconnect();
    const recovered = sec();
    const recoveredAt = Date.now();
    console.error(`recovered at t=${recovered}s`);
    // Drained: no collector holds more than the one snapshot of its current interval.
    let drainedAt: number | undefined;
    while (Date.now() - recoveredAt < MAX_AFTER_MS) {
      await new Promise((res) => setTimeout(res, 100));
      if (backlog() <= 1) {
        drainedAt = Date.now();
        break;
      }
    }
    collecting = false;
    for (const c of fleet) clearInterval(c.timer);
    const endWait = Date.now();
    while (spooled() > 0 && Date.now() - endWait < 120_000) await new Promise((res) => setTimeout(res, 200));
    for (const c of fleet) await c.pusher.stop();
    clearInterval(progress);

    // Wait for the writer to store everything acknowledged, then audit.
    const expectedPushes = [...acks.values()].filter((l) => l.length).length;
    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    let stored = new Map<string, number>();
    for (let i = 0; i < 240; i++) {
      const { rows } = await client.query<{ push_id: string; n: string }>(
        'SELECT push_id::text, count(*) AS n FROM collector_metrics GROUP BY push_id',
      );
      stored = new Map(rows.map((x) => [x.push_id, Number(x.n)]));
      if (stored.size >= expectedPushes) break;
      await new Promise((res) => setTimeout(res, 1000));
    }
    await client.end();
    let unsent = 0;
    let lost = 0;
    let dupStored = 0;
    let multiAck = 0;
    let dupAcks = 0;
    for (const id of generated) {
      const list = acks.get(id) ?? [];
      if (!list.length) {
        unsent++;
        continue;
      }
      if (list.length > 1) multiAck++;
      dupAcks += list.filter((a) => a.duplicate).length;
      const edgeIds = new Set(list.map((a) => a.edgeId));
      for (const e of edgeIds) {
        const n = stored.get(e) ?? 0;
        if (n === 0) lost++;
        else if (n > 4) dupStored++;
      }
      if (edgeIds.size > 1) dupStored++;
    }
    // --- report ---
    const rows = [...perSecond.entries()].sort((a, b) => a[0] - b[0]);
    const total = (row: Record<string, number>) => Object.values(row).reduce((a, b) => a + b, 0);
    const after = rows.filter(([s]) => s >= recovered);
    const peak = after.reduce((m, [, row]) => Math.max(m, total(row)), 0);
    const peak100 = [...per100ms.entries()].filter(([b]) => b >= recovered * 10).reduce((m, [, n]) => Math.max(m, n), 0);
    const refusedAfter = after.reduce((s, [, row]) => s + total(row) - (row['200'] ?? 0), 0);
    const during = rows.filter(([s]) => s >= outageStart && s < recovered);
    const duringTotal = during.reduce((s, [, row]) => s + total(row), 0);
    const summary = {
      collectors: N,
      interval_s: INTERVAL_MS / 1000,
      outage: OUTAGE,
      outage_s: OUTAGE_MS / 1000,
      steady_arrivals_per_s: N / (INTERVAL_MS / 1000),
      requests_during_outage_per_s: Math.round(duringTotal / Math.max(1, during.length)),
      peak_arrivals_per_s_after_recovery: peak,
      peak_arrivals_per_100ms_after_recovery: peak100,
      refused_after_recovery: refusedAfter,
      drained_after_recovery_s: drainedAt === undefined ? null : Math.round((drainedAt - recoveredAt) / 100) / 10,
      snapshots: generated.length,
      unsent,
      acknowledged_not_stored: lost,
      stored_twice: dupStored,
      acked_more_than_once: multiAck,
      duplicate_acks: dupAcks,
    };
    console.log(JSON.stringify(summary));
    console.log('second,' + ['200', '503', '429', 'net', 'other'].join(','));
    for (const [s, row] of rows.filter(([s]) => s >= outageStart - 3 && s <= recovered + 90)) {
      const other = total(row) - ['200', '503', '429', 'net'].reduce((a, k) => a + (row[k] ?? 0), 0);
      console.log([s - recovered, row['200'] ?? 0, row['503'] ?? 0, row['429'] ?? 0, row.net ?? 0, other].join(','));
    }
  } finally {
    await cleanup();
  }
}

await main();
process.exit(0);
