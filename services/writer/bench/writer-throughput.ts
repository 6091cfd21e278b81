/**
 * Writer-only measurements (not a test; figures go to the README): run with
 *   node --import tsx services/writer/bench/writer-throughput.ts [pushes]
 * Starts its own PostgreSQL (fsync on) and Redis on free ports under .data/, applies the migrations,
 * and measures on the same 2 KB envelopes the bench suite sends (bench/src/load/payloads.ts):
 *   1. bare COPY of the pushes' rows (no ledger, no state): the ceiling;
 *   2. storeBatch with the split done in JS (raw text slices) — what the writer does;
 *   3. the alternative: COPY whole bodies into a staging table, split with jsonb_array_elements;
 *   4. the whole writer draining a pre-filled BullMQ queue (100 pushes per job).
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { from as copyFrom } from 'pg-copy-streams';
import { createPool, migrateDatabase } from '@pga/db';
import { freePort, startPostgres, startRedis } from '@pga/local-stack';
import { createLogger } from '@pga/logger';
import { redisKeys } from '@pga/redis-keys';
import { makeBodyPool } from '../../../bench/src/load/payloads';
import { pushItems } from './push-items';
import { readWriterConfig } from '../src/config';
import { copyEscape } from '../src/copy-rows';
import { createWriter } from '../src/create-writer';
import { preparePush } from '../src/prepare-push';
import { storeBatch } from '../src/store-batch';

const TOTAL = Number(process.argv[2] ?? 20_000);
const BATCH = 500;
const root = path.resolve(import.meta.dirname, '../../..');
const dir = path.join(root, '.data', `writer-bench-${process.pid}`);
mkdirSync(dir, { recursive: true });
const pg = await startPostgres({ dataDir: path.join(dir, 'pg'), port: await freePort() });
const redisServer = await startRedis({ dataDir: path.join(dir, 'redis'), port: await freePort() });
const report: Record<string, unknown> = { pushes: TOTAL, batchPushes: BATCH };
try {
  const admin = createPool(pg.url, { max: 1 });
  await admin.query('CREATE DATABASE wb');
  await admin.end();
  const url = pg.urlFor('wb');
  await migrateDatabase(url);
  if (process.env.DROP_ROLLUP_BUCKET_INDEX) {
    const p = createPool(url, { max: 1 });
    await p.query('DROP INDEX idx_collector_metrics_rollup_bucket');
    await p.end();
  }
  const pool = createPool(url, { max: 4 });
  const bodies = makeBodyPool(42, '2k', 500);
  const collectors = Array.from({ length: 1000 }, () => randomUUID());
  const items = pushItems(bodies, collectors);
  const rowsPerPush = bodies[0]!.elements.length;
  const rate = (label: string, pushes: number, ms: number) => {
    const r = { pushesPerS: Math.round((pushes / ms) * 1000), rowsPerS: Math.round(((pushes * rowsPerPush) / ms) * 1000) };
    report[label] = r;
    console.log(label, r);
  };

  // 1. bare COPY of the same rows (run first and last: the table grows in between)
  const bareCopy = async (label: string) => {
    const all = items(TOTAL).map((p) => preparePush(p));
    const t = performance.now();
    for (let i = 0; i < all.length; i += BATCH) {
      const client = await pool.connect();
      const lines = all
        .slice(i, i + BATCH)
        .flatMap((p) =>
          p.split.slices.map(
            (s) =>
              `${p.collectorId}\t${p.pushId}\t${s.type}\t${s.database ?? '\\N'}\t${copyEscape(p.body.toString('utf8', s.start, s.end))}\t${p.receivedIso}\n`,
          ),
        );
      await pipeline(
        Readable.from([Buffer.from(lines.join(''))]),
        client.query(
          copyFrom(
            'COPY collector_metrics (collector_id, push_id, metric_type, database_name, metric_data, received_at) FROM STDIN',
          ),
        ),
      );
      client.release();
    }
    rate(label, all.length, performance.now() - t);
  };
  await bareCopy('bareCopyFirst');
  // 2. storeBatch (JS split, ledger, collector state, rollup) — includes preparePush (checksum + split)
  {
    const raw = items(TOTAL);
    const t = performance.now();
    const phases = { prepare: 0, ledger: 0, copy: 0, state: 0, rollup: 0, commit: 0 };
    for (let i = 0; i < raw.length; i += BATCH) {
      const p0 = performance.now();
      const prepared = raw.slice(i, i + BATCH).map((p) => preparePush(p));
      phases.prepare += performance.now() - p0;
      const r = await storeBatch(pool, prepared, { retentionDays: 14 });
      for (const k of ['ledger', 'copy', 'state', 'rollup', 'commit'] as const) phases[k] += r.phases[k];
    }
    rate('storeBatchJsSplit', raw.length, performance.now() - t);
    report.storeBatchPhasesMs = Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, Math.round(v)]));
    console.log('phases (ms total)', report.storeBatchPhasesMs);
  }
  // 3. PostgreSQL-side split from a staging table (same ledger, no state/rollup: a lower bound of its cost)
  {
    const raw = items(TOTAL);
    const t = performance.now();
    for (let i = 0; i < raw.length; i += BATCH) {
      const part = raw.slice(i, i + BATCH);
      const client = await pool.connect();
      await client.query('BEGIN');
      await client.query(
        'CREATE TEMP TABLE IF NOT EXISTS staging (push_id uuid, collector_id uuid, received_at timestamptz, checksum text, body jsonb) ON COMMIT DELETE ROWS',
      );
      await pipeline(
        Readable.from([
          Buffer.from(
            part
              .map(
                (p) =>
                  `${p.push_id}\t${p.collector_id}\t${p.received_at}\t${p.checksum}\t${copyEscape(Buffer.from(p.body_base64, 'base64').toString('utf8'))}\n`,
              )
              .join(''),
          ),
        ]),
        client.query(copyFrom('COPY staging FROM STDIN')),
      );
      await client.query(`WITH l AS (
          INSERT INTO ingest_ledger (push_id, collector_id, received_at, row_count, checksum)
          SELECT push_id, collector_id, received_at, jsonb_array_length(body->'metrics'), checksum FROM staging
          ON CONFLICT DO NOTHING RETURNING push_id)
        INSERT INTO collector_metrics (collector_id, push_id, metric_type, database_name, metric_data, received_at, checksum, processed, processed_at)
        SELECT s.collector_id, s.push_id, e->>'type', e->>'database', e, s.received_at, s.checksum, true, now()
          FROM staging s JOIN l USING (push_id), jsonb_array_elements(s.body->'metrics') e`);
      await client.query('COMMIT');
      client.release();
    }
    rate('stagingSqlSplit', raw.length, performance.now() - t);
  }
  // 4. the whole writer draining a pre-filled queue
  {
    const prefix = 'wbench';
    const keys = redisKeys(prefix);
    const redis = new Redis(redisServer.url, { maxRetriesPerRequest: null });
    const queue = new Queue(keys.pushQueue, { connection: redis, prefix: keys.bullPrefix });
    const raw = items(TOTAL);
    for (let i = 0; i < raw.length; i += 100)
      await queue.add('push', { v: 2, pushes: raw.slice(i, i + 100) }, { removeOnComplete: true });
    const writer = createWriter({
      config: readWriterConfig({
        DATABASE_URL: url,
        REDIS_URL: redisServer.url,
        REDIS_KEY_PREFIX: prefix,
        WRITER_PORT: String(await freePort()),
        WRITER_MIGRATE: 'false',
        LOG_LEVEL: 'warn',
      }),
      logger: createLogger({ name: 'wbench', level: 'warn', pretty: false }),
    });
    const t = performance.now();
    await writer.start();
    for (;;) {
      const counts = await queue.getJobCounts('wait', 'active');
      if ((counts.wait ?? 0) + (counts.active ?? 0) === 0) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    rate('writerDrainQueue', raw.length, performance.now() - t);
    await writer.stop();
    await queue.close();
    await redis.quit();
  }
  await bareCopy('bareCopyLast');
  await pool.end();
  console.log(JSON.stringify(report));
} finally {
  await redisServer.stop();
  await pg.stop();
  rmSync(dir, { recursive: true, force: true });
}
