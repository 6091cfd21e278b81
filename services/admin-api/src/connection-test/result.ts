import { z } from 'zod';

/** Where a connection attempt stopped, in the order they happen. */
export const CONNECTION_STAGES = ['dns', 'tcp', 'tls', 'auth', 'database', 'permission', 'query'] as const;
export const ConnectionStageSchema = z.enum(CONNECTION_STAGES);
export type ConnectionStage = z.infer<typeof ConnectionStageSchema>;

export const ConnectionTestResultSchema = z.object({
  /** The target answered a query as the given user. */
  ok: z.boolean(),
  /** False for target types the service cannot test yet (MongoDB, Oracle). */
  supported: z.boolean(),
  /** The stage that failed (null on success or when unsupported). */
  failed_stage: ConnectionStageSchema.nullable(),
  /** What happened, in words an admin can act on; never the password. */
  message: z.string(),
  server_version: z.string().nullable(),
  /** PostgreSQL only: whether pg_stat_statements can be read by this user. */
  pg_stat_statements: z.object({ readable: z.boolean(), message: z.string() }).nullable(),
  /** Each stage that ran, with its duration. */
  stages: z.array(z.object({ stage: ConnectionStageSchema, ok: z.boolean(), ms: z.number() })),
  duration_ms: z.number(),
});
export type ConnectionTestResult = z.infer<typeof ConnectionTestResultSchema>;

/** Thrown inside a probe to stop at a stage with an actionable message. */
export class StageFailure extends Error {
  constructor(
    readonly stage: ConnectionStage,
    message: string,
  ) {
    super(message);
  }
}

export interface ConnectionTarget {
  type: 'postgresql' | 'mysql' | 'mongodb' | 'oracle';
  host: string;
  port: number;
  database: string;
  username: string;
  password: string;
  ssl_mode: string;
  ssl_certificate?: string | undefined;
}
