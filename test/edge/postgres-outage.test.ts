import { expect, it } from 'vitest';
import { ownPostgres } from '../writer/helpers';
import { call, EdgeWorld } from './harness';
import { capturingLogger } from '../helpers';

/**
 * The endpoints that read PostgreSQL (enrollment here; config and refresh alike) answer 503 +
 * Retry-After while it is away, and the outage is logged like the Redis one: one warning when it
 * starts, one line when a connection succeeds again — not a warning with a stack per request, which
 * a fleet polling its config turned into hundreds of lines a minute.
 */
it('a PostgreSQL outage: 503 + Retry-After for every request that needs it, one line when it starts and one when it is over', async () => {
  const pg = await ownPostgres('edgeoutage');
  const { logger, lines } = capturingLogger('edge-test');
  await using world = await EdgeWorld.create();
  try {
    const edge = await world.startEdge({ DATABASE_URL: pg.url }, logger);
    const enroll = () =>
      call(`${edge.url}/api/v1/collectors/register`, {
        headers: { 'x-registration-secret': 'no-such-secret' },
        body: '{"name":"db-1","hostname":"db-1.local"}',
      });
    expect((await enroll()).status).toBe(401);

    await pg.stop();
    for (let i = 0; i < 5; i++) {
      const res = await enroll();
      expect([res.status, res.json.error.code, res.headers.get('retry-after')]).toEqual([
        503,
        'UNAVAILABLE',
        expect.stringMatching(/^([5-9]|10)$/),
      ]);
    }
    await pg.restart();
    // No request needs PostgreSQL now, yet the edge notices within its 2 s probe: the line does not
    // wait for the next enrollment (and so overstate the outage).
    const restarted = Date.now();
    while (!lines.some((l) => /^PostgreSQL reachable again/.test(l.msg))) {
      if (Date.now() - restarted > 5000) throw new Error('no "reachable again" line within 5 s of the restart');
      await new Promise((r) => setTimeout(r, 50));
    }
    expect((await enroll()).status).toBe(401);

    const said = lines.filter((l) => /^PostgreSQL /.test(l.msg)).map((l) => l.msg);
    expect(said).toEqual([
      expect.stringMatching(/^PostgreSQL unreachable: .*; retrying \(further errors summarised every 60 s\)$/),
      expect.stringMatching(/^PostgreSQL reachable again after \d+\.\d s$/),
    ]);
    // The pool's idle client, cut off by the shutdown (57P01), is part of the same outage: no
    // warning of its own (one per pooled client, before). On a loaded machine the deny state's read
    // at start can overrun its 2 s bound, which is said in a warning of its own: not this test's.
    const warnings = lines.filter((l) => l.level >= 40 && !/^could not read the deny state from PostgreSQL/.test(l.msg));
    expect(warnings.map((l) => l.msg)).toEqual([said[0]]);
  } finally {
    await pg.stop();
  }
});
