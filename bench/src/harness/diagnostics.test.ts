import { describe, expect, it } from 'vitest';
import { extraNodeFlags, extraServiceEnv, withFlagsBeforeScript } from './diagnostics';

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

describe('BENCH_SERVICE_ENV', () => {
  it('reads NAME=value pairs (a value may hold "=") and refuses anything else', () => {
    expect(extraServiceEnv({ BENCH_SERVICE_ENV: ' EDGE_PROCESSES=1  X=a=b ' })).toEqual({ EDGE_PROCESSES: '1', X: 'a=b' });
    expect(extraServiceEnv({})).toEqual({});
    expect(() => extraServiceEnv({ BENCH_SERVICE_ENV: 'EDGE_PROCESSES' })).toThrow('"EDGE_PROCESSES" is not NAME=value');
    expect(() => extraServiceEnv({ BENCH_SERVICE_ENV: '=1' })).toThrow('is not NAME=value');
  });
});
