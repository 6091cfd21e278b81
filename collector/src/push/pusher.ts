import type { Logger } from '@pga/logger';
import { isDisabledAnswer, type CentralClient } from '../central/central-client';
import { snapshotOwner } from '../spool/adopt-legacy-spool';
import type { Spool } from '../spool/spool';
import { backoffDelay, retryAfterDelay } from './backoff';

export interface PusherOptions {
  spool: Spool;
  central: CentralClient;
  /** Fetches a new token (and starts using it); resolves false when the central refused. */
  refreshToken: () => Promise<boolean>;
  logger: Logger;
  maxPerSecond: number;
  backoff: { baseMs: number; maxMs: number };
  /** Longest Retry-After obeyed, ms (a broken header must not park the collector for days); default 10 min. */
  maxRetryAfterMs?: number;
  /** Called when the edge answers a push 403 COLLECTOR_DISABLED (the pusher has paused itself). */
  onDisabled?: () => void;
  /** The collector id this agent pushes as (its token's). */
  collectorId: () => string;
  /** Source of the retry jitter, in [0, 1); default Math.random (tests pin it). */
  random?: () => number;
}

export interface PushStats {
  pushed: number;
  duplicates: number;
  failures: number;
  lastError: string | null;
  /** Epoch ms of the last accepted push. */
  lastPushAt: number | null;
}

export interface Pusher {
  /** Wake the loop: a new snapshot was spooled. */
  notify(): void;
  /** Pushes until the spool is empty or a push fails (for `--once`); returns the failure if any. */
  drainOnce(): Promise<string | null>;
  start(): void;
  stop(): Promise<void>;
  /** The collector is disabled centrally: push nothing until `resume()` (the spool is kept). */
  pause(): void;
  /** Enabled again: forget the back-off grown meanwhile and push the spool now. */
  resume(): void;
  stats(): PushStats;
}

type Outcome =
  { kind: 'done' } | { kind: 'retry'; afterMs: number; error: string } | { kind: 'empty' } | { kind: 'paused'; error: string };

/**
 * Drains the spool oldest-first, one push at a time, at most `maxPerSecond`. Failure handling
 * (CONTRACT.md answers): network errors, timeouts and 5xx back off exponentially with jitter;
 * 429/503 wait for Retry-After plus a random share of the same exponential step (never earlier
 * than the edge asked, never in step with the rest of the fleet); 400/413/415 and 403 COLLECTOR_MISMATCH for a snapshot naming another
 * collector can never succeed, so the snapshot is set aside with an ERROR log (a mismatch of its own
 * snapshot is the agent's credentials: kept, an ERROR, retried with back-off); 401 refreshes the
 * token once, then waits like any other failure (no tight loop);
 * 403 COLLECTOR_DISABLED pauses pushing (no back-off grows) until the agent sees it enabled again.
 */
export function createPusher(o: PusherOptions): Pusher {
  const maxRetryAfter = o.maxRetryAfterMs ?? 600_000;
  const random = o.random ?? Math.random;
  const stats: PushStats = { pushed: 0, duplicates: 0, failures: 0, lastError: null, lastPushAt: null };
  let attempt = 0;
  let refreshedSinceSuccess = false;
  let running = false;
  let paused = false;
  let idle = false;
  let loop: Promise<void> | undefined;
  let wake: (() => void) | undefined;
  let timer: NodeJS.Timeout | undefined;

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      wake = resolve;
      timer = setTimeout(resolve, ms);
    }).finally(() => {
      clearTimeout(timer);
      wake = undefined;
    });

  const fail = (error: string, afterMs?: number): Outcome => {
    attempt++;
    stats.failures++;
    stats.lastError = error;
    const delay =
      afterMs !== undefined
        ? retryAfterDelay(Math.min(afterMs, maxRetryAfter), attempt, o.backoff, random)
        : backoffDelay(attempt, o.backoff, random);
    o.logger.warn({ attempt, retry_in_ms: delay, error }, 'push failed; will retry');
    return { kind: 'retry', afterMs: delay, error };
  };

  async function pushOldest(): Promise<Outcome> {
    const entry = o.spool.oldest();
    if (!entry) return { kind: 'empty' };
    let body: Buffer;
    try {
      body = await o.spool.read(entry);
    } catch {
      // Dropped (spool full) while we were busy: move on.
      await o.spool.remove(entry);
      return { kind: 'done' };
    }
    const res = await o.central.push(body, entry.pushId);
    if (res.ok) {
      await o.spool.remove(entry);
      attempt = 0;
      refreshedSinceSuccess = false;
      stats.pushed++;
      if (res.body.duplicate) stats.duplicates++;
      stats.lastError = null;
      stats.lastPushAt = Date.now();
      o.logger.debug({ push_id: entry.pushId, records: res.body.records, duplicate: res.body.duplicate }, 'pushed');
      return { kind: 'done' };
    }
    const error = `push: ${res.status || 'network'} ${res.code}: ${res.message}`;
    if (isDisabledAnswer(res)) {
      // Not a failure of ours: the admin disabled the collector. Retrying cannot help before it is
      // enabled again, and a back-off grown meanwhile would delay pushing after that.
      paused = true;
      o.onDisabled?.();
      return { kind: 'paused', error };
    }
    if (res.status === 403 && res.code === 'COLLECTOR_MISMATCH') {
      const owner = snapshotOwner(body);
      if (owner !== undefined && owner !== o.collectorId()) {
        // The snapshot names another collector: no token of ours can ever push it. It came from an
        // agent of that collector writing into the same spool folder (one COLLECTOR_SPOOL_DIR for two).
        await o.spool.setAside(
          entry,
          `${error} (a snapshot of another collector, ${owner}: is this spool folder shared with another agent?)`,
        );
        stats.lastError = error;
        return { kind: 'done' };
      }
      // Ours, refused: the token is another collector's (COLLECTOR_ID and COLLECTOR_JWT_TOKEN of two
      // collectors). Kept, and retried with back-off, until the credentials are put right.
      o.logger.error(
        { error, collector_id: o.collectorId() },
        'push refused: the token is not this collector’s (check COLLECTOR_ID and the token); the snapshots are kept',
      );
    }
    if (res.status === 400 || res.status === 413 || res.status === 415) {
      await o.spool.setAside(entry, error);
      stats.lastError = error;
      return { kind: 'done' };
    }
    if (res.status === 401 && !refreshedSinceSuccess) {
      refreshedSinceSuccess = true;
      o.logger.warn({ error }, 'push unauthorized: refreshing the token once');
      if (await o.refreshToken()) return { kind: 'done' };
    }
    if ((res.status === 429 || res.status === 503) && res.retryAfterMs !== undefined) return fail(error, res.retryAfterMs);
    return fail(error);
  }

  async function run() {
    const gap = 1000 / o.maxPerSecond;
    while (running) {
      if (paused) {
        await sleep(60_000);
        continue;
      }
      const started = Date.now();
      const outcome = await pushOldest().catch((err: Error) => fail(`push: ${err.message}`));
      if (!running) break;
      if (outcome.kind === 'empty') {
        idle = true;
        await sleep(60_000);
        idle = false;
      } else if (outcome.kind === 'retry') await sleep(outcome.afterMs);
      else if (outcome.kind === 'paused') continue;
      else await sleep(Math.max(0, gap - (Date.now() - started)));
    }
  }

  return {
    notify() {
      // Only cut short the idle wait, never a back-off or Retry-After wait.
      if (idle) wake?.();
    },
    async drainOnce() {
      for (;;) {
        const outcome = await pushOldest();
        if (outcome.kind === 'empty') return null;
        if (outcome.kind === 'retry' || outcome.kind === 'paused') return outcome.error;
      }
    },
    start() {
      if (running) return;
      running = true;
      loop = run();
    },
    async stop() {
      running = false;
      wake?.();
      await loop;
    },
    pause() {
      paused = true;
    },
    resume() {
      if (!paused && attempt === 0) return;
      paused = false;
      attempt = 0;
      // Cuts short any wait: the paused one, or a back-off from pushes refused before the pause.
      wake?.();
    },
    stats: () => ({ ...stats }),
  };
}
