import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';
import { createSecretBox, sha256Hex } from '@pga/crypto';
import { recordIssuedToken } from '@pga/db';
import { freePort } from '@pga/local-stack';
import { publishCollectorChange, redisKeys } from '@pga/redis-keys';
import { createCollectorTokens } from '@pga/tokens';
import { createTestDatabase, testEnv, uniquePrefix } from '../../helpers';
import { until } from './run-collector';

const root = path.resolve(import.meta.dirname, '../../..');
/** The edge's JWT_SECRET unless `startEdge` is given another: one secret, so its key id is k1. */
export const JWT_SECRET = 'collector-e2e-secret-'.padEnd(48, 'x');
const ENCRYPTION_KEY = `k1:${Buffer.alloc(32, 9).toString('base64')}`;

interface Child {
  child: ChildProcess;
  output: () => string;
}

function spawnService(main: string, env: Record<string, string>): Child {
  // `node --import tsx` so the PID is the service itself (signals reach it, not a wrapper).
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, main)], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-20_000)));
  child.stderr!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-20_000)));
  return { child, output: () => out };
}

async function stopChild(c: Child, signal: NodeJS.Signals = 'SIGTERM') {
  if (c.child.exitCode !== null || c.child.signalCode !== null) return;
  const exited = new Promise((r) => c.child.once('exit', r));
  process.kill(c.child.pid!, signal);
  await exited;
}

/**
 * The real central for the collector's end-to-end tests: the ingest edge and the writer as child
 * processes on free ports, over a fresh migrated database and a Redis prefix of their own.
 * Collectors are inserted with SQL and their tokens minted with @pga/tokens + recordIssuedToken.
 */
export async function startCentralStack() {
  const db = await createTestDatabase();
  const pool = new pg.Pool({ connectionString: db.url, max: 3 });
  pool.on('error', () => undefined);
  // The admin's 10 s floor on collection_interval is product policy, not the collector's concern;
  // this suite's private database lowers it so a test sees several intervals in seconds.
  await pool.query('ALTER TABLE collectors DROP CONSTRAINT valid_collection_interval');
  const prefix = uniquePrefix('collector-e2e');
  const keys = redisKeys(prefix);
  const redis = new Redis(testEnv.redisUrl, { maxRetriesPerRequest: 2 });
  redis.on('error', () => undefined);
  const tokens = createCollectorTokens({ secret: JWT_SECRET, issuer: 'pganalytics-central', audience: 'pganalytics-collectors' });
  const box = createSecretBox(ENCRYPTION_KEY);
  const [edgePort, writerPort] = [await freePort(), await freePort()];
  const common = { DATABASE_URL: db.url, REDIS_URL: testEnv.redisUrl, REDIS_KEY_PREFIX: prefix, LOG_LEVEL: 'warn' };
  const edgeEnv = {
    ...common,
    JWT_SECRET,
    ENCRYPTION_KEY,
    INGEST_PORT: String(edgePort),
    INGEST_HOST: '127.0.0.1',
    EDGE_PROCESSES: '1',
  };
  const writerEnv = {
    ...common,
    WRITER_PORT: String(writerPort),
    WRITER_MIGRATE: 'false',
    WRITER_HEARTBEAT_FLUSH_MS: '200',
    WRITER_BATCH_WINDOW_MS: '20',
  };
  const url = `http://127.0.0.1:${edgePort}`;

  let edge: Child | undefined;
  /** Starts the edge; `env` replaces its variables (JWT_SECRET for a key rotation, say) from now on. */
  const startEdge = async (env: Record<string, string> = {}) => {
    Object.assign(edgeEnv, env);
    edge = spawnService('services/ingest-edge/src/main.ts', edgeEnv);
    const e = edge;
    await until(
      'ingest edge ready',
      async () =>
        e.child.exitCode === null &&
        (await fetch(`${url}/readyz`)
          .then((r) => r.ok)
          .catch(() => false)),
      30_000,
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n${e.output()}`);
    });
  };
  const writer = spawnService('services/writer/src/main.ts', writerEnv);
  await startEdge();
  await until(
    'writer ready',
    () =>
      fetch(`http://127.0.0.1:${writerPort}/readyz`)
        .then((r) => r.ok)
        .catch(() => false),
    30_000,
  ).catch((err: Error) => {
    throw new Error(`${err.message}\n${writer.output()}`);
  });

  return {
    url,
    pool,
    keys,
    redis,
    /** Inserts a collector targeting `target` and mints its token (as the admin service would). */
    async collector(
      target: { host: string; port: number; database: string; username: string; password?: string },
      over: { interval?: number; queryLimit?: number; ttlSeconds?: number } = {},
    ) {
      const id = randomUUID();
      await pool.query(
        `INSERT INTO collectors (id, name, type, environment, host, port, database, username, password_encrypted, ssl_mode, collection_interval, query_limit)
         VALUES ($1, $2, 'postgresql', 'production', $3, $4, $5, $6, $7, 'disable', $8, $9)`,
        [
          id,
          `c-${id.slice(0, 8)}`,
          target.host,
          target.port,
          target.database,
          target.username,
          box.encrypt(target.password ?? '', id),
          over.interval ?? 1,
          over.queryLimit ?? 10,
        ],
      );
      const issued = await tokens.issue(id, over.ttlSeconds ? { ttlSeconds: over.ttlSeconds } : {});
      await recordIssuedToken(pool, id, issued);
      return { id, token: issued.token };
    },
    /** An enrollment secret as the admin creates it (stored hashed), single use. */
    async enrollmentSecret(secret: string) {
      await pool.query(`INSERT INTO enrollment_secrets (name, secret_hash, max_uses) VALUES ($1, $2, 1)`, [
        `e-${secret.slice(0, 6)}`,
        sha256Hex(secret),
      ]);
    },
    /** The admin completing an enrolled collector's target (and bumping its config version). */
    async retarget(id: string, target: { host: string; port: number; database: string; username: string; password?: string }) {
      const { rows } = await pool.query<{ config_version: number }>(
        `UPDATE collectors SET host = $2, port = $3, database = $4, username = $5, password_encrypted = $6, ssl_mode = 'disable',
                collection_interval = 1, config_version = config_version + 1 WHERE id = $1 RETURNING config_version`,
        [id, target.host, target.port, target.database, target.username, box.encrypt(target.password ?? '', id)],
      );
      await redis.hset(keys.configVersions, id, String(rows[0]!.config_version));
    },
    /** What the admin service does on a config change: bump config_version in PostgreSQL and Redis. */
    async updateConfig(id: string, set: { collection_interval?: number; query_limit?: number }) {
      const { rows } = await pool.query<{ config_version: number }>(
        `UPDATE collectors SET collection_interval = coalesce($2, collection_interval), query_limit = coalesce($3, query_limit),
                config_version = config_version + 1 WHERE id = $1 RETURNING config_version`,
        [id, set.collection_interval ?? null, set.query_limit ?? null],
      );
      await redis.hset(keys.configVersions, id, String(rows[0]!.config_version));
      return rows[0]!.config_version;
    },
    /**
     * What the admin's disable / enable does: flip `enabled` and bump config_version in PostgreSQL
     * and Redis, then add / remove the collector in the edges' deny set (the edge answers 403
     * COLLECTOR_DISABLED to a disabled collector's heartbeat, push and config pull).
     */
    async setEnabled(id: string, enabled: boolean) {
      const { rows } = await pool.query<{ config_version: number }>(
        `UPDATE collectors SET enabled = $2, config_version = config_version + 1 WHERE id = $1 RETURNING config_version`,
        [id, enabled],
      );
      await redis.hset(keys.configVersions, id, String(rows[0]!.config_version));
      await publishCollectorChange(
        redis,
        keys,
        enabled
          ? { collector_id: id, kind: 'enabled', allowCollector: true }
          : { collector_id: id, kind: 'disabled', denyCollector: true },
      );
    },
    /** An admin command as the admin service queues it (recorded in PostgreSQL, mailbox in Redis). */
    async sendCommand(id: string, action: 'stop' | 'resume' | 'restart') {
      const { rows } = await pool.query<{ id: string }>(
        `INSERT INTO collector_commands (collector_id, action) VALUES ($1, $2) RETURNING id`,
        [id, action],
      );
      await redis.rpush(keys.commands(id), JSON.stringify({ id: rows[0]!.id, action }));
      return rows[0]!.id;
    },
    /** `last_seen` of the collector's latest heartbeat as the edge recorded it (Redis), if any. */
    lastHeartbeatSeen: async (id: string) => (await redis.hget(keys.heartbeat(id), 'last_seen')) ?? undefined,
    /** Stored snapshots of a collector: one row per pg_server element = one per push. */
    async pushesStored(collectorId: string) {
      const { rows } = await pool.query<{ push_id: string; n: string; ts: string; received_at: Date }>(
        `SELECT push_id, count(*) AS n, min(metric_data->>'timestamp') AS ts, min(received_at) AS received_at
           FROM collector_metrics WHERE collector_id = $1 AND metric_type = 'pg_server' GROUP BY push_id ORDER BY min(received_at), ts`,
        [collectorId],
      );
      return rows;
    },
    stopEdge: (signal: NodeJS.Signals = 'SIGTERM') => stopChild(edge!, signal),
    pauseEdge: () => process.kill(edge!.child.pid!, 'SIGSTOP'),
    resumeEdge: () => process.kill(edge!.child.pid!, 'SIGCONT'),
    startEdge,
    async [Symbol.asyncDispose]() {
      if (edge?.child.exitCode === null) process.kill(edge.child.pid!, 'SIGCONT');
      await Promise.all([edge ? stopChild(edge, 'SIGKILL') : undefined, stopChild(writer, 'SIGKILL')]);
      redis.disconnect();
      await pool.end();
      await db.drop();
    },
  };
}
export type CentralStack = Awaited<ReturnType<typeof startCentralStack>>;
