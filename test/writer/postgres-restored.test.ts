import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { expect, it } from 'vitest';
import { createPool } from '@pga/db';
import { findLostPushes } from '../../scripts/lib/lost-pushes';
import { call } from '../edge/harness';
import { uniquePrefix } from '../helpers';
import { edgeWithCollector } from './edge-collector';
import { ownPostgres, startWriterHarness, waitUntil } from './helpers';

/** A stopped cluster's folder copied with its owner and modes (PostgreSQL runs as another user under root). */
const copy = (from: string, to: string) => execFileSync('cp', ['-a', from, to]);

/**
 * PostgreSQL restored from a copy of its data folder taken minutes earlier, while Redis, the edge and
 * the writer keep running. The pushes stored after the copy are gone from PostgreSQL, but their
 * idempotency markers say "done" in Redis and their jobs were removed on completion: a collector's
 * replay (same Idempotency-Key, within the replay window) is answered `duplicate: true` and never
 * stored again, and nothing in Redis can re-drive them. Inherent (the edge answers replays from Redis
 * alone); what the operator can do is know which: `npm run lost-pushes` (scripts/lib/lost-pushes.ts)
 * lists the acknowledged pushes whose marker is still in Redis and which the ledger lacks.
 */
it(
  'PostgreSQL restored from an older copy: replays are answered duplicate and not stored; lost-pushes lists exactly what was lost',
  { timeout: 120_000 },
  async () => {
    const database = `restored_${randomUUID().slice(0, 8)}`;
    const pg = await ownPostgres(database);
    const dataDir = pg.dataDir;
    const backup = `${dataDir}-backup`;
    const prefix = uniquePrefix('restored');
    const pool = createPool(pg.url, { max: 2 });
    pool.on('error', () => undefined);
    const writer = await startWriterHarness(pg.url, { REDIS_KEY_PREFIX: prefix });
    const { edge, id, token } = await edgeWithCollector(pg.url, pool, prefix);
    try {
      const push = (body: string, key?: string) =>
        call(`${edge.url}/api/v1/metrics/push`, { token, body, headers: key ? { 'idempotency-key': key } : {} });
      const inLedger = async (ids: string[]) =>
        (await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM ingest_ledger WHERE push_id = ANY($1)', [ids])).rows[0]!
          .n;

      const before = await push('{"n":1}', 'before-backup');
      expect(before).toMatchObject({ status: 200, json: { duplicate: false } });
      await waitUntil('stored', async () => (await inLedger([before.json.push_id])) === 1);

      // The backup: PostgreSQL stopped, its folder copied, started again (the writer and edge reconnect).
      await pg.stop();
      copy(dataDir, backup);
      await pg.restart();

      const after = [await push('{"n":2}', 'after-backup'), await push('{"n":3,"flat":true}')];
      for (const a of after) expect(a).toMatchObject({ status: 200, json: { duplicate: false } });
      const afterIds = after.map((a) => a.json.push_id as string);
      await waitUntil('stored after the backup', async () => (await inLedger(afterIds)) === 2, 30_000);

      // The restore: stopped, its folder replaced by the copy, started again.
      await pool.end();
      await pg.stop();
      rmSync(dataDir, { recursive: true, force: true });
      copy(backup, dataDir);
      await pg.restart();
      const restored = createPool(pg.url, { max: 2 });
      try {
        const ledger = async (ids: string[]) =>
          (await restored.query<{ n: number }>('SELECT count(*)::int AS n FROM ingest_ledger WHERE push_id = ANY($1)', [ids]))
            .rows[0]!.n;
        expect(await ledger([before.json.push_id])).toBe(1);
        expect(await ledger(afterIds)).toBe(0);

        // The collectors replay: answered duplicate, and nothing is stored.
        const replays = [await push('{"n":2}', 'after-backup'), await push('{"n":3,"flat":true}')];
        for (const [i, r] of replays.entries())
          expect(r).toMatchObject({ status: 200, json: { duplicate: true, push_id: afterIds[i] } });
        await new Promise((r) => setTimeout(r, 2_000));
        expect(await ledger(afterIds)).toBe(0);
        expect(await writer.queue.getJobCounts('waiting', 'active', 'delayed', 'failed')).toMatchObject({
          waiting: 0,
          active: 0,
          delayed: 0,
          failed: 0,
        });

        // What the operator can know: exactly the two pushes acknowledged after the backup.
        const lost = await findLostPushes({ redis: writer.redis, pool: restored, prefix, ttlSeconds: 86_400, graceSeconds: 0 });
        expect(lost.map((l) => l.push_id).toSorted()).toEqual(afterIds.toSorted());
        expect(lost.find((l) => l.push_id === afterIds[0])).toMatchObject({
          collector_id: id,
          key: 'k:after-backup',
          records: 1,
        });
        expect(Date.now() - Date.parse(lost[0]!.accepted_at)).toBeLessThan(120_000);
        // Left out while they may still wait in the queue.
        expect(
          await findLostPushes({ redis: writer.redis, pool: restored, prefix, ttlSeconds: 86_400, graceSeconds: 300 }),
        ).toEqual([]);
      } finally {
        await restored.end();
      }
    } finally {
      await edge.stop();
      await writer.close();
      await pool.end().catch(() => undefined);
      await pg.stop();
      rmSync(backup, { recursive: true, force: true });
    }
  },
);
