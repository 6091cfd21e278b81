import { describe, expect, it } from 'vitest';
import { stringifyJson } from './stringify-json';

describe('stringifyJson', () => {
  it('writes 64-bit integers digit for digit', () => {
    const text = stringifyJson({ queryid: -5266580654608644134n, max: 9223372036854775807n });
    expect(text).toBe('{"queryid":-5266580654608644134,"max":9223372036854775807}');
    // what JSON.stringify would have done with a Number
    expect(JSON.stringify({ q: Number('-5266580654608644134') })).not.toContain('5266580654608644134');
  });

  it('matches JSON.stringify for everything else', () => {
    const value = { a: [1, 'x', null, undefined, true], b: { c: 1.5, d: undefined }, e: new Date(0), f: 'q"\n' };
    expect(stringifyJson(value)).toBe(JSON.stringify(value));
    expect(stringifyJson({ n: Number.NaN })).toBe('{"n":null}');
  });
});
