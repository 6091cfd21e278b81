import type { Server } from 'node:http';
import path from 'node:path';
import { checkStoredKeyIds } from '@pga/db';
import type { Logger } from '@pga/logger';
import { dataEpoch, dataEpochMessage } from '@pga/redis-keys';
import type { AdminConfig } from './config';
import { createDeps, type Deps } from './deps';
import { appRouter } from './routers/app-router';
import { createHttpServer } from './http/create-http-server';
import { reconcileDenyState, repairConfigVersions } from './collectors/reconcile-deny-state';
import { pruneAuthTables } from './auth/prune';
import { upgradeLegacyMailboxes } from './collectors/commands';

export interface AdminService {
  deps: Deps;
  server: Server;
  /** Starts listening; resolves with the bound port. */
  listen(): Promise<number>;
  close(): Promise<void>;
}

/** How often a lost write to Redis is repaired from PostgreSQL until Redis takes it. */
const REPAIR_EVERY_MS = 2000;
/** How often the admin service checks that Redis still holds its data (`dataEpoch`). */
const DATA_EPOCH_CHECK_MS = 5000;

export const DEFAULT_WEB_DIST = path.resolve(import.meta.dirname, '../../../web/dist');

/** Wires config → pool, Redis, crypto, tokens → router → HTTP server. `main.ts` and tests use it. */
export function createAdminService({ config, logger }: { config: AdminConfig; logger: Logger }): AdminService {
  const deps = createDeps(config, logger);
  const server = createHttpServer(deps, appRouter, { webDistDir: config.WEB_DIST_DIR ?? DEFAULT_WEB_DIST });
  const repair = async () => {
    await reconcileDenyState(deps);
    await repairConfigVersions(deps);
  };
  // A run that fails (Redis up but refusing writes after a reconnect: a read-only replica) joins
  // the 2 s loop below.
  const reconcile = () =>
    void repair().catch((err: unknown) => {
      logger.warn({ err }, 'deny state reconciliation failed; retrying');
      scheduleRepair();
    });
  // On the first connection and after every reconnect (a Redis restart may have lost the sets).
  deps.redis.on('ready', reconcile);
  // And after a committed change did not reach Redis: a Redis up but refusing writes (out of
  // memory, MISCONF, READONLY) never reconnects, so the repair is tried every REPAIR_EVERY_MS until
  // it succeeds — one warning when it first fails, one line when it is done.
  let repairTimer: NodeJS.Timeout | undefined;
  let repairSince: number | undefined;
  let repairWarned = false;
  let closing = false;
  let repairRunning = false;
  let repairAgain = false;
  const scheduleRepair = () => {
    if (repairRunning) repairAgain = true;
    if (repairTimer || closing) return;
    repairSince ??= Date.now();
    repairTimer = setTimeout(() => {
      repairRunning = true;
      repairAgain = false;
      void repair().then(
        () => {
          repairRunning = false;
          repairTimer = undefined;
          if (repairAgain) return scheduleRepair();
          const seconds = ((Date.now() - (repairSince ?? Date.now())) / 1000).toFixed(1);
          logger.info(`edges' state in Redis repaired from PostgreSQL after ${seconds} s`);
          repairSince = undefined;
          repairWarned = false;
        },
        (err: unknown) => {
          repairRunning = false;
          repairTimer = undefined;
          if (!repairWarned)
            logger.warn(
              { err: err instanceof Error ? err.message : String(err) },
              `repairing the edges' state in Redis failed; retrying every ${REPAIR_EVERY_MS / 1000} s until Redis takes writes`,
            );
          repairWarned = true;
          scheduleRepair();
        },
      );
    }, REPAIR_EVERY_MS);
    repairTimer.unref();
  };
  deps.onRedisWriteLost = scheduleRepair;
  // Redis emptied without a reconnect (FLUSHALL, a failover to an unsynced replica behind one
  // address): the deny sets and config versions are put back from PostgreSQL, as after a reconnect.
  const epoch = dataEpoch(deps.redis, deps.keys.dataEpoch);
  const checkEpoch = () =>
    void epoch.check().then(
      (finding) => {
        if (!finding) return;
        logger.error(`${dataEpochMessage(finding)}; putting the deny state and config versions back from PostgreSQL`);
        reconcile();
      },
      () => undefined, // Redis away: its 'ready' runs the repair
    );
  deps.redis.on('ready', checkEpoch);
  const epochTimer = setInterval(checkEpoch, DATA_EPOCH_CHECK_MS);
  epochTimer.unref();
  // Once, on the first connection: entries from before migration 0039 get their expiry.
  deps.redis.once(
    'ready',
    () =>
      void upgradeLegacyMailboxes(deps).catch((err: unknown) =>
        logger.warn({ err }, 'command mailboxes not upgraded; retried at the next start'),
      ),
  );
  // Secrets under a key id ENCRYPTION_KEY lacks: their connection tests (and the edges' config
  // answers) fail until the key is listed again. One grouped query.
  const keyCheck = checkStoredKeyIds(deps.pool, deps.secretBox.keyIds, logger);
  // The audit marker key, read (and moved under ENCRYPTION_KEY's active key) at start: not at the
  // first failed sign-in only, so a rotated ENCRYPTION_KEY's old key can go once the admin restarted.
  const markerKey = deps.auditMarkerKey().then(
    () => undefined,
    (err: unknown) =>
      logger.warn(
        { err: err instanceof Error ? err.message : String(err) },
        "the audit log's marker key was not read (read again at first use)",
      ),
  );
  // Hourly, and once at start (a service restarted more often than hourly pruned nothing): the
  // login attempts refused by the rate limit are kept there, so this bounds them to a day's.
  const prune = () => void pruneAuthTables(deps.pool).catch((err: unknown) => logger.warn({ err }, 'pruning sessions failed'));
  const housekeeping = setInterval(prune, 3_600_000);
  prune();
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
      closing = true;
      clearTimeout(repairTimer);
      clearInterval(housekeeping);
      clearInterval(epochTimer);
      deps.redis.off('ready', reconcile);
      deps.redis.off('ready', checkEpoch);
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
      await keyCheck;
      await markerKey;
      await deps.close();
    },
  };
}
