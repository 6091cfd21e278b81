import type { Deps } from '../deps';
import { sessionEnded } from './live-hub';
import type { SessionsEnded } from './live-feed';

/**
 * Ends the live feeds of a session (logout) or of every session of a user (disable, re-role,
 * password reset), after the sessions' rows were deleted and committed: at once in this process, and
 * in every other admin process through `keys.sessionsEndedChannel`. A message Redis does not take is
 * logged; those feeds then end at the next periodic session check (LIVE_FEED_SESSION_CHECK_MS).
 */
export async function endLiveFeeds(deps: Deps, match: { userId: string } | { sessionHash: string }): Promise<void> {
  deps.liveFeed.hub.end(match, sessionEnded());
  const message: SessionsEnded = 'userId' in match ? { user_id: match.userId } : { session_hash: match.sessionHash };
  try {
    await deps.redis.publish(deps.keys.sessionsEndedChannel, JSON.stringify(message));
  } catch (err) {
    deps.logger.warn(
      { err: err instanceof Error ? err.message : String(err) },
      `ended sessions not published to the other admin processes; their live feeds end within ${deps.config.LIVE_FEED_SESSION_CHECK_MS} ms (the periodic session check)`,
    );
  }
}
