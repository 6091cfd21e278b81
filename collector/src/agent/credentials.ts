import type { Logger } from '@pga/logger';
import type { CentralClient, Credentials } from '../central/central-client';
import { readState, tokenKeyId, tokenTimes, writeState } from './state-file';

/** The collector's id and current token; refreshes persist to the state file for the next start. */
export interface TokenHolder {
  current(): Credentials;
  /** One refresh at a time; resolves false when the central refused or was unreachable. */
  refresh(central: CentralClient): Promise<boolean>;
  /** Epoch ms at which the token should be refreshed (80% of its lifetime), or undefined. */
  refreshDueAt(): number | undefined;
  /**
   * The central asked for a refresh (heartbeat `token_refresh`: the token's JWT_SECRET key no longer
   * signs): refreshes now, unless a refresh asked so failed a moment ago (back-off, 1 min doubling up
   * to 1 h) or succeeded less than 15 min ago, or a refresh asked so kept the token's key (the
   * central's processes disagree on JWT_SECRET: refreshing again would only repeat it). Resolves
   * whether it refreshed.
   */
  refreshWhenAsked(central: CentralClient, nowMs?: number): Promise<boolean>;
}

/** Least time between two refreshes the central asked for: a bound, should its edges disagree. */
export const ASKED_REFRESH_INTERVAL_MS = 15 * 60_000;
/** First wait after a failed asked-for refresh; it doubles up to ASKED_REFRESH_MAX_BACKOFF_MS. */
export const ASKED_REFRESH_BACKOFF_MS = 60_000;
export const ASKED_REFRESH_MAX_BACKOFF_MS = 3_600_000;

/**
 * Credentials from COLLECTOR_ID + COLLECTOR_JWT_TOKEN, else from the enrollment state file. When
 * both exist for the same collector, the token expiring last wins (a refreshed token outlives the
 * one in the environment).
 */
export function resolveCredentials(
  env: { COLLECTOR_ID?: string; COLLECTOR_JWT_TOKEN?: string },
  stateDir: string,
): Credentials | undefined {
  const state = readState(stateDir);
  const fromEnv =
    env.COLLECTOR_ID && env.COLLECTOR_JWT_TOKEN ? { collectorId: env.COLLECTOR_ID, token: env.COLLECTOR_JWT_TOKEN } : undefined;
  const fromState = state ? { collectorId: state.collector_id, token: state.token } : undefined;
  if (fromEnv && fromState && fromEnv.collectorId === fromState.collectorId) {
    return (tokenTimes(fromState.token).exp ?? 0) > (tokenTimes(fromEnv.token).exp ?? 0) ? fromState : fromEnv;
  }
  return fromEnv ?? fromState;
}

export function createTokenHolder(initial: Credentials, { stateDir, logger }: { stateDir: string; logger: Logger }): TokenHolder {
  let creds = initial;
  let inFlight: Promise<boolean> | undefined;
  /** No asked-for refresh before this (epoch ms): back-off after a failure, interval after a success. */
  let askedNotBefore = 0;
  let askedFailures = 0;
  /** A key an asked-for refresh did not move away from: asking again for its tokens is ignored. */
  let keptKeyId: string | undefined;
  let askedRefresh: Promise<boolean> | undefined;
  const keyOf = (token: string) => tokenKeyId(token) ?? '(none)';
  return {
    current: () => creds,
    refresh,
    refreshWhenAsked,
    refreshDueAt() {
      const { iat, exp } = tokenTimes(creds.token);
      if (exp === undefined) return undefined;
      const start = iat ?? exp - 86_400;
      return (start + (exp - start) * 0.8) * 1000;
    },
  };

  function refresh(central: CentralClient): Promise<boolean> {
    inFlight ??= (async () => {
      const res = await central.refreshToken();
      if (!res.ok) {
        logger.warn({ status: res.status, code: res.code, error: res.message }, 'token refresh failed');
        return false;
      }
      creds = { collectorId: creds.collectorId, token: res.body.token };
      await writeState(stateDir, {
        collector_id: creds.collectorId,
        token: creds.token,
        expires_at: res.body.expires_at,
      }).catch((err: Error) =>
        logger.error({ error: err.message }, 'refreshed token could not be saved: the next start uses the previous one'),
      );
      logger.info({ expires_at: res.body.expires_at }, 'token refreshed');
      return true;
    })().finally(() => (inFlight = undefined));
    return inFlight;
  }

  function refreshWhenAsked(central: CentralClient, nowMs = Date.now()): Promise<boolean> {
    // A heartbeat answer arriving while an asked-for refresh runs does not start a second one.
    askedRefresh ??= (async () => {
      const from = keyOf(creds.token);
      if (from === keptKeyId || nowMs < askedNotBefore) return false;
      logger.info({ key_id: from }, 'central asked for a token refresh: its signing key changed');
      if (!(await refresh(central))) {
        askedNotBefore = nowMs + Math.min(ASKED_REFRESH_BACKOFF_MS * 2 ** askedFailures++, ASKED_REFRESH_MAX_BACKOFF_MS);
        return false;
      }
      askedFailures = 0;
      askedNotBefore = nowMs + ASKED_REFRESH_INTERVAL_MS;
      if (keyOf(creds.token) === from) {
        keptKeyId = from;
        logger.warn(
          { key_id: from },
          'the refreshed token has the same signing key the central asked to move away from: its processes disagree on JWT_SECRET; not asking again for this key',
        );
      }
      return true;
    })().finally(() => (askedRefresh = undefined));
    return askedRefresh;
  }
}
