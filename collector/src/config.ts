import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { loadConfig, logLevel, int, url } from '@pga/config';

/** Where enrollment state and the spool live by default: $XDG_STATE_HOME or ~/.local/state. */
function defaultStateDir(): string {
  const base = process.env.XDG_STATE_HOME || path.join(os.homedir(), '.local', 'state');
  return path.join(base, 'pganalytics-collector');
}

const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === '' ? undefined : v));

export const CollectorEnvSchema = z.object({
  /** Collector JWT issued by the central (design doc); optional when enrolled (state file). */
  COLLECTOR_JWT_TOKEN: optionalString,
  /** Collector UUID; optional when enrolled (state file). */
  COLLECTOR_ID: optionalString.pipe(z.uuid({ message: 'expected the collector UUID' }).optional()),
  /** Base URL of the ingest edge; default http://127.0.0.1:8080. */
  CENTRAL_API_URL: url('http', 'https').default('http://127.0.0.1:8080'),
  /** Enrollment secret, only read by `--enroll`. */
  REGISTRATION_SECRET: optionalString,
  /** Name to enroll under; default the host name. */
  COLLECTOR_NAME: optionalString,
  /** Folder for the enrollment state file (0600) and, by default, the spool; default ~/.local/state/pganalytics-collector. */
  COLLECTOR_STATE_DIR: z.string().min(1).default(defaultStateDir()),
  /** Spool folder; default <COLLECTOR_STATE_DIR>/spool/<collector id>. */
  COLLECTOR_SPOOL_DIR: optionalString,
  /** Spool bound in bytes (compressed snapshots); oldest dropped beyond it; default 256 MiB. */
  COLLECTOR_SPOOL_MAX_BYTES: int(256 * 1024 * 1024, 1024, 1024 ** 4),
  /** Spool bound in snapshots; default 10000. */
  COLLECTOR_SPOOL_MAX_FILES: int(10_000, 1, 10_000_000),
  /** Local override of the target (postgresql:// URL) instead of the centrally configured one. */
  TARGET_DATABASE_URL: optionalString.pipe(url('postgres', 'postgresql').optional()),
  /** Statement timeout of every collection query, ms; default 5000. */
  COLLECTOR_STATEMENT_TIMEOUT_MS: int(5000, 100, 600_000),
  /** Timeout of each HTTP request to the central, ms; default 15000. */
  COLLECTOR_HTTP_TIMEOUT_MS: int(15_000, 100, 600_000),
  /** Longest heartbeat period, seconds (the agent uses min(this, half the collection interval)); default 60. */
  COLLECTOR_HEARTBEAT_INTERVAL: int(60, 1, 3600),
  /** Collection interval used until the central config says otherwise, seconds; default 60. */
  COLLECTOR_DEFAULT_INTERVAL: int(60, 1, 86_400),
  /** Query limit used until the central config says otherwise; default 100. */
  COLLECTOR_DEFAULT_QUERY_LIMIT: int(100, 1, 10_000),
  /** Spool drain rate bound: at most this many pushes per second; default 5. */
  COLLECTOR_PUSH_MAX_PER_SECOND: int(5, 1, 1000),
  /** First retry delay after a failed push, ms (doubles per failure, jittered); default 1000. */
  COLLECTOR_BACKOFF_BASE_MS: int(1000, 1, 3_600_000),
  /** Longest retry delay, ms; default 300000 (5 min). */
  COLLECTOR_BACKOFF_MAX_MS: int(300_000, 1, 86_400_000),
  /** pino level; default info. */
  LOG_LEVEL: logLevel,
});
export type CollectorEnv = z.infer<typeof CollectorEnvSchema>;

export const readCollectorEnv = (env: Record<string, string | undefined> = process.env): CollectorEnv =>
  loadConfig(CollectorEnvSchema, env);

/** `<state dir>/spool`: holds each collector's spool folder (and, from earlier versions, snapshots of any collector). */
export const sharedSpoolDirOf = (env: CollectorEnv): string => path.join(env.COLLECTOR_STATE_DIR, 'spool');

/** COLLECTOR_SPOOL_DIR, else a folder of the collector's own: agents sharing a state folder never share a spool. */
export const spoolDirOf = (env: CollectorEnv, collectorId: string): string =>
  env.COLLECTOR_SPOOL_DIR ?? path.join(sharedSpoolDirOf(env), collectorId);
