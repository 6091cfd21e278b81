import { AppError } from '@pga/contracts';
import type { LiveStatusEvent } from './live-status-event';

/** Caps on open live feeds (config LIVE_FEED_MAX_PER_SESSION, _PER_USER, LIVE_FEED_MAX_SUBSCRIBERS). */
export interface LiveLimits {
  perSession: number;
  perUser: number;
  perProcess: number;
}

/** Who opened a feed: its user, and its session when it came through one (not in-process callers). */
export interface LiveOwner {
  userId: string;
  sessionHash: string | null;
}

export interface LiveStreamOptions {
  /** Ends the stream (the client went away, the service is closing). */
  signal: AbortSignal;
  /** Only these collectors' updates (none: all). */
  only?: ReadonlySet<string>;
  /** Called once when the hub ends this stream (its session ended): the caller may close the connection later. */
  onEnded?: () => void;
  /** When the stream's session expires: it ends then (UNAUTHORIZED). */
  expiresAt?: Date | null;
}

/** Why a stream whose session ended gets no more updates (logout, disable, re-role, password reset, expiry). */
export const sessionEnded = () =>
  new AppError(
    'UNAUTHORIZED',
    'your session ended (signed out, account disabled or changed, or expired); sign in again to follow the live status',
  );

/** Longest delay setTimeout takes (about 24.8 days); a later expiry is left to the periodic session check. */
const MAX_TIMER_MS = 2 ** 31 - 1;

interface Subscriber extends LiveOwner {
  only: ReadonlySet<string> | undefined;
  /** The latest update not yet read, per collector: at most one entry per collector (coalesced). */
  pending: Map<string, LiveStatusEvent>;
  /** Set when the hub ended the stream: thrown at its next read. */
  ended: AppError | undefined;
  onEnded: (() => void) | undefined;
  wake: (() => void) | undefined;
}

export interface LiveHub {
  /**
   * A subscriber's updates. Refused with RATE_LIMITED (429) at its first read when a cap is reached;
   * its slot is released when the stream ends.
   */
  stream(owner: LiveOwner, options: LiveStreamOptions): AsyncGenerator<LiveStatusEvent, void, undefined>;
  /** Hands one validated (and frozen: shared by every subscriber) update to the subscribers that want it. */
  publish(event: LiveStatusEvent): void;
  /** Ends the streams of a user or a session with `reason`; returns how many. */
  end(match: { userId?: string; sessionHash?: string }, reason: AppError): number;
  /** Session hashes with an open stream (the periodic session check). */
  sessions(): string[];
  /** Ends the streams of every session in the list that is not in `valid` (the periodic session check). */
  endSessionsNotIn(hashes: readonly string[], valid: ReadonlySet<string>, reason: AppError): number;
  /** Open streams, and the updates held for them (at most one per collector each). */
  stats(): { subscribers: number; pending: number };
}

const bump = (counts: Map<string, number>, key: string, by: number) => {
  const n = (counts.get(key) ?? 0) + by;
  if (n > 0) counts.set(key, n);
  else counts.delete(key);
};

/**
 * The live feed's subscribers in one process. Each Redis message is validated once (live-feed.ts)
 * and the one frozen object is handed to every subscriber; a subscriber keeps only the latest update
 * per collector it has not read yet (a Map), so one that reads slowly, or not at all, costs at most
 * one entry per collector and never blocks the others or the Redis reader. Open streams are capped
 * per session, per user and per process.
 */
export function createLiveHub(limits: LiveLimits): LiveHub {
  const subscribers = new Set<Subscriber>();
  const perUser = new Map<string, number>();
  const perSession = new Map<string, number>();

  const refusal = (owner: LiveOwner): AppError | undefined => {
    const hint = 'close a live feed (another tab) first, or raise the setting';
    if (owner.sessionHash && (perSession.get(owner.sessionHash) ?? 0) >= limits.perSession)
      return new AppError(
        'RATE_LIMITED',
        `this session already has ${limits.perSession} live feeds open, the most allowed (LIVE_FEED_MAX_PER_SESSION); ${hint}`,
      );
    if ((perUser.get(owner.userId) ?? 0) >= limits.perUser)
      return new AppError(
        'RATE_LIMITED',
        `this user already has ${limits.perUser} live feeds open, the most allowed (LIVE_FEED_MAX_PER_USER); ${hint}`,
      );
    if (subscribers.size >= limits.perProcess)
      return new AppError(
        'RATE_LIMITED',
        `this admin service process already serves ${limits.perProcess} live feeds, the most allowed (LIVE_FEED_MAX_SUBSCRIBERS); try again later`,
      );
    return undefined;
  };

  const endOne = (sub: Subscriber, reason: AppError) => {
    if (sub.ended || !subscribers.has(sub)) return;
    sub.ended = reason;
    sub.pending.clear();
    sub.wake?.();
    sub.onEnded?.();
  };

  return {
    async *stream(owner, { signal, only, onEnded, expiresAt }) {
      if (signal.aborted) return;
      const refused = refusal(owner);
      if (refused) throw refused;
      const sub: Subscriber = { ...owner, only, pending: new Map(), ended: undefined, onEnded, wake: undefined };
      subscribers.add(sub);
      bump(perUser, owner.userId, 1);
      if (owner.sessionHash) bump(perSession, owner.sessionHash, 1);
      const onAbort = () => sub.wake?.();
      signal.addEventListener('abort', onAbort);
      const untilExpiry = expiresAt ? expiresAt.getTime() - Date.now() : undefined;
      const expiry =
        untilExpiry !== undefined && untilExpiry < MAX_TIMER_MS
          ? setTimeout(() => endOne(sub, sessionEnded()), Math.max(0, untilExpiry))
          : undefined;
      expiry?.unref();
      try {
        for (;;) {
          if (signal.aborted) return;
          if (sub.ended) throw sub.ended;
          const next = sub.pending.entries().next();
          if (!next.done) {
            sub.pending.delete(next.value[0]);
            yield next.value[1];
            continue;
          }
          await new Promise<void>((resolve) => (sub.wake = resolve));
          sub.wake = undefined;
        }
      } finally {
        clearTimeout(expiry);
        signal.removeEventListener('abort', onAbort);
        if (subscribers.delete(sub)) {
          bump(perUser, owner.userId, -1);
          if (owner.sessionHash) bump(perSession, owner.sessionHash, -1);
        }
        sub.pending.clear();
      }
    },
    publish(event) {
      for (const sub of subscribers) {
        if (sub.ended || (sub.only && !sub.only.has(event.collector_id))) continue;
        sub.pending.set(event.collector_id, event);
        sub.wake?.();
      }
    },
    end(match, reason) {
      let ended = 0;
      for (const sub of subscribers) {
        if (sub.ended) continue;
        if (match.userId !== undefined && sub.userId !== match.userId) continue;
        if (match.sessionHash !== undefined && sub.sessionHash !== match.sessionHash) continue;
        if (match.userId === undefined && match.sessionHash === undefined) continue;
        endOne(sub, reason);
        ended++;
      }
      return ended;
    },
    sessions() {
      return [...perSession.keys()];
    },
    endSessionsNotIn(hashes, valid, reason) {
      const gone = new Set(hashes.filter((h) => !valid.has(h)));
      let ended = 0;
      if (gone.size === 0) return 0;
      for (const sub of subscribers)
        if (sub.sessionHash && gone.has(sub.sessionHash) && !sub.ended) {
          endOne(sub, reason);
          ended++;
        }
      return ended;
    },
    stats() {
      let pending = 0;
      for (const sub of subscribers) pending += sub.pending.size;
      return { subscribers: subscribers.size, pending };
    },
  };
}
