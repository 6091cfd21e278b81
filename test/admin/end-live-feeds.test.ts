import { describe, expect, it } from 'vitest';
import type { Deps } from '../../services/admin-api/src/deps';
import { endLiveFeeds, PUBLISH_WAIT_MS } from '../../services/admin-api/src/live/end-live-feeds';

/** The parts of Deps endLiveFeeds reads, with a Redis whose PUBLISH never answers (unreachable, reconnecting). */
function depsWithSilentRedis() {
  const ended: unknown[] = [];
  const warnings: string[] = [];
  const deps = {
    liveFeed: { hub: { end: (match: unknown) => ended.push(match) } },
    redis: { publish: () => new Promise(() => undefined) },
    keys: { sessionsEndedChannel: 'test:admin-sessions-ended' },
    config: { LIVE_FEED_SESSION_CHECK_MS: 30_000 },
    logger: { warn: (_: unknown, message: string) => warnings.push(message) },
  } as unknown as Deps;
  return { deps, ended, warnings };
}

describe('endLiveFeeds with Redis not answering', () => {
  it('ends this process’s feeds at once and answers within the publish wait, saying the message was not published', async () => {
    const { deps, ended, warnings } = depsWithSilentRedis();
    const started = Date.now();
    await endLiveFeeds(deps, { sessionHash: 'abc' });
    const took = Date.now() - started;
    expect(ended).toEqual([{ sessionHash: 'abc' }]);
    expect(took).toBeGreaterThanOrEqual(PUBLISH_WAIT_MS - 50);
    expect(took).toBeLessThan(PUBLISH_WAIT_MS + 2000);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('not published');
  });
});
