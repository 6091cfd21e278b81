import type { Server } from 'node:http';
import path from 'node:path';
import type { Logger } from '@pga/logger';
import type { AdminConfig } from './config';
import { createDeps, type Deps } from './deps';
import { appRouter } from './routers/app-router';
import { createHttpServer } from './http/create-http-server';
import { reconcileDenyState } from './collectors/reconcile-deny-state';
import { pruneAuthTables } from './auth/prune';
import { upgradeLegacyMailboxes } from './collectors/commands';

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
  const reconcile = () =>
    void reconcileDenyState(deps).catch((err: unknown) => logger.warn({ err }, 'deny state reconciliation failed'));
  // On the first connection and after every reconnect (a Redis restart may have lost the sets).
  deps.redis.on('ready', reconcile);
  // Once, on the first connection: entries from before migration 0039 get their expiry.
  deps.redis.once(
    'ready',
    () =>
      void upgradeLegacyMailboxes(deps).catch((err: unknown) =>
        logger.warn({ err }, 'command mailboxes not upgraded; retried at the next start'),
      ),
  );
  const housekeeping = setInterval(
    () => void pruneAuthTables(deps.pool).catch((err: unknown) => logger.warn({ err }, 'pruning sessions failed')),
    3_600_000,
  );
  housekeeping.unref();
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
      clearInterval(housekeeping);
      deps.redis.off('ready', reconcile);
      // SIGTERM (STYLE.md): stop accepting, end the live subscriptions, let in-flight requests
      // finish (up to 10 s), then close the pool and Redis.
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      await deps.liveFeed.close();
      // A keep-alive connection becomes idle when its request ends: close those as they appear.
      const idle = setInterval(() => server.closeIdleConnections(), 50);
      server.closeIdleConnections();
      const force = setTimeout(() => server.closeAllConnections(), 10_000);
      await closed;
      clearInterval(idle);
      clearTimeout(force);
      await deps.close();
    },
  };
}
