import type { Server } from 'node:http';
import path from 'node:path';
import type { Logger } from '@pga/logger';
import type { AdminConfig } from './config';
import { createDeps, type Deps } from './deps';
import { appRouter } from './routers/app-router';
import { createHttpServer } from './http/create-http-server';

export interface AdminService {
  deps: Deps;
  server: Server;
  /** Starts listening; resolves with the bound port. */
  listen(): Promise<number>;
  close(): Promise<void>;
}

export const DEFAULT_WEB_DIST = path.resolve(import.meta.dirname, '../../../web/dist');

/** Wires config → pool, Redis, crypto, tokens → router → HTTP server. `main.ts` and tests use it. */
export function createAdminService({ config, logger }: { config: AdminConfig; logger: Logger }): AdminService {
  const deps = createDeps(config, logger);
  const server = createHttpServer(deps, appRouter, { webDistDir: config.WEB_DIST_DIR ?? DEFAULT_WEB_DIST });
  return {
    deps,
    server,
    listen: () =>
      new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(config.ADMIN_PORT, config.ADMIN_HOST, () => {
          const address = server.address();
          resolve(typeof address === 'object' && address ? address.port : config.ADMIN_PORT);
        });
      }),
    async close() {
      // SSE subscribers hold connections open: end them so close() does not wait for the clients.
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await deps.close();
    },
  };
}
