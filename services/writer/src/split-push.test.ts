import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { PushShapeError, splitPush } from './split-push';

const fixtureBytes = readFileSync(new URL('../../../test/fixtures/pganalytics-v3-push.sample.json', import.meta.url));
const fixture = fixtureBytes.toString('utf8');
/** The text of a slice (byte offsets into the UTF-8 body). */
const text = (body: string, s: { start: number; end: number }) => Buffer.from(body).subarray(s.start, s.end).toString('utf8');
const split = (body: string) => splitPush(Buffer.from(body));

describe('splitPush', () => {
  it('slices every element of the v3 fixture with its type, database and record count', () => {
    const { kind, slices } = splitPush(fixtureBytes);
    const parsed = JSON.parse(fixture) as { metrics: { type: string; database?: string }[] };
    expect(kind).toBe('envelope');
    expect(slices.map((s) => s.type)).toEqual(parsed.metrics.map((m) => m.type));
    expect(slices.map((s) => s.database)).toEqual(parsed.metrics.map((m) => m.database ?? null));
    // each slice is exactly the element's JSON
    slices.forEach((s, i) => expect(JSON.parse(text(fixture, s))).toEqual(parsed.metrics[i]));
    const appdb = slices[1]!; // pg_stats appdb: 2 indexes + 1 table
    expect(appdb.records).toBe(3);
    const queries = slices.find((s) => s.type === 'pg_query_stats' && s.database === 'postgres')!;
    expect(queries.records).toBe(6);
    const cache = slices.find((s) => s.type === 'pg_cache')!;
    expect(cache.records).toBe(1); // no top-level array: one snapshot
  });

  it('keeps 64-bit integers as text', () => {
    const body = '{"metrics":[{"type":"pg_query_stats","queries":[{"hash":-5266580654608644134,"calls":18446744073709551615}]}]}';
    const [s] = split(body).slices;
    expect(text(body, s!)).toContain('-5266580654608644134');
    expect(text(body, s!)).toContain('18446744073709551615');
  });

  it('treats an object without a metrics array as one flat row', () => {
    const body = ' {"database": "app", "query_count": 1234, "queries": [{"q": 1}, {"q": 2}], "metrics": 5} ';
    expect(split(body)).toEqual({
      kind: 'flat',
      slices: [{ type: 'flat', database: 'app', start: 1, end: body.length - 1, records: 2 }],
    });
  });

  it('handles escapes in keys and strings, nested braces in strings, and empty arrays', () => {
    const body = '{"metrics":[{"type":"a\\"b","database":"x}]","n":[]},{"type":"t","s":"\\\\"}]}';
    const { kind, slices } = split(body);
    expect(kind).toBe('envelope');
    expect(slices.map((s) => [s.type, s.database, s.records])).toEqual([
      ['a"b', 'x}]', 0],
      ['t', null, 1],
    ]);
    expect(text(body, slices[1]!)).toBe('{"type":"t","s":"\\\\"}');
  });

  it('CONTRACT.md: a metrics array that is not all objects with a type makes the push flat, stored whole as one row', () => {
    for (const metrics of [
      '[{"type":"a"},7]',
      '[{"type":"a"},{}]',
      '[{"type":""}]',
      '[{"type":"a","type":5}]',
      '[{"name":"cpu"}]',
    ]) {
      const body = `{"database":"app","metrics":${metrics},"q":[1,2]}`;
      const { kind, slices } = split(body);
      expect({ metrics, kind, n: slices.length }).toEqual({ metrics, kind: 'flat', n: 1 });
      expect(text(body, slices[0]!)).toBe(body);
      expect([slices[0]!.type, slices[0]!.database]).toEqual(['flat', 'app']);
    }
    // The last `metrics` key counts, as in jsonb.
    expect(split('{"metrics":[{"type":"a"}],"metrics":5}').kind).toBe('flat');
    expect(split('{"metrics":5,"metrics":[{"type":"a"}]}').kind).toBe('envelope');
  });

  it('slices by bytes through multi-byte UTF-8 text, a byte-order mark and escaped keys', () => {
    const body = '\ufeff{"metrics":[{"type":"pg_stäts","database":"日本","q":"ü\\"}"},{"\\u0074ype":"t2","x":["€",1]}]}';
    const bytes = Buffer.from(body);
    expect(bytes.length).toBeGreaterThan(body.length); // multi-byte: byte and character offsets differ
    const { slices } = splitPush(bytes);
    expect(slices.map((s) => [s.type, s.database, s.records])).toEqual([
      ['pg_stäts', '日本', 1],
      ['t2', null, 2],
    ]);
    expect(slices.map((s) => JSON.parse(bytes.subarray(s.start, s.end).toString('utf8')))).toEqual(
      (JSON.parse(body.slice(1)) as { metrics: unknown[] }).metrics,
    );
  });

  it('rejects bodies that are not one JSON object', () => {
    for (const bad of ['[1,2]', '"x"', '{"a":1} {"b":2}', '{"a":', '{"a" 1}', '']) {
      expect(() => split(bad), bad).toThrow(PushShapeError);
    }
  });
});
