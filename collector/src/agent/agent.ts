import { promisify } from 'node:util';
import { gzip as gzipCb } from 'node:zlib';
import type { HeartbeatAnswer } from '@pga/contracts';
import type { Logger } from '@pga/logger';
import { isDisabledAnswer, type CentralClient } from '../central/central-client';
import { COLLECTOR_VERSION, createSnapshotCollector, type Snapshot, type SnapshotCollector } from '../collect/collect-snapshot';
import {
  openTargetConnection,
  StageError,
  targetKey,
  type TargetConnection,
  type TargetSpec,
} from '../collect/target-connection';
import { stringifyJson } from '../json/stringify-json';
import type { Pusher } from '../push/pusher';
import type { Spool } from '../spool/spool';
import type { TokenHolder } from './credentials';
import { clearStopState, readStopState, writeStopState } from './stop-state';

const gzip = promisify(gzipCb);

/** The settings the central hands out (GET …/config), as applied by the agent. */
export interface EffectiveConfig {
  configVersion: number;
  enabled: boolean;
  intervalSeconds: number;
  queryLimit: number;
  target: TargetSpec | undefined;
}

export interface AgentOptions {
  central: CentralClient;
  tokens: TokenHolder;
  spool: Spool;
  pusher: Pusher;
  logger: Logger;
  defaults: { intervalSeconds: number; queryLimit: number };
  /** Local target override (TARGET_DATABASE_URL): replaces the central's target. */
  targetUrl?: string;
  /** COLLECTOR_HEARTBEAT_INTERVAL; the effective period is at most the collection interval. */
  heartbeatSeconds: number;
  statementTimeoutMs: number;
  /** COLLECTOR_STATE_DIR: where an admin `stop` is recorded so that it outlives a restart. */
  stateDir: string;
  hostname?: string;
}

export interface AgentStatus {
  status: 'active' | 'error';
  lastError: string | null;
  collectionTimeMs: number | null;
  metricsCount: number;
  config: EffectiveConfig;
  stoppedByCommand: boolean;
  /** The edge refuses this collector with 403 COLLECTOR_DISABLED (an admin disabled it). */
  disabledByCentral: boolean;
}

/**
 * The long-running collector: collection on the configured interval, heartbeats on their own
 * schedule, config pulls when the central announces a newer version, commands, token refresh.
 * Pushing is the pusher's job (its own loop), so neither a slow push nor a slow collection delays
 * a heartbeat.
 */
export function createAgent(o: AgentOptions) {
  const log = o.logger;
  const collector: SnapshotCollector = createSnapshotCollector({
    collectorId: o.tokens.current().collectorId,
    hostname: o.hostname,
  });
  let config: EffectiveConfig = {
    configVersion: 0,
    enabled: true,
    intervalSeconds: o.defaults.intervalSeconds,
    queryLimit: o.defaults.queryLimit,
    target: o.targetUrl ? { url: o.targetUrl } : undefined,
  };
  let conn: TargetConnection | undefined;
  let connKey = '';
  let lastError: string | null = null;
  let collectionTimeMs: number | null = null;
  /**
   * Collections done / the last one whose time a heartbeat the central accepted carried: each
   * collection's time is reported once. Heartbeats come 2–60 times per collection, and the central
   * folds every reported time into its average and maximum (a mean weighted per heartbeat: one slow
   * collection at a 300 s interval was counted 5 times).
   */
  let collections = 0;
  let collectionReported = 0;
  let metricsCount = 0;
  let stoppedByCommand = false;
  let disabledByCentral = false;
  let running = false;
  let collectTimer: NodeJS.Timeout | undefined;
  let heartbeatTimer: NodeJS.Timeout | undefined;
  let refreshTimer: NodeJS.Timeout | undefined;
  let lastCollectStart = 0;
  let lastHeartbeatStart = 0;
  let heartbeatInFlight = false;
  /**
   * The heartbeat in flight, commands included: `stop()` waits for it, so a `stop` its answer carried
   * is recorded on disk before the process exits (a SIGTERM right after an admin's stop started the
   * agent collecting again), and commands the edge handed over are not dropped half-handled.
   */
  let heartbeating: Promise<unknown> = Promise.resolve();
  let collecting: Promise<unknown> = Promise.resolve();

  /** Pulls the config and applies it in place: new interval, limit, target or enabled flag. */
  async function pullConfig(): Promise<boolean> {
    const res = await o.central.config();
    if (isDisabledAnswer(res)) {
      markDisabled();
      return false;
    }
    if (!res.ok) {
      if (res.status === 401) await o.tokens.refresh(o.central);
      lastError = `config: ${res.status || 'network'} ${res.code}: ${res.message}`;
      log.warn({ error: lastError }, 'config pull failed');
      return false;
    }
    const c = res.body;
    const next: EffectiveConfig = {
      configVersion: c.config_version,
      enabled: c.enabled,
      intervalSeconds: Math.max(1, c.collection_interval),
      queryLimit: Math.max(1, c.query_limit),
      target: o.targetUrl ? { url: o.targetUrl } : { target: c.target },
    };
    const intervalChanged = next.intervalSeconds !== config.intervalSeconds;
    config = next;
    log.info(
      {
        config_version: next.configVersion,
        interval_s: next.intervalSeconds,
        query_limit: next.queryLimit,
        enabled: next.enabled,
      },
      'config applied',
    );
    if (lastError?.startsWith('config:')) lastError = null;
    if (intervalChanged && running) {
      schedule(Math.max(0, lastCollectStart + next.intervalSeconds * 1000 - Date.now()));
      // A heartbeat in flight schedules the next one itself, with the new period.
      if (!heartbeatInFlight) heartbeatLoop(Math.max(0, lastHeartbeatStart + heartbeatPeriodMs() - Date.now()));
    }
    return true;
  }

  /**
   * The central marks a collector inactive when neither a heartbeat nor a push arrived within
   * 2 × collection_interval; a stopped or disabled collector does not push, so its heartbeats alone
   * keep it live: twice per collection interval, so that one lost heartbeat (a 503 during a Redis
   * blip, a timeout) plus the central's flush delay still leaves one inside the window.
   */
  function heartbeatPeriodMs(): number {
    return Math.min(o.heartbeatSeconds, config.intervalSeconds / 2) * 1000;
  }

  /**
   * 403 COLLECTOR_DISABLED from any endpoint: collect and push nothing until a heartbeat is
   * accepted again. Snapshots spooled before are kept (they were taken while enabled) and pushed
   * after the re-enable. Said once, not per refused request.
   */
  function markDisabled() {
    o.pusher.pause();
    if (disabledByCentral) return;
    disabledByCentral = true;
    log.warn({ spooled: o.spool.stats().files }, 'collector disabled by the central');
  }

  function markEnabled() {
    if (!disabledByCentral) return;
    disabledByCentral = false;
    log.info('collector enabled again');
    // Push what waited in the spool now, not after a back-off grown while refused.
    o.pusher.resume();
    if (running) schedule(0);
  }

  async function connection(): Promise<TargetConnection> {
    if (!config.target)
      throw new StageError('config', 'no target: the central sent no config yet and TARGET_DATABASE_URL is not set');
    const key = targetKey(config.target);
    if (conn && (conn.closed || key !== connKey)) {
      await conn.close();
      conn = undefined;
      collector.reset();
    }
    if (!conn) {
      conn = await openTargetConnection(config.target, { statementTimeoutMs: o.statementTimeoutMs });
      connKey = key;
      log.info({ database: conn.database, server_version_num: conn.serverVersionNum }, 'connected to target');
    }
    return conn;
  }

  /** One collection: snapshot → gzip → spool (fsync'd) → wake the pusher. `spool: false` for --dry-run. */
  async function collectOnce({ spool = true }: { spool?: boolean } = {}): Promise<Snapshot> {
    const c = await connection();
    const snapshot = await collector.collect(c, { queryLimit: config.queryLimit });
    if (spool) {
      const body = await gzip(Buffer.from(stringifyJson(snapshot.envelope)));
      await o.spool.add(snapshot.pushId, body);
      o.pusher.notify();
    }
    collectionTimeMs = snapshot.collectionTimeMs;
    collections++;
    metricsCount = snapshot.envelope.metrics.length;
    lastError = snapshot.errors.length ? `collect: ${snapshot.errors.map((e) => `${e.family}: ${e.message}`).join('; ')}` : null;
    return snapshot;
  }

  async function tick() {
    lastCollectStart = Date.now();
    if (config.enabled && !stoppedByCommand && !disabledByCentral) {
      const run = collectOnce().then(
        (s) => log.debug({ push_id: s.pushId, timestamp: s.envelope.timestamp, ms: s.collectionTimeMs }, 'snapshot spooled'),
        async (err: Error) => {
          lastError = err instanceof StageError ? err.message : `collect: ${err.message}`;
          log.warn({ error: lastError }, 'collection failed');
          await conn?.close();
          conn = undefined;
        },
      );
      collecting = run;
      await run;
    } else if (conn) {
      // Disabled centrally (config or 403) or stopped: hold no session on the target meanwhile.
      await conn.close();
      conn = undefined;
    }
    if (running) schedule(Math.max(0, lastCollectStart + config.intervalSeconds * 1000 - Date.now()));
  }

  function schedule(delayMs: number) {
    clearTimeout(collectTimer);
    collectTimer = setTimeout(() => void collecting.then(tick), delayMs);
  }

  /** `stop` is recorded on disk until `resume` or `restart`; failing to record it is said, not fatal. */
  async function persistStop(command: { id: string } | undefined) {
    const collectorId = o.tokens.current().collectorId;
    await (
      command
        ? writeStopState(o.stateDir, { collector_id: collectorId, command_id: command.id, stopped_at: new Date().toISOString() })
        : clearStopState(o.stateDir)
    ).catch((err: Error) =>
      log.error(
        { error: err.message },
        command
          ? 'stop could not be recorded: a restart of the agent would collect again'
          : 'resume could not be recorded: a restart of the agent would stay stopped',
      ),
    );
  }

  async function handleCommand(command: HeartbeatAnswer['commands'][number]) {
    const { action } = command;
    log.info({ action, command_id: command.id }, 'command received');
    if (action === 'stop') {
      // Leave the target alone until resumed: no session held open either.
      stoppedByCommand = true;
      await persistStop(command);
      await collecting;
      await conn?.close();
      conn = undefined;
    } else if (action === 'resume') {
      stoppedByCommand = false;
      await persistStop(undefined);
    } else {
      // restart: new session, new baseline, fresh config, collect now (it ends a stop too).
      stoppedByCommand = false;
      await persistStop(undefined);
      await collecting;
      await conn?.close();
      conn = undefined;
      collector.reset();
      await pullConfig();
      if (running) schedule(0);
    }
  }

  async function heartbeat() {
    const push = o.pusher.stats();
    const error = lastError ?? push.lastError;
    const collection = collections;
    const res = await o.central.heartbeat({
      timestamp: new Date().toISOString(),
      status: error ? 'error' : 'active',
      metrics_count: metricsCount,
      last_error: error,
      ...(collectionTimeMs !== null && collection !== collectionReported ? { collection_time_ms: collectionTimeMs } : {}),
      version: COLLECTOR_VERSION,
    });
    if (isDisabledAnswer(res)) return markDisabled();
    if (!res.ok) {
      log.warn({ status: res.status, code: res.code, error: res.message }, 'heartbeat failed');
      if (res.status === 401) await o.tokens.refresh(o.central);
      return;
    }
    markEnabled();
    collectionReported = collection;
    if (res.body.config_version > config.configVersion) await pullConfig();
    for (const command of res.body.commands) await handleCommand(command);
    // JWT_SECRET rotated: move to a token of the key that signs now (once; see refreshWhenAsked).
    if (res.body.token_refresh) await o.tokens.refreshWhenAsked(o.central);
  }

  /** One timer at a time: each call replaces the pending heartbeat. Periods count from a heartbeat's start. */
  function heartbeatLoop(delayMs = heartbeatPeriodMs()) {
    clearTimeout(heartbeatTimer);
    heartbeatTimer = setTimeout(async () => {
      lastHeartbeatStart = Date.now();
      heartbeatInFlight = true;
      heartbeating = heartbeat().catch((err: Error) => log.warn({ error: err.message }, 'heartbeat failed'));
      await heartbeating;
      heartbeatInFlight = false;
      if (running) heartbeatLoop(Math.max(0, lastHeartbeatStart + heartbeatPeriodMs() - Date.now()));
    }, delayMs);
  }

  function refreshLoop() {
    const due = o.tokens.refreshDueAt();
    if (due === undefined) return;
    // setTimeout holds at most ~24 days; check at least hourly.
    const wait = Math.min(Math.max(due - Date.now(), 0), 3_600_000);
    refreshTimer = setTimeout(async () => {
      const d = o.tokens.refreshDueAt();
      if (d !== undefined && Date.now() >= d && !(await o.tokens.refresh(o.central))) {
        // Refused or unreachable: try again in a minute rather than at once.
        refreshTimer = setTimeout(refreshLoop, 60_000);
        return;
      }
      if (running) refreshLoop();
    }, wait);
  }

  return {
    markDisabled,
    pullConfig,
    collect: collectOnce,
    heartbeat,
    async start() {
      running = true;
      const stopped = readStopState(o.stateDir, o.tokens.current().collectorId);
      if (stopped) {
        stoppedByCommand = true;
        log.warn(
          { command_id: stopped.command_id, stopped_at: stopped.stopped_at },
          'stopped by an admin command: not collecting until resume or restart',
        );
      }
      await pullConfig();
      o.pusher.start();
      schedule(0);
      lastHeartbeatStart = Date.now();
      heartbeatInFlight = true;
      heartbeating = heartbeat()
        .catch(() => undefined)
        .finally(() => (heartbeatInFlight = false));
      heartbeatLoop();
      refreshLoop();
    },
    async stop() {
      running = false;
      clearTimeout(collectTimer);
      clearTimeout(heartbeatTimer);
      clearTimeout(refreshTimer);
      await heartbeating;
      await collecting;
      await o.pusher.stop();
      await conn?.close();
      conn = undefined;
    },
    status: (): AgentStatus => ({
      status: (lastError ?? o.pusher.stats().lastError) ? 'error' : 'active',
      lastError: lastError ?? o.pusher.stats().lastError,
      collectionTimeMs,
      metricsCount,
      config,
      stoppedByCommand,
      disabledByCentral,
    }),
  };
}
export type Agent = ReturnType<typeof createAgent>;
