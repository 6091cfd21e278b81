import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { scanBytes, scanPushJson } from './scan-push-json';

const scan = (text: string) => scanPushJson(Buffer.from(text));
const codeOf = (text: string) => {
  try {
    scan(text);
    return 'ok';
  } catch (err) {
    return (err as { code: string }).code;
  }
};

describe('scanPushJson', () => {
  it('agrees with JSON.parse on what is valid JSON', () => {
    const valid = [
      '{}',
      ' {"a":[1,-2.5e+3,0,true,false,null,"x\\n\\u00e9\\ud83d\\ude00"]} ',
      '{"a":{"b":{"c":[]}}}',
      '{"":""}',
      '{"n":-0.0E-0}',
    ];
    const invalid = [
      '{',
      '{"a"}',
      '{"a":1,}',
      '{"a":[1,]}',
      "{'a':1}",
      '{"a":01}',
      '{"a":1.}',
      '{"a":.5}',
      '{"a":+1}',
      '{"a":tru}',
      '{"a":"\t"}',
      '{"a":"\\x"}',
      '{"a":1} {}',
      '{"a":NaN}',
    ];
    for (const text of valid) {
      expect(() => JSON.parse(text)).not.toThrow();
      expect(codeOf(text)).toBe('ok');
    }
    for (const text of invalid) {
      expect(() => JSON.parse(text)).toThrow();
      expect({ text, code: codeOf(text) }).toEqual({ text, code: 'INVALID_JSON' });
    }
  });

  it('picks out collector_id, push_id and the envelope element count', () => {
    expect(scan('{"collector_id":"abc","push_id":"p\\u0031","metrics":[{"type":"a"},{"x":[{"type":1}],"type":"b"}]}')).toEqual({
      collectorId: 'abc',
      pushId: 'p1',
      metricsCount: 2,
    });
    expect(scan('{"database":"app","queries":[{"type":"x"}]}')).toEqual({});
    expect(scan('{"nested":{"collector_id":"not-top-level"}}')).toEqual({});
    expect(scan('{"metrics":{"type":"x"}}').metricsCount).toBeUndefined();
  });

  it('CONTRACT.md: an object whose metrics is not an array of objects with a type is a flat push, not an error', () => {
    for (const text of [
      '{"metrics":[1]}',
      '{"metrics":[{}]}',
      '{"metrics":[{"type":""}]}',
      '{"metrics":[{"type":5}]}',
      '{"metrics":[{"type":"a"},{"name":"cpu"}]}',
      '{"metrics":[{"type":"a","type":null}]}',
      '{"metrics":[{"type":"a","type":{"x":1}}]}',
      '{"database":"app","metrics":[{"name":"cpu","value":1}]}',
    ])
      expect({ text, scan: scan(text) }).toEqual({ text, scan: {} });
    // A long type is a type (the writer keeps its first 100 characters as metric_type).
    expect(scan(`{"metrics":[{"type":"${'x'.repeat(300)}"}]}`).metricsCount).toBe(1);
  });

  it('collector_id must be a string or null (absent); push_id may be a number (its digits) or null (absent)', () => {
    for (const text of ['{"collector_id":5}', '{"collector_id":true}', '{"collector_id":{"id":"x"}}', '{"collector_id":["x"]}'])
      expect({ text, code: codeOf(text) }).toEqual({ text, code: 'INVALID_PAYLOAD' });
    expect(scan('{"collector_id":null}')).toEqual({});
    expect(scan('{"collector_id":"x","collector_id":null}')).toEqual({});
    expect(scan('{"push_id":17,"metrics":[]}')).toEqual({ pushId: '17', metricsCount: 0 });
    expect(scan('{"push_id":-1.5e3}')).toEqual({ pushId: '-1.5e3' });
    expect(scan('{"push_id":"x","push_id":null}')).toEqual({});
    for (const text of ['{"push_id":true}', '{"push_id":{"a":1}}', '{"push_id":[1]}', `{"push_id":1${'0'.repeat(128)}}`])
      expect({ text, code: codeOf(text) }).toEqual({ text, code: 'INVALID_PAYLOAD' });
  });

  it('refuses non-objects and what PostgreSQL jsonb or the writer would choke on', () => {
    for (const text of ['[]', '"s"', '1', 'null', '{"a":"\\u0000"}', '{"a":"\\udc00"}', '{"a":"\\ud800x"}'])
      expect({ text, code: codeOf(text) }).toEqual({ text, code: 'INVALID_PAYLOAD' });
    expect(codeOf(`{"a":${'['.repeat(300)}${']'.repeat(300)}}`)).toBe('INVALID_PAYLOAD');
  });

  it("refuses numbers out of jsonb's numeric range (as measured on PostgreSQL 15), accepts the largest it stores", () => {
    const fits = [
      '1e131071',
      '1e1001',
      '1e-16383',
      '0e99999',
      '-1.5e-16382',
      '0.001e131074',
      '0.0e-16382',
      '0e1073741822',
      `1${'0'.repeat(131071)}`,
    ];
    const overflows = [
      '1e131072',
      '1e200000',
      '1e-16384',
      '-1e-16384',
      '0e-99999',
      '1.5e-16383',
      '0.001e131075',
      '0.0e-16383',
      '1e99999999999999999999',
      '0e1073741823',
      '-0.0E+2000000000',
      '0e99999999999',
      '0e-1073741823',
      `1${'0'.repeat(131072)}`,
    ];
    for (const n of fits) expect({ n: n.slice(0, 20), code: codeOf(`{"x":${n}}`) }).toEqual({ n: n.slice(0, 20), code: 'ok' });
    for (const n of overflows) expect({ n, code: codeOf(`{"x":[${n}]}`) }).toEqual({ n, code: 'INVALID_PAYLOAD' });
    expect(codeOf(`{"x":0.${'0'.repeat(16383)}1}`)).toBe('INVALID_PAYLOAD');
  });

  it("refuses a row PostgreSQL's jsonb cannot hold (a metric element, or a flat push whole), on the fast pass too, and accepts the largest it stores", () => {
    const messageOf = (text: string) => {
      try {
        return `ok ${JSON.stringify(scan(text))}`;
      } catch (err) {
        return `${(err as { code: string }).code} ${(err as Error).message}`;
      }
    };
    const ones = (n: number) => `[${'1,'.repeat(n - 1)}1]`;
    // An array of 2^24 elements is the most jsonb takes (measured: one more asks palloc for 1 GiB).
    expect(messageOf(`{"metrics":[{"type":"a"},{"type":"b","v":${ones(16_777_216)}}]}`)).toBe('ok {"metricsCount":2}');
    expect(messageOf(`{"metrics":[{"type":"a"},{"type":"b","v":${ones(16_777_217)}}]}`)).toBe(
      'INVALID_PAYLOAD metrics[1] (32.0 MiB of JSON) cannot be stored: an array of 16,777,217 elements (jsonb holds at most 16,777,216); split it',
    );
    // An object of 2^23 keys likewise (duplicates count: they are dropped only after the parse).
    const keys = (n: number) => `{${'"":0,'.repeat(n - 1)}"":0}`;
    expect(messageOf(`{"x":${keys(8_388_608)}}`)).toBe('ok {}');
    expect(messageOf(`{"x":${keys(8_388_609)}}`)).toBe(
      'INVALID_PAYLOAD this push (40.0 MiB of JSON, stored whole as one row) cannot be stored: an object of 8,388,609 keys (jsonb holds at most 8,388,608); split it',
    );
    // Over 268,435,455 bytes as jsonb: 7 million small objects (PostgreSQL: "total size of jsonb
    // array elements exceeds the maximum").
    expect(messageOf(`{"metrics":[{"type":"a","v":[${'{"a":1,"b":[]},'.repeat(7_000_000)}{}]}]}`)).toMatch(
      /^INVALID_PAYLOAD metrics\[0\] \(100\.1 MiB of JSON\) cannot be stored: it would take about \d+ MB as jsonb, over the 268,435,455 bytes one jsonb value holds; split it$/,
    );
    // The same bytes spread over many elements are many rows, each of them small: stored.
    const small = Array.from({ length: 1000 }, () => `{"type":"a","v":[${'{"a":1,"b":[]},'.repeat(7000)}{}]}`).join(',');
    expect(messageOf(`{"metrics":[${small}]}`)).toBe('ok {"metricsCount":1000}');
    // ~19 s alone on the 2-core machine (hundreds of MB of JSON text): the default 60 s ran out once
    // beside other suites and helpers' work.
  }, 180_000);

  it('never needs to parse numbers: 64-bit values pass untouched', () => {
    expect(codeOf('{"queryid":-9223372036854775808,"big":18446744073709551615,"f":1e400}')).toBe('ok');
  });

  it('takes the same decision on the fast pass as the exact scanner', () => {
    const outcome = (f: () => unknown) => {
      try {
        return { ok: f() };
      } catch (err) {
        return { code: (err as { code: string }).code };
      }
    };
    const texts = [
      '{}',
      '{"collector_id":"c","push_id":"p","metrics":[{"type":"a","rows":[{"x":1}]},{"type":"b"}]}',
      '{"metrics":[{"type":"x"}],"metrics":{"a":1}}',
      '{"metrics":[]}',
      '{"metrics":[{"type":"' + 'x'.repeat(100) + '"}]}',
      '{"metrics":[{"type":"' + 'x'.repeat(101) + '"}]}',
      '{"metrics":[[]]}',
      '{"metrics":[null]}',
      '{"push_id":null}',
      '{"collector_id":"a","collector_id":"b"}',
      '[{"type":"a"}]',
      '{"a":1}x',
      `{"a":${'['.repeat(200)}${']'.repeat(200)}}`,
      `{"a":${'['.repeat(300)}${']'.repeat(300)}}`,
      '{"q":-9223372036854775808}',
      '{"metrics":[{"type":"a","type":5}]}',
      '{"metrics":[{"type":"a","type":{}}]}',
      '{"metrics":[{"type":"a"},7,{"type":"b"}]}',
      '{"push_id":12,"collector_id":false}',
      '{"x":1e131072,"y":1e999}',
      '{"x":[1e-1000]}',
      `{"x":${'9'.repeat(1500)}}`,
      '{"metrics":[{"rows":[{"type":""}],"type":"ok"}]}',
      '{"metrics":[{"type":"\\u00e9"}],"push_id":"\\u0041"}',
      '{"metrics":[{"type":"é"}],"collector_id":"ü"}',
      '{"coll\\u0065ctor_id":5}',
      '{"a":[1,2,{"b":[true,false,null,"x\\"y"]}],"c":{}}',
      '{"a":[}',
      '{"a":{]}',
      ' {"a":1} ',
      '{"a":1}}',
    ];
    for (const text of texts) {
      const b = Buffer.from(text);
      expect({ text, r: outcome(() => scanPushJson(b)) }).toEqual({ text, r: outcome(() => scanBytes(b)) });
    }
  });

  it('agrees with the exact scanner on thousands of mutated real pushes', () => {
    const fixture = readFileSync(new URL('../../../../test/fixtures/pganalytics-v3-push.sample.json', import.meta.url));
    const outcome = (f: () => unknown) => {
      try {
        return JSON.stringify(f());
      } catch (err) {
        return (err as { code: string }).code;
      }
    };
    const alphabet = Buffer.from('{}[]",:\\u0 a1-.eE\ttfn');
    let seed = 7;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    expect(outcome(() => scanPushJson(fixture))).toBe(outcome(() => scanBytes(fixture)));
    for (let k = 0; k < 2000; k++) {
      const b = Buffer.from(fixture);
      for (let m = 1 + rand(3); m > 0; m--) b[rand(b.length)] = alphabet[rand(alphabet.length)]!;
      expect(outcome(() => scanPushJson(b))).toBe(outcome(() => scanBytes(b)));
    }
  });
});
