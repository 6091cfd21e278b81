import { describe, expect, it } from 'vitest';
import { extraNodeFlags, withFlagsBeforeScript } from './diagnostics';

describe('BENCH_NODE_FLAGS', () => {
  it('splits on any whitespace and ignores an empty or missing value', () => {
    expect(extraNodeFlags({ BENCH_NODE_FLAGS: '  --trace-gc \t--max-semi-space-size=32\n' })).toEqual([
      '--trace-gc',
      '--max-semi-space-size=32',
    ]);
    expect(extraNodeFlags({ BENCH_NODE_FLAGS: '' })).toEqual([]);
    expect(extraNodeFlags({})).toEqual([]);
  });

  it('puts the extra flags after the service own flags and before its script', () => {
    expect(withFlagsBeforeScript(['--heap-growing-percent=50', '--single-threaded-gc', 'dist/main.mjs'], ['--trace-gc'])).toEqual(
      ['--heap-growing-percent=50', '--single-threaded-gc', '--trace-gc', 'dist/main.mjs'],
    );
    expect(withFlagsBeforeScript(['dist/main.mjs'], [])).toEqual(['dist/main.mjs']);
  });
});
