import type { Redis } from 'ioredis';
import type { Logger } from '@pga/logger';
import { CollectorChangeSchema, type CollectorChange } from '@pga/contracts';
import { readDenyState, type RedisKeys } from '@pga/redis-keys';

/**
 * The edge's copy of the admin's deny state (revoked jtis, disabled/deleted collectors), kept
 * current by the change channel. `trusted` is false until the state was (re)loaded after the
 * subscriber (re)connected: a change published while we were disconnected is missed by pub/sub, so
 * until the reload the edge refuses authenticated requests with 503 rather than trust its cache.
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

  constructor(
    private readonly subscriber: Redis,
    private readonly reader: Redis,
    private readonly keys: RedisKeys,
    private readonly logger: Logger,
  ) {}

  /** Subscribes and loads; resolves once trusted (or rejects if Redis is unreachable at start). */
  async start(): Promise<void> {
    this.subscriber.on('message', (channel: string, message: string) => this.onMessage(channel, message));
    this.subscriber.on('ready', () => void this.resync().catch(() => undefined));
    this.subscriber.on('close', () => {
      if (this.trusted && !this.stopped)
        this.logger.warn('change feed disconnected: refusing authenticated requests until it is back');
      this.trusted = false;
      this.connection++;
    });
    await this.resync();
  }

  /** Before closing the subscriber on purpose (drain): no warning, no reload. */
  stop(): void {
    this.stopped = true;
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
      this.duringLoad = [];
      const state = await readDenyState(this.reader, this.keys);
      for (const jti of state.jtis) this.jtis.add(jti);
      this.collectors = state.collectors;
      // Deleted or disabled as Redis says (a fresh edge has seen no message about either).
      this.kinds.clear();
      for (const id of state.deleted) this.kinds.set(id, 'deleted');
      // Subscribed before reading: a change that raced the read is applied again (idempotent).
      for (const change of this.duringLoad) this.apply(change);
      this.version = state.version;
      // Trusted only if the feed was subscribed before this read began and stayed connected since;
      // otherwise the reconnect's own resync reloads again.
      this.trusted = subscribedFirst && this.connection === connection && this.subscriber.status === 'ready';
      this.logger.info(
        { jtis: this.jtis.size, collectors: this.collectors.size, version: this.version, trusted: this.trusted },
        'deny state loaded',
      );
    } catch (err) {
      if (!this.stopped) {
        this.logger.warn({ err }, 'deny state reload failed; retrying');
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

  /** After `restored`: allowed again only if the admin removed it from the denied set. */
  private async recheck(id: string): Promise<void> {
    try {
      const denied = await this.reader.sismember(this.keys.deniedCollectors, id);
      // A change applied meanwhile (disabled again, deleted again) wins over this answer.
      if (!denied && this.kinds.get(id) === 'restored') {
        this.collectors.delete(id);
        this.kinds.delete(id);
      }
    } catch (err) {
      // Still refused; the reload after the reconnect reads the whole state again.
      this.logger.warn({ err, collectorId: id }, 'could not read whether a restored collector is still disabled');
    }
  }

  /** Why a token may not be used, or undefined when it may. */
  refusal(collectorId: string, jti: string): 'revoked' | 'deleted' | 'disabled' | undefined {
    if (this.jtis.has(jti)) return 'revoked';
    if (this.collectors.has(collectorId)) return this.kinds.get(collectorId) === 'deleted' ? 'deleted' : 'disabled';
    return undefined;
  }
}
