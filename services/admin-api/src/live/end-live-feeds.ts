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
  const notPublished = (err: unknown) =>
    deps.logger.warn(
      { err: err instanceof Error ? err.message : String(err) },
      `ended sessions not published to the other admin processes; their live feeds end within ${deps.config.LIVE_FEED_SESSION_CHECK_MS} ms (the periodic session check)`,
    );
  // Waited for at most PUBLISH_WAIT_MS: with Redis away, the logout or the user change (committed
  // already) answers anyway instead of after ioredis's reconnect attempts (review31); the periodic
  // check covers a message that never goes out.
  const published = deps.redis.publish(deps.keys.sessionsEndedChannel, JSON.stringify(message)).catch((err: unknown) => {
    notPublished(err);
    return 'failed' as const;
  });
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => {
    timer = setTimeout(() => resolve('late'), PUBLISH_WAIT_MS);
  });
  const outcome = await Promise.race([published, late]);
  clearTimeout(timer);
  if (outcome === 'late') notPublished(new Error(`Redis did not take the message within ${PUBLISH_WAIT_MS} ms`));
}

/** How long a logout or a user change waits for Redis to take the sessions-ended message. */
export const PUBLISH_WAIT_MS = 1000;
