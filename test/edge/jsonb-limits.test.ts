import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scanPushJson } from '../../services/ingest-edge/src/push/scan-push-json';
import { testEnv } from '../helpers';

/**
 * The edge refuses a row (a metric element, or a flat push whole) that PostgreSQL's jsonb cannot
 * hold, so that it is never acknowledged and then dead-lettered by the writer. Its limits were
 * measured on PostgreSQL 15; here the running server judges the same rows, near each limit.
 */
describe("edge vs PostgreSQL: rows at jsonb's limits", () => {
  let client: pg.Client;
  beforeAll(async () => {
    client = new pg.Client({ connectionString: testEnv.pgUrl });
    await client.connect();
  });
  afterAll(async () => {
    await client?.end();
  });

  const pgStores = async (row: string) => {
    try {
      await client.query('SELECT pg_column_size($1::jsonb)', [row]);
      return 'stored';
    } catch (err) {
      return `refused: ${(err as Error).message}`;
    }
  };
  const edgeTakes = (row: string) => {
    try {
      scanPushJson(Buffer.from(`{"metrics":[{"type":"t","v":${row}}]}`));
      return 'stored';
    } catch (err) {
      return `refused: ${(err as Error).message}`;
    }
  };
  const rows: Record<string, () => string> = {
    'an array of 2^24 numbers': () => `[${'1,'.repeat(16_777_215)}1]`,
    'an array of 2^24 + 1 numbers': () => `[${'1,'.repeat(16_777_216)}1]`,
    'an object of 2^23 keys': () => `{${'"":0,'.repeat(8_388_607)}"":0}`,
    'an object of 2^23 + 1 keys': () => `{${'"":0,'.repeat(8_388_608)}"":0}`,
    '14.5 million one-number arrays (~290 MB as jsonb)': () => `[${'[1],'.repeat(14_500_000)}[1]]`,
    // Numbers after one-character strings: each padded to 4 bytes (a reviewer's case: the first
    // estimate left the padding out and let this ~57 MB row through).
    'numbers aligned after odd-length strings (~272 MB as jsonb)': () => {
      const inner = `[${'1,1,1,1,1,"a",'.repeat(2_024_999)}1,1,1,1,1,"a"]`;
      return `[${inner},${inner}]`;
    },
  };
  for (const [name, make] of Object.entries(rows))
    it(`${name}: both store it, or both refuse it`, async () => {
      const row = make();
      const edge = edgeTakes(row);
      const postgres = await pgStores(row);
      expect(edge.startsWith('refused'), `edge ${edge}; PostgreSQL ${postgres}`).toBe(postgres.startsWith('refused'));
    }, 120_000);
});
