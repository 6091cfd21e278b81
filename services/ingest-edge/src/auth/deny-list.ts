import type { Redis } from 'ioredis';
import { isConnectionError, type Logger } from '@pga/logger';
import { CollectorChangeSchema, type CollectorChange } from '@pga/contracts';
import type { DatabaseDenyState } from '@pga/db';
import { readDenyState, type RedisKeys } from '@pga/redis-keys';
import { withTimeout } from '../with-timeout';

export interface DenyListOptions {
  /**
   * PostgreSQL's own deny state (all of it, or only `collectorId`'s): `readDatabaseDenyState` on
   * the edge's pool. Unioned with Redis's at every load, so a Redis that lost its data (restart
   * without persistence, FLUSHALL, failover to an empty replica) while the admin is away to repair
   * it does not admit what PostgreSQL refuses. None: Redis's state alone.
   */
  readDatabase?: (collectorId?: string) => Promise<DatabaseDenyState>;
  /** How long a load waits for PostgreSQL before going on with Redis's state alone; default 2 s. */
  databaseTimeoutMs?: number;
  /** After a load that could not read PostgreSQL: load again this much later; default 30 s. */
  databaseRetryMs?: number;
  /**
   * Load the whole state again this often (default 10 min; 0: never): revocations of tokens long
   * expired leave the deny sets (the writer's retention), and an edge drops them only at a load.
   */
  reloadEveryMs?: number;
}

/**
 * The edge's copy of the admin's deny state (revoked jtis, disabled/deleted collectors), kept
 * current by the change channel. `trusted` is false until the state was (re)loaded after the
 * subscriber (re)connected: a change published while we were disconnected is missed by pub/sub, so
 * until the reload the edge refuses authenticated requests with 503 rather than trust its cache.
 * A load takes the union of Redis's deny sets and PostgreSQL's own deny state (when it answers in
 * time): Redis alone may have lost its data, and the admin repairs it only while it runs.
 */
export class DenyList {
  jtis = new Set<string>();
  collectors = new Set<string>();
  /**
   * Last change kind per denied collector: "deleted" answers 401, anything else 403
   * COLLECTOR_DISABLED ("restored": out of the recycle bin, waiting for Redis to say whether it is
   * still disabled).
   */
  private readonly kinds = new Map<string, string>();
  version = 0;
  trusted = false;
  private stopped = false;
  private loading: Promise<void> | undefined;
  /** A reload was asked for while one ran: run another after it (the running one may be stale). */
  private reloadWanted = false;
  /** Changes received while a reload is reading Redis: re-applied on top of what it read. */
  private duringLoad: CollectorChange[] = [];
  /** Counts the subscriber's disconnects: a subscription or a read is good only within one connection. */
  private connection = 0;
  /** The connection on which Redis confirmed our SUBSCRIBE (-1: none yet). */
  private subscribedOn = -1;
  private lastSubscribeWarning = -Infinity;
  /** The resync the subscriber's last 'ready' began (start waits for the first). */
  private readyResync: Promise<void> | undefined;
  /** A load again, set after a load that could not read PostgreSQL. */
  private databaseRetry: NodeJS.Timeout | undefined;
  private periodicReload: NodeJS.Timeout | undefined;
  /** What the last load logged, to say "deny state loaded" at info only when something changed. */
  private lastLoaded = '';

  constructor(
    private readonly subscriber: Redis,
    private readonly reader: Redis,
    private readonly keys: RedisKeys,
    private readonly logger: Logger,
    private readonly options: DenyListOptions = {},
  ) {}

  /** Subscribes and loads; resolves once trusted (or rejects if Redis is unreachable at start). */
  async start(): Promise<void> {
    this.subscriber.on('message', (channel: string, message: string) => this.onMessage(channel, message));
    this.subscriber.on('ready', () => {
      this.readyResync = this.resync();
      this.readyResync.catch(() => undefined);
    });
    this.subscriber.on('close', () => {
      if (this.trusted && !this.stopped)
        this.logger.warn('change feed disconnected: refusing authenticated requests until it is back');
      this.trusted = false;
      this.connection++;
      this.lastLoaded = ''; // the load after the reconnect is said at info
    });
    // Before the first resync, which rejects when Redis is away at start (the reconnect's resync
    // then makes the edge trusted): the periodic reload must run in that process too.
    const every = this.options.reloadEveryMs ?? 600_000;
    if (every > 0) this.periodicReload = setInterval(() => void this.reload(), every).unref();
    // Connected but not ready yet (the ready check's INFO under way): a SUBSCRIBE sent now goes out
    // at once (ioredis writes commands Redis takes while loading before the check ends), puts the
    // connection in subscriber mode, and the check's INFO then fails ("Connection in subscriber
    // mode"): a warning with a stack and a reconnect at start. The 'ready' handler subscribes.
    // In any other state the SUBSCRIBE is sent now, or queued until ready (and opens a lazyConnect
    // connection), or fails: as before.
    if (this.subscriber.status !== 'connect') return this.resync();
    await new Promise<void>((resolve, reject) => {
      const settle = (err?: Error) => {
        this.subscriber.off('ready', onReady);
        this.subscriber.off('close', onClose);
        if (err) reject(err);
        else resolve();
      };
      const onReady = () => settle();
      const onClose = () => settle(new Error('Redis unreachable: change feed not connected'));
      this.subscriber.on('ready', onReady);
      this.subscriber.on('close', onClose);
    });
    await this.readyResync;
  }

  /** Before closing the subscriber on purpose (drain): no warning, no reload. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.databaseRetry);
    clearInterval(this.periodicReload);
  }

  /**
   * Subscribes, then reloads. Done on every (re)connect: ioredis re-subscribes by itself only to
   * channels Redis once confirmed, so a first SUBSCRIBE that failed (Redis down when the edge
   * started) would otherwise never be sent again; and waiting for the confirmation guarantees that
   * nothing published after the read is missed. SUBSCRIBE to a channel already subscribed is a no-op.
   */
  private async resync(): Promise<void> {
    const connection = this.connection;
    try {
      await this.subscriber.subscribe(this.keys.changesChannel);
    } catch (err) {
      // Disconnected meanwhile: the next 'ready' tries again. Still connected (refused: an ACL, say):
      // try again shortly, and say so, at most every 30 s.
      if (!this.stopped && this.subscriber.status === 'ready' && connection === this.connection) {
        const now = Date.now();
        if (now - this.lastSubscribeWarning >= 30_000) {
          this.lastSubscribeWarning = now;
          this.logger.warn({ err }, 'change feed SUBSCRIBE refused; refusing authenticated requests, retrying');
        }
        setTimeout(() => void this.resync().catch(() => undefined), 500).unref();
      }
      throw err;
    }
    if (connection === this.connection) this.subscribedOn = connection;
    await this.reload();
  }

  reload(): Promise<void> {
    this.reloadWanted = true;
    this.loading ??= (async () => {
      try {
        while (this.reloadWanted && !this.stopped) {
          this.reloadWanted = false;
          await this.loadOnce();
        }
      } finally {
        this.loading = undefined;
      }
    })();
    return this.loading;
  }

  private async loadOnce(): Promise<void> {
    const connection = this.connection;
    // Subscribed (on this connection) before the read is sent: a change published after the read
    // reaches us by the feed. Checked now, not when the read returns.
    const subscribedFirst = this.subscribedOn === connection;
    try {
      // Both reads are sent after this reset. The admin commits in PostgreSQL and writes Redis
      // before it publishes, so a change received before the reset is in both answers (or something
      // newer is); one received after it is re-applied on top of them below: an `enabled` published
      // after the PostgreSQL read took its snapshot (the collector still disabled) wins over that read.
      this.duringLoad = [];
      const state = await readDenyState(this.reader, this.keys);
      // After Redis answered: while Redis is down a load fails and is retried every 500 ms, and
      // PostgreSQL need not be asked each time.
      const database = await this.readDatabase();
      const collectors = new Set(state.collectors);
      const deleted = new Set(state.deleted);
      // With PostgreSQL's answer (the truth the Redis sets mirror), exactly their union: revocations
      // pruned since the last load go. Without it, only added to: Redis alone may have lost its data.
      const jtis = database ? new Set(state.jtis) : this.jtis;
      for (const jti of state.jtis) jtis.add(jti);
      for (const { jtis: revoked } of database?.tokens ?? []) for (const jti of revoked) jtis.add(jti);
      this.jtis = jtis;
      for (const { id, deleted: isDeleted } of database?.collectors ?? []) {
        collectors.add(id);
        if (isDeleted) deleted.add(id);
      }
      this.collectors = collectors;
      // Deleted or disabled as Redis or PostgreSQL says (a fresh edge has seen no message about either).
      this.kinds.clear();
      for (const id of deleted) this.kinds.set(id, 'deleted');
      // Subscribed before reading: a change that raced the reads is applied again (idempotent).
      for (const change of this.duringLoad) this.apply(change);
      this.version = state.version;
      // Trusted only if the feed was subscribed before this read began and stayed connected since;
      // otherwise the reconnect's own resync reloads again.
      this.trusted = subscribedFirst && this.connection === connection && this.subscriber.status === 'ready';
      const loaded = {
        jtis: this.jtis.size,
        collectors: this.collectors.size,
        version: this.version,
        trusted: this.trusted,
        database: database !== undefined,
      };
      // The periodic reload finds the same state most times: said at info only when it differs.
      const summary = JSON.stringify(loaded);
      this.logger[summary === this.lastLoaded ? 'debug' : 'info'](loaded, 'deny state loaded');
      this.lastLoaded = summary;
      // Without PostgreSQL's answer this state is only as good as Redis's: read both again later.
      if (database) {
        clearTimeout(this.databaseRetry);
        this.databaseRetry = undefined;
      } else if (this.options.readDatabase && !this.stopped && !this.databaseRetry) {
        this.databaseRetry = setTimeout(() => {
          this.databaseRetry = undefined;
          void this.reload();
        }, this.options.databaseRetryMs ?? 30_000).unref();
      }
    } catch (err) {
      if (!this.stopped) {
        // Redis not connected (yet): at start the change feed's connection is often ready before the
        // command connection, and a Redis outage is said once by the edge's outage log. Either way
        // authenticated requests wait for this load; no warning with a stack per try.
        if (isConnectionError(err)) this.logger.debug({ err: (err as Error).message }, 'deny state reload waits for Redis');
        else this.logger.warn({ err }, 'deny state reload failed; retrying');
        setTimeout(() => void this.reload(), 500).unref();
      }
    }
  }

  private onMessage(channel: string, message: string): void {
    if (channel !== this.keys.changesChannel) return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(message);
    } catch {
      return;
    }
    const change = CollectorChangeSchema.safeParse(parsed);
    if (!change.success) return;
    if (this.loading) this.duringLoad.push(change.data);
    this.apply(change.data);
  }

  private apply({ collector_id: id, kind, jtis, version }: CollectorChange): void {
    for (const jti of jtis ?? []) this.jtis.add(jti);
    if (kind === 'disabled' || kind === 'deleted') {
      this.collectors.add(id);
      this.kinds.set(id, kind);
    } else if (kind === 'enabled') {
      this.collectors.delete(id);
      this.kinds.delete(id);
    } else if (kind === 'restored' && this.collectors.has(id)) {
      // Out of the recycle bin, but maybe still disabled: the admin takes a restored collector out of
      // the denied set only when it is enabled, and the message does not say which. Until Redis has
      // answered, it stays refused (as disabled: it is no longer deleted).
      this.kinds.set(id, 'restored');
      void this.recheck(id);
    }
    if (version !== undefined) this.version = Math.max(this.version, version);
  }

  /**
   * After `restored`: allowed again only if the admin removed it from the denied set, and
   * PostgreSQL (when it answers in time) does not say it is disabled. Both read after the restore
   * was committed and published.
   */
  private async recheck(id: string): Promise<void> {
    try {
      const [denied, database] = await Promise.all([
        this.reader.sismember(this.keys.deniedCollectors, id),
        this.readDatabase(id),
      ]);
      const refused = denied || database?.collectors.some((c) => c.id === id) === true;
      // A change applied meanwhile (disabled again, deleted again) wins over this answer.
      if (!refused && this.kinds.get(id) === 'restored') {
        this.collectors.delete(id);
        this.kinds.delete(id);
      }
    } catch (err) {
      // Still refused; the reload after the reconnect reads the whole state again.
      this.logger.warn({ err, collectorId: id }, 'could not read whether a restored collector is still disabled');
    }
  }

  /**
   * PostgreSQL's deny state (only `collectorId`'s if given), or undefined, with one warning, when
   * it fails or does not answer within the bound: the edge keeps accepting pushes through a
   * PostgreSQL outage, so it goes on with Redis's state alone.
   */
  private async readDatabase(collectorId?: string): Promise<DatabaseDenyState | undefined> {
    const read = this.options.readDatabase;
    if (!read) return undefined;
    const ms = this.options.databaseTimeoutMs ?? 2000;
    try {
      return await withTimeout(read(collectorId), ms, 'PostgreSQL');
    } catch (err) {
      if (!this.stopped)
        this.logger.warn(
          { err, ...(collectorId ? { collectorId } : {}) },
          collectorId
            ? "could not read a restored collector's state from PostgreSQL; going by Redis's alone"
            : "could not read the deny state from PostgreSQL; going on with Redis's alone",
        );
      return undefined;
    }
  }

  /** Why a token may not be used, or undefined when it may. */
  refusal(collectorId: string, jti: string): 'revoked' | 'deleted' | 'disabled' | undefined {
    if (this.jtis.has(jti)) return 'revoked';
    if (this.collectors.has(collectorId)) return this.kinds.get(collectorId) === 'deleted' ? 'deleted' : 'disabled';
    return undefined;
  }
}
