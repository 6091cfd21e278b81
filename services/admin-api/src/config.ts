import { z } from 'zod';
import { loadConfig, commonSchema, jwtSchema, encryptionSchema, port, url } from '@pga/config';

export const AdminConfigSchema = commonSchema
  .extend(jwtSchema.shape)
  .extend(encryptionSchema.shape)
  .extend({
    /** Port of the API (/trpc) and the UI; default 3000. */
    ADMIN_PORT: port(3000),
    /** Address to listen on; default 0.0.0.0 (`npm start` uses 127.0.0.1). */
    ADMIN_HOST: z.string().default('0.0.0.0'),
    /** The ingest edge's URL as collectors reach it, for setup instructions; default http://127.0.0.1:8080. */
    CENTRAL_API_URL: url('http', 'https').default('http://127.0.0.1:8080'),
    /** Folder of the built web UI; default web/dist. */
    WEB_DIST_DIR: z.string().optional(),
  });
export type AdminConfig = z.infer<typeof AdminConfigSchema>;

export const readAdminConfig = (env: Record<string, string | undefined> = process.env): AdminConfig =>
  loadConfig(AdminConfigSchema, env);
