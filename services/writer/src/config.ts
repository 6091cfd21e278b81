import { z } from 'zod';
import { loadConfig, commonSchema, port, int } from '@pga/config';

export const WriterConfigSchema = commonSchema.extend({
  /** Port of /healthz, /readyz and /metrics; default 9091. */
  WRITER_PORT: port(9091),
  /** Address for the operations port; default 127.0.0.1. */
  WRITER_HOST: z.string().default('127.0.0.1'),
  /** Days of collector_metrics kept; default 14. */
  METRICS_RETENTION_DAYS: int(14, 1, 3650),
});
export type WriterConfig = z.infer<typeof WriterConfigSchema>;

export const readWriterConfig = (env: Record<string, string | undefined> = process.env): WriterConfig =>
  loadConfig(WriterConfigSchema, env);
