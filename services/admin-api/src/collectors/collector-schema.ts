import { z } from 'zod';
import { CollectorStatusSchema, CollectorTypeSchema, EnvironmentSchema } from '@pga/contracts';

/**
 * A collector as the API shows it. It has no field for the password, the certificate or a token:
 * the output schema strips anything else, so a ciphertext can never leave the server (STYLE.md).
 */
export const CollectorSchema = z.object({
  id: z.uuid(),
  name: z.string(),
  type: CollectorTypeSchema,
  environment: EnvironmentSchema,
  group: z.object({ id: z.uuid(), name: z.string(), color: z.string().nullable() }).nullable(),
  description: z.string().nullable(),
  host: z.string(),
  port: z.number().int(),
  database: z.string(),
  username: z.string(),
  ssl_mode: z.string().nullable(),
  has_ssl_certificate: z.boolean(),
  collection_interval: z.number().int(),
  query_limit: z.number().int(),
  enabled: z.boolean(),
  tags: z.array(z.string()),
  config_version: z.number().int(),
  /** pending until the first push; active within 2 × collection_interval; then inactive; error when reported. */
  status: CollectorStatusSchema,
  /** Heartbeat liveness: a heartbeat arrived within 2 × collection_interval. */
  heartbeat_alive: z.boolean(),
  /** Data freshness: a metric was accepted within 2 × collection_interval. */
  data_fresh: z.boolean(),
  last_heartbeat: z.string().nullable(),
  last_metric_at: z.string().nullable(),
  last_error: z.string().nullable(),
  error_count: z.number(),
  success_count: z.number(),
  metrics_collected: z.number(),
  /**
   * The size of the collector's latest collection: the metric rows of its latest push, or the
   * `metrics_count` its latest heartbeat reported, whichever the writer applied last; null before either.
   */
  last_collection_count: z.number().int().nullable(),
  avg_collection_time_ms: z.number().nullable(),
  max_collection_time_ms: z.number().nullable(),
  /**
   * Share of the uptime window's slots with a heartbeat or push (the writer's sweep); null ("n/a")
   * while the collector was never heard from: a collector registered a minute ago whose agent is
   * not running yet has no uptime to measure, and read 0 %, an outage.
   */
  uptime_percentage: z.number().nullable(),
  agent_hostname: z.string().nullable(),
  agent_version: z.string().nullable(),
  registered_by: z.object({ id: z.uuid(), username: z.string() }).nullable(),
  enrolled: z.boolean(),
  registered_at: z.string(),
  last_modified_at: z.string().nullable(),
  deleted_at: z.string().nullable(),
  token_expires_at: z.string().nullable(),
  token_rotated_at: z.string().nullable(),
});
export type Collector = z.infer<typeof CollectorSchema>;

export const DashboardAssignmentSchema = z.object({
  dashboard_uid: z.string(),
  dashboard_name: z.string().nullable(),
  auto_assign: z.boolean(),
  assigned_at: z.string(),
});

/**
 * One command and where it stands: `pending` (waiting for a heartbeat), `delivered` (a heartbeat
 * answer carried it), `expired` (no heartbeat before `expires_at`), `dropped` (taken out of the
 * mailbox undelivered; `drop_reason` says why, e.g. `collector_deleted`).
 */
export const CommandSchema = z.object({
  id: z.uuid(),
  action: z.enum(['stop', 'restart', 'resume']),
  state: z.enum(['pending', 'delivered', 'expired', 'dropped']),
  requested_at: z.string(),
  expires_at: z.string(),
  delivered_at: z.string().nullable(),
  dropped_at: z.string().nullable(),
  drop_reason: z.string().nullable(),
  requested_by: z.string().nullable(),
});

export const CollectorDetailSchema = CollectorSchema.extend({
  dashboards: z.array(DashboardAssignmentSchema),
  recent_commands: z.array(CommandSchema),
});
export type CollectorDetail = z.infer<typeof CollectorDetailSchema>;

/** What register / rotateToken / restore return once: the token and how to use it. */
export const IssuedCredentialsSchema = z.object({
  token: z.string(),
  token_expires_at: z.string(),
  setup: z.object({ COLLECTOR_JWT_TOKEN: z.string(), COLLECTOR_ID: z.uuid(), CENTRAL_API_URL: z.string() }),
  instructions: z.string(),
});
export type IssuedCredentials = z.infer<typeof IssuedCredentialsSchema>;
