import { describe, expect, it } from 'vitest';
import { copyRows } from './copy-rows';
import { preparedTestPush } from './test-push';

/** COPY text format → the value's bytes (the inverse of the escaping copyRows does). */
function unescape(field: string): Buffer {
  return Buffer.from(field.replace(/\\(.)/g, (_, c: string) => ({ n: '\n', r: '\r', t: '\t', '\\': '\\' })[c] ?? c));
}

const push = (body: string) => preparedTestPush(body);

async function lines(pushes: ReturnType<typeof push>[], chunkChars?: number): Promise<string[][]> {
  const chunks: Buffer[] = [];
  for await (const c of copyRows(pushes, { processedAtIso: '2026-11-27T20:00:01.000Z', ...(chunkChars ? { chunkChars } : {}) }))
    chunks.push(c);
  const text = Buffer.concat(chunks).toString('utf8');
  expect(text.endsWith('\n')).toBe(true);
  return text
    .slice(0, -1)
    .split('\n')
    .map((l) => l.split('\t'));
}

describe('copyRows', () => {
  it("writes each element's bytes exactly, escaped for COPY, through multi-byte text and chunk boundaries", async () => {
    const bodies = [
      '{"metrics":[{"type":"pg_stäts","database":"日本","q":"SELECT \\"ü\\" FROM t WHERE x = \'\\\\n\'"},\n\t{"type":"b",\r\n\t"n":-9223372036854775808}]}',
      `{"metrics":[{"type":"pg_query_stats","queries":[{"query":"${'€'.repeat(3000)}","calls":18446744073709551615}]}]}`,
      '{"database":"app","flat":true}',
    ];
    const pushes = bodies.map(push);
    // A small chunk size forces rows (and one long row) across chunk boundaries.
    for (const chunkChars of [undefined, 64]) {
      const rows = await lines(pushes, chunkChars);
      const expected = pushes.flatMap((p) => p.split.slices.map((s) => ({ p, s })));
      expect(rows).toHaveLength(expected.length);
      rows.forEach((cols, i) => {
        const { p, s } = expected[i]!;
        expect(cols).toHaveLength(10); // a raw tab would split a field, a raw newline a line
        expect(cols[4]).not.toContain('\r');
        expect(cols.slice(0, 4)).toEqual([p.collectorId, p.pushId, s.type, s.database ?? '\\N']);
        expect(unescape(cols[4]!).equals(p.body.subarray(s.start, s.end))).toBe(true);
        expect(cols.slice(5)).toEqual([p.receivedIso, String(s.records), p.checksum, 't', '2026-11-27T20:00:01.000Z']);
      });
    }
  });
});
