import type { Logger } from '@pga/logger';
import type { CentralClient, Credentials } from '../central/central-client';
import { readState, tokenTimes, writeState } from './state-file';

/** The collector's id and current token; refreshes persist to the state file for the next start. */
export interface TokenHolder {
  current(): Credentials;
  /** One refresh at a time; resolves false when the central refused or was unreachable. */
  refresh(central: CentralClient): Promise<boolean>;
  /** Epoch ms at which the token should be refreshed (80% of its lifetime), or undefined. */
  refreshDueAt(): number | undefined;
}

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
  return {
    current: () => creds,
    refresh(central) {
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
    },
    refreshDueAt() {
      const { iat, exp } = tokenTimes(creds.token);
      if (exp === undefined) return undefined;
      const start = iat ?? exp - 86_400;
      return (start + (exp - start) * 0.8) * 1000;
    },
  };
}
