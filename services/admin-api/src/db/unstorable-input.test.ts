import { describe, expect, it } from 'vitest';
import { MAX_INPUT_DEPTH, MAX_INPUT_VALUES, findUnstorableInput } from './unstorable-input';

const nested = (levels: number, leaf: unknown = 1): unknown => {
  let value = leaf;
  for (let i = 0; i < levels; i++) value = { a: value };
  return value;
};

describe('findUnstorableInput', () => {
  it('names the first string PostgreSQL cannot store by its path', () => {
    expect(findUnstorableInput({ name: 'ok', tags: ['x', 'a\u0000b'] })).toEqual({
      field: 'tags.1',
      message: 'tags.1: must not contain U+0000',
    });
    expect(findUnstorableInput({ a: ['\u0000'], b: '\u0000' })?.field).toBe('a.0');
    expect(findUnstorableInput('\u0000')).toEqual({ message: 'must not contain U+0000' });
    expect(findUnstorableInput({ name: 'ok', n: 1, x: null, y: [true] })).toBeUndefined();
  });

  it('refuses a lone UTF-16 surrogate, high or low, and accepts a pair', () => {
    const reason = 'must not contain an unpaired UTF-16 surrogate (U+D800 to U+DFFF)';
    for (const lone of ['\ud800', 'a\udbff', '\udc00b', '\udc00\ud800', '\ud83d\ude00\ude00'])
      expect(findUnstorableInput({ s: lone }), JSON.stringify(lone)).toEqual({ field: 's', message: `s: ${reason}` });
    expect(findUnstorableInput({ s: 'a\ud83d\ude00b \u{10FFFF}' })).toBeUndefined();
  });

  it(`accepts ${MAX_INPUT_DEPTH} levels of nesting and refuses one more`, () => {
    expect(findUnstorableInput(nested(MAX_INPUT_DEPTH))).toBeUndefined();
    expect(findUnstorableInput(nested(MAX_INPUT_DEPTH + 1))).toEqual({
      message: `input nested deeper than ${MAX_INPUT_DEPTH} levels`,
    });
    expect(findUnstorableInput(nested(1_000_000))?.message).toMatch(/nested deeper/);
  });

  it('walks a deep input without recursion, building only the path at fault', () => {
    const deep = nested(200_000, 'a\u0000');
    const found = findUnstorableInput(deep, Infinity, Infinity);
    expect(found?.field).toBe(Array(200_000).fill('a').join('.'));
  });

  it(`refuses an input of more than ${MAX_INPUT_VALUES} values before walking it all (a 32 MiB body holds millions)`, () => {
    expect(findUnstorableInput({ ids: Array(MAX_INPUT_VALUES - 2).fill(0) })).toBeUndefined();
    expect(findUnstorableInput({ ids: Array(MAX_INPUT_VALUES).fill(0) })).toEqual({
      message: `input holds more than ${MAX_INPUT_VALUES} values`,
    });
    // Not one element read past the limit, and no list of them made.
    let reads = 0;
    const wide = new Proxy(Array(1_000_000).fill(0), {
      get: (target, key, receiver) => {
        if (typeof key === 'string' && /^\d+$/.test(key)) reads++;
        return Reflect.get(target, key, receiver) as unknown;
      },
    });
    expect(findUnstorableInput({ username: wide })?.message).toMatch(/more than/);
    expect(reads).toBeLessThanOrEqual(MAX_INPUT_VALUES);
  });
});
