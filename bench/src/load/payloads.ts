import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';

/**
 * Seeded, realistic push bodies with the shapes of the pganalytics-v3 collector's push
 * (shared/fixtures/pganalytics-v3-push.sample.json): an envelope whose `metrics` elements are
 * pg_stats, sysstat, pg_cache and pg_query_stats, with signed 64-bit query hashes written as raw
 * JSON integers (beyond 2^53, so anything that rounds them is caught by the writer's tests).
 */

/** mulberry32: tiny, fast, seedable. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Rng = () => number;
const int = (rng: Rng, max: number) => Math.floor(rng() * max);
const int64 = (rng: Rng) => {
  const hi = BigInt(int(rng, 2 ** 31)) * (rng() < 0.5 ? -1n : 1n);
  return (hi * 2n ** 32n + BigInt(int(rng, 2 ** 32))).toString();
};

const QUERY_TEXTS = [
  'SELECT\n  schemaname,\n  relname,\n  n_dead_tup,\n  n_live_tup\nFROM pg_stat_user_tables\nWHERE n_dead_tup > $1\nORDER BY n_dead_tup DESC',
  'UPDATE accounts SET balance = balance + $1 WHERE aid = $2',
  'SELECT o.id, o.total, c.name FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.created_at > $1 LIMIT $2',
  'INSERT INTO events (kind, payload, created_at) VALUES ($1, $2, now())',
  'SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE NOT l.granted',
];

/** One metric element: its JSON text (exactly what goes on the wire) and the columns it becomes. */
export interface MetricElement {
  type: string;
  database: string | null;
  json: string;
}

function element(type: string, database: string | null, value: Record<string, unknown>, hashes: string[] = []): MetricElement {
  let json = JSON.stringify({ ...value, type });
  hashes.forEach((h, i) => (json = json.replace(`"@@H${i}@@"`, h)));
  return { type, database, json };
}

const ts = (rng: Rng) => new Date(Date.UTC(2026, 10, 27, 3, int(rng, 60), int(rng, 60))).toISOString().replace('.000', '');

function pgStats(rng: Rng, db: string): MetricElement {
  return element('pg_stats', db, {
    database: db,
    indexes: [{ name: 't_pkey', scans: int(rng, 9999), schema: 'public', size_bytes: int(rng, 1e7), status: 'OK', table: 't' }],
    size_bytes: int(rng, 1e10),
    tables: [],
    timestamp: ts(rng),
    transactions_committed: int(rng, 1e7),
    transactions_rolledback: int(rng, 1e4),
    tuples_fetched: int(rng, 1e8),
    tuples_inserted: int(rng, 1e6),
    tuples_returned: int(rng, 1e8),
    tuples_updated: int(rng, 1e6),
  });
}

function sysstat(rng: Rng): MetricElement {
  return element('sysstat', null, {
    cpu: { idle: rng() * 100, iowait: rng() * 5, load_1m: rng() * 8, system: rng() * 20, user: rng() * 60 },
    disk_io: [{ device: 'vda', read_ops: int(rng, 1e6), read_sectors: int(rng, 1e8), write_ops: int(rng, 1e6) }],
    memory: { cached_mb: int(rng, 4096), free_mb: int(rng, 16384), total_mb: 24105, used_mb: int(rng, 8192) },
    timestamp: ts(rng),
  });
}

function pgCache(rng: Rng, db: string): MetricElement {
  return element('pg_cache', null, {
    databases: { [db]: { index_cache_hit: [{ name: 't_pkey', ratio: rng() }], table_cache_hit: [{ name: 't', ratio: rng() }] } },
    hostname: 'pg-prod-1',
    timestamp: ts(rng),
  });
}

function queryStats(rng: Rng, db: string, queries: number): MetricElement {
  const hashes: string[] = [];
  const list = Array.from({ length: queries }, (_, i) => {
    hashes.push(int64(rng));
    const calls = 1 + int(rng, 1e6);
    const total = rng() * 1e5;
    return {
      calls,
      hash: `@@H${i}@@`,
      max_time: rng() * 500,
      mean_time: total / calls,
      min_time: rng(),
      rows: int(rng, 1e7),
      shared_blks_hit: int(rng, 1e7),
      shared_blks_read: int(rng, 1e5),
      temp_blks_written: 0,
      text: QUERY_TEXTS[int(rng, QUERY_TEXTS.length)]!,
      total_time: total,
      wal_bytes: int(rng, 1e6),
    };
  });
  return element('pg_query_stats', db, { database: db, queries: list, timestamp: ts(rng) }, hashes);
}

/** A push body ready to send, with what it must become in collector_metrics. */
export interface PushBody {
  /** The JSON text as sent (uncompressed). */
  json: Buffer;
  /** gzip of `json`, sent with Content-Encoding: gzip for part of the requests. */
  gzip: Buffer;
  /** SHA-256 hex of `json` (the stored checksum). */
  checksum: string;
  elements: MetricElement[];
}

export type PushSize = '2k' | '64k';

/** Envelope with ~2 KB (4 elements) or ~64 KB (5 elements, one pg_query_stats of many queries). */
export function makePushBody(rng: Rng, size: PushSize): PushBody {
  const db = ['appdb', 'postgres', 'billing', 'orders'][int(rng, 4)]!;
  const elements =
    size === '2k'
      ? [pgStats(rng, db), sysstat(rng), pgCache(rng, db), queryStats(rng, db, 2)]
      : [pgStats(rng, db), pgStats(rng, 'postgres'), sysstat(rng), pgCache(rng, db), queryStats(rng, db, 165)];
  const text =
    `{"hostname":"pg-host-${int(rng, 1000)}","timestamp":"${ts(rng)}","version":"3.0.0","metrics_count":${elements.length},` +
    `"metrics":[${elements.map((e) => e.json).join(',')}]}`;
  const json = Buffer.from(text);
  return { json, gzip: gzipSync(json), checksum: createHash('sha256').update(json).digest('hex'), elements };
}

/** A fixed pool of distinct bodies (the generator cycles through it; pushes differ by Idempotency-Key). */
export function makeBodyPool(seed: number, size: PushSize, count: number): PushBody[] {
  const rng = seededRandom(seed);
  return Array.from({ length: count }, () => makePushBody(rng, size));
}

/** Escapes text for COPY's text format (backslash, tab, newline, carriage return). */
export function copyEscape(text: string): string {
  return text.replace(/[\\\t\n\r]/g, (c) => (c === '\\' ? '\\\\' : c === '\t' ? '\\t' : c === '\n' ? '\\n' : '\\r'));
}
