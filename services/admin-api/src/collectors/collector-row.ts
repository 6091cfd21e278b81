import type { Pool, PoolClient } from '@pga/db';
import type { Collector } from './collector-schema';

/**
 * Alive/fresh = seen within 2 × collection_interval (issue 3 §2), boundary included: the writer's
 * FRESH (services/writer/src/sql.ts), so a sign of life exactly 2 × interval old counts in both.
 */
const WITHIN = (column: string) => `(${column} >= now() - make_interval(secs => 2 * c.collection_interval))`;

/**
 * The last sign of life the writer's inactivity sweep (SWEEP_INACTIVE) judges silence by: the latest
 * heartbeat or push applied, or the registration. A heartbeat's and a push's time are the accepting
 * edge's clock, the registration PostgreSQL's: with an edge running behind, a new collector's first
 * reports are stamped before its registration, and the sweep does not call it silent until
 * 2 × interval after it registered. (The sweep also counts heartbeats still waiting in Redis, which
 * the writer flushes within WRITER_HEARTBEAT_FLUSH_MS, 1 s; this reads PostgreSQL only.)
 */
const LAST_SIGN_OF_LIFE = 'greatest(c.last_heartbeat, c.last_metric_at, c.registered_at)';

/**
 * The displayed status, computed when read so it is right even if no sweep ran (issue 3 §2), by the
 * rule the writer stores it by (test/admin/collector-status-rule.test.ts holds the two together):
 * `error` while the writer's stored status is `error` (the latest heartbeat applied reported an
 * error) and the collector is not silent. Only a heartbeat reports health (CONTRACT.md: a push
 * carries no status, and the writer moves a pushing collector from `pending` to `active` only), so an
 * error stands until a heartbeat clears it, as the writer keeps it and its live feed publishes it:
 * until 2026-12-07 an `error` collector that kept pushing after its heartbeats stopped read `active`
 * here and `error` on the live feed. `pending` until the first push (a heartbeat alone does not make
 * a collector active — the writer keeps the same rule) while it is not silent or was never heard
 * from, `inactive` when silent (also for one that heartbeated and never pushed, as the writer's sweep
 * marks it), else `active`. Silent = no sign of life (LAST_SIGN_OF_LIFE) within 2 × interval.
 */
export const STATUS_SQL = `CASE
    WHEN c.status = 'error' AND ${WITHIN(LAST_SIGN_OF_LIFE)} THEN 'error'
    WHEN c.last_metric_at IS NULL AND (c.last_heartbeat IS NULL OR ${WITHIN(LAST_SIGN_OF_LIFE)}) THEN 'pending'
    WHEN NOT ${WITHIN(LAST_SIGN_OF_LIFE)} THEN 'inactive'
    ELSE 'active' END`;

/** What COLLECTOR_COLUMNS reads besides `collectors c`: its group and who registered it. */
export const COLLECTOR_JOINS = `LEFT JOIN collector_groups g ON g.id = c.group_id
  LEFT JOIN users ru ON ru.id = c.registered_by`;

export const COLLECTOR_FROM = `collectors c
  ${COLLECTOR_JOINS}`;

export const COLLECTOR_COLUMNS = `c.id, c.name, c.type, c.environment, c.group_id, g.name AS group_name, g.color AS group_color,
  c.description, c.host, c.port, c.database, c.username, c.ssl_mode,
  (c.ssl_certificate_encrypted IS NOT NULL) AS has_ssl_certificate,
  c.collection_interval, c.query_limit, c.enabled, c.tags, c.config_version,
  ${STATUS_SQL} AS status,
  coalesce(${WITHIN('c.last_heartbeat')}, false) AS heartbeat_alive,
  coalesce(${WITHIN('c.last_metric_at')}, false) AS data_fresh,
  c.last_heartbeat, c.last_metric_at, c.last_error, c.error_count, c.success_count, c.metrics_collected,
  c.last_collection_count, c.avg_collection_time_ms, c.max_collection_time_ms,
  CASE WHEN c.last_heartbeat IS NULL AND c.last_metric_at IS NULL THEN NULL ELSE c.uptime_percentage END AS uptime_percentage,
  c.agent_hostname, c.agent_version,
  c.registered_by, ru.username AS registered_by_name, c.enrollment_secret_id, c.registered_at, c.last_modified_at,
  c.deleted_at, c.jwt_token_expires_at, c.jwt_token_rotated_at`;

const iso = (v: unknown) => (v instanceof Date ? v.toISOString() : null);

/**
 * Maps a row of COLLECTOR_COLUMNS field by field (never a spread of the row). Not parsed here: every
 * procedure answering with a collector checks it against CollectorSchema as its output (`.output`,
 * which a test asserts), so parsing here too validated each collector twice — for collectors.list,
 * 50 collectors twice per call (~0.5 ms of the admin process's CPU per list, V8 profile).
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- a pg row: every column is checked by the procedures' output schemas
export function toCollector(r: Record<string, any>): Collector {
  return {
    id: r.id,
    name: r.name,
    type: r.type,
    environment: r.environment,
    group: r.group_id ? { id: r.group_id, name: r.group_name, color: r.group_color } : null,
    description: r.description,
    host: r.host,
    port: r.port,
    database: r.database,
    username: r.username,
    ssl_mode: r.ssl_mode,
    has_ssl_certificate: r.has_ssl_certificate,
    collection_interval: r.collection_interval,
    query_limit: r.query_limit,
    enabled: r.enabled,
    tags: r.tags,
    config_version: r.config_version,
    status: r.status,
    heartbeat_alive: r.heartbeat_alive,
    data_fresh: r.data_fresh,
    last_heartbeat: iso(r.last_heartbeat),
    last_metric_at: iso(r.last_metric_at),
    last_error: r.last_error,
    error_count: Number(r.error_count),
    success_count: Number(r.success_count),
    metrics_collected: Number(r.metrics_collected),
    last_collection_count: r.last_collection_count,
    avg_collection_time_ms: r.avg_collection_time_ms,
    max_collection_time_ms: r.max_collection_time_ms,
    uptime_percentage: r.uptime_percentage === null ? null : Number(r.uptime_percentage),
    agent_hostname: r.agent_hostname,
    agent_version: r.agent_version,
    registered_by: r.registered_by ? { id: r.registered_by, username: r.registered_by_name } : null,
    enrolled: r.enrollment_secret_id !== null,
    registered_at: iso(r.registered_at)!, // NOT NULL (the output schemas check it)
    last_modified_at: iso(r.last_modified_at),
    deleted_at: iso(r.deleted_at),
    token_expires_at: iso(r.jwt_token_expires_at),
    token_rotated_at: iso(r.jwt_token_rotated_at),
  };
}

/** One collector by id (deleted ones only with `includeDeleted`), or undefined. */
export async function findCollector(
  db: Pool | PoolClient,
  id: string,
  { includeDeleted = false }: { includeDeleted?: boolean } = {},
): Promise<Collector | undefined> {
  const { rows } = await db.query(
    `SELECT ${COLLECTOR_COLUMNS} FROM ${COLLECTOR_FROM} WHERE c.id = $1 ${includeDeleted ? '' : 'AND c.deleted_at IS NULL'}`,
    [id],
  );
  return rows[0] ? toCollector(rows[0]) : undefined;
}
