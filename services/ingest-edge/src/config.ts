import { z } from 'zod';
import { loadConfig, commonSchema, jwtSchema, encryptionSchema, port, url } from '@pga/config';

export const EdgeConfigSchema = commonSchema
  .extend(jwtSchema.shape)
  .extend(encryptionSchema.shape)
  .extend({
    /** Port collectors push to; default 8080. */
    INGEST_PORT: port(8080),
    /** Address to listen on; default 0.0.0.0 (`npm start` uses 127.0.0.1). */
    INGEST_HOST: z.string().default('0.0.0.0'),
    /** Public URL collectors use, shown in setup instructions; default http://127.0.0.1:8080. */
    CENTRAL_API_URL: url('http', 'https').default('http://127.0.0.1:8080'),
  });
export type EdgeConfig = z.infer<typeof EdgeConfigSchema>;

export const readEdgeConfig = (env: Record<string, string | undefined> = process.env): EdgeConfig =>
  loadConfig(EdgeConfigSchema, env);
