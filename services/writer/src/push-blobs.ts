import type { Redis } from 'ioredis';
import { PushBodyRefSchema } from '@pga/contracts';

/**
 * The bodies of a job's large pushes, read from Redis (contracts' PushItemRef: v3 jobs), by blob
 * key: the body's bytes, or why they cannot be had (a push that can never be stored).
 */
export type PushBlobs = Map<string, Buffer | string>;

/** Pieces asked for per HMGET: a 4 MiB reply holds Redis for about a millisecond. */
const PIECES_PER_READ = 4;

/**
 * Reads the bodies a job's pushes refer to (none for v1/v2 jobs). A Redis error rejects (the job is
 * retried); a blob that is gone or incomplete is answered with its reason, for preparePushJob to
 * report that push as poison. A malformed `body_ref` is skipped: the job's schema check reports it.
 */
export async function loadPushBlobs(redis: Redis, data: unknown): Promise<PushBlobs> {
  const blobs: PushBlobs = new Map();
  const job = data as { v?: unknown; pushes?: unknown } | null;
  if (job?.v !== 3 || !Array.isArray(job.pushes)) return blobs;
  for (const item of job.pushes as { body_ref?: unknown }[]) {
    const ref = PushBodyRefSchema.safeParse(item?.body_ref);
    if (!ref.success || blobs.has(ref.data.key)) continue;
    blobs.set(ref.data.key, await readBlob(redis, ref.data));
  }
  return blobs;
}

async function readBlob(redis: Redis, ref: { key: string; bytes: number; pieces: number }): Promise<Buffer | string> {
  const parts: Buffer[] = [];
  let bytes = 0;
  for (let first = 0; first < ref.pieces; first += PIECES_PER_READ) {
    const fields: string[] = [];
    for (let i = first; i < Math.min(ref.pieces, first + PIECES_PER_READ); i++) fields.push(String(i));
    const pieces = await redis.hmgetBuffer(ref.key, ...fields);
    for (const piece of pieces) {
      if (!piece) return parts.length === 0 && pieces.every((p) => !p) ? 'is gone from Redis' : 'is incomplete in Redis';
      parts.push(piece);
      bytes += piece.length;
    }
    if (bytes > ref.bytes) break;
  }
  if (bytes !== ref.bytes) return `is ${bytes} bytes in Redis, not ${ref.bytes}`;
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts, bytes);
}

/** Deletes blobs (and their index entries) once their job is done with them. */
export async function dropPushBlobs(redis: Redis, index: string, keys: string[]): Promise<void> {
  if (keys.length === 0) return;
  await Promise.all([redis.unlink(...keys), redis.zrem(index, ...keys)]);
}

export interface BlobSweep {
  /** redis-keys `pushBlobs`: blob keys by when the edge began writing them (Redis's clock, ms). */
  index: string;
  /** redis-keys `pushBlob('')`: a blob's key is this and its job's id. */
  blobPrefix: string;
  /** The Redis key of a push job's hash, by job id. */
  jobKey(jobId: string): string;
  /**
   * Blobs younger than this are left alone: their job may not be in Redis yet (WRITER_PUSH_BLOB_GRACE_S,
   * 15 minutes by default). The edge adds a blob's job right after its last piece, on the same
   * connection; an add still not run after this long was answered 503 long ago (its client's retry
   * wrote a blob of its own), and even if Redis ran it later, its job would fail as a dead letter, not
   * store wrongly.
   */
  graceMs: number;
}

/**
 * Deletes the large-push bodies no job refers to any more: a job completed by a writer that died
 * before deleting its blob, a dead letter removed after METRICS_RETENTION_DAYS, an edge that wrote
 * a body but never added its job (refused, timed out, died). A blob is deleted only when its job's
 * hash is gone — a job never comes back once removed — and it is older than `graceMs` (the edge adds
 * the job right after the last piece, on the same connection). Returns how many it deleted.
 */
export async function sweepPushBlobs(redis: Redis, o: BlobSweep): Promise<number> {
  // Redis's clock, as the edge's index entries use (hosts' clocks may differ).
  const [seconds, micros] = await redis.time();
  const cutoff = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000) - o.graceMs;
  let offset = 0;
  let removed = 0;
  for (;;) {
    const keys = await redis.zrangebyscore(o.index, '-inf', cutoff, 'LIMIT', offset, 500);
    if (keys.length === 0) return removed;
    const exists = await Promise.all(
      keys.map((key) => (key.startsWith(o.blobPrefix) ? redis.exists(o.jobKey(key.slice(o.blobPrefix.length))) : 0)),
    );
    const orphans = keys.filter((_, i) => exists[i] === 0);
    await dropPushBlobs(redis, o.index, orphans);
    removed += orphans.length;
    offset += keys.length - orphans.length;
  }
}
