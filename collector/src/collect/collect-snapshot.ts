import { randomUUID } from 'node:crypto';
import os from 'node:os';
import { collectCache } from './cache';
import { collectConnections } from './activity';
import { collectDatabaseStats } from './database-stats';
import { collectLocks } from './locks';
import { collectQueryStats, type QueryBaseline } from './query-stats';
import { collectReplication } from './replication';
import { collectServerInfo } from './server-info';
import { StageError, type TargetConnection } from './target-connection';

export const COLLECTOR_VERSION = '0.1.0';

/** Rows per table/index/lock list, independent of the query limit. */
const LIST_LIMIT = 50;

export interface Snapshot {
  pushId: string;
  /** The envelope of CONTRACT.md (bigint values: serialise with stringifyJson). */
  envelope: Record<string, unknown> & { metrics: Record<string, unknown>[] };
  collectionTimeMs: number;
  /** Families that failed (the rest of the snapshot is still sent). */
  errors: { family: string; message: string }[];
}

export interface SnapshotCollector {
  collect(conn: TargetConnection, options: { queryLimit: number }): Promise<Snapshot>;
  /** Forget the previous interval (after a restart command or a target change). */
  reset(): void;
}

/**
 * Collects every family over the one session, in sequence (never in parallel: one connection).
 * Keeps the pg_stat_statements counters of the previous interval for the deltas.
 */
export function createSnapshotCollector({
  collectorId,
  hostname = os.hostname(),
}: {
  collectorId: string;
  hostname?: string;
}): SnapshotCollector {
  let baseline: QueryBaseline | undefined;
  return {
    reset: () => (baseline = undefined),
    async collect(conn, { queryLimit }) {
      const started = performance.now();
      const timestamp = new Date().toISOString();
      const metrics: Record<string, unknown>[] = [];
      const errors: Snapshot['errors'] = [];
      const family = async (name: string, fn: () => Promise<Record<string, unknown> | Record<string, unknown>[]>) => {
        try {
          const out = await fn();
          metrics.push(...(Array.isArray(out) ? out : [out]));
        } catch (err) {
          if (conn.closed) throw new StageError('collect', `connection lost while collecting ${name}: ${(err as Error).message}`);
          errors.push({ family: name, message: (err as Error).message });
        }
      };
      await family('pg_server', () => collectServerInfo(conn, { timestamp }));
      await family('pg_stats', () => collectDatabaseStats(conn, { limit: LIST_LIMIT, timestamp }));
      await family('pg_query_stats', async () => {
        const result = await collectQueryStats(conn, { limit: queryLimit, baseline, timestamp });
        baseline = result.baseline;
        return result.elements;
      });
      await family('pg_connections', () => collectConnections(conn, { limit: LIST_LIMIT, timestamp }));
      await family('pg_locks', () => collectLocks(conn, { limit: LIST_LIMIT, timestamp }));
      await family('pg_replication', () => collectReplication(conn, { timestamp }));
      await family('pg_cache', () => collectCache(conn, { limit: LIST_LIMIT, timestamp }));
      if (metrics.length === 0) throw new StageError('collect', errors.map((e) => `${e.family}: ${e.message}`).join('; '));
      const collectionTimeMs = Math.round((performance.now() - started) * 10) / 10;
      const pushId = randomUUID();
      return {
        pushId,
        collectionTimeMs,
        errors,
        envelope: {
          collector_id: collectorId,
          hostname,
          timestamp,
          version: COLLECTOR_VERSION,
          push_id: pushId,
          collection_time_ms: collectionTimeMs,
          metrics_count: metrics.length,
          collection_errors: errors,
          metrics,
        },
      };
    },
  };
}
