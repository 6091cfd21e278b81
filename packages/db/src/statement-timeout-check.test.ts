import { describe, expect, it } from 'vitest';
import { settingMs } from './statement-timeout-check';

describe('settingMs', () => {
  it('reads SHOW statement_timeout as PostgreSQL writes it', () => {
    expect(
      ['0', '10s', '10000ms', '1500ms', '5min', '1h', '1d', '250us', ' 10s ', 'off', '', '10 parsecs'].map(settingMs),
    ).toEqual([0, 10_000, 10_000, 1500, 300_000, 3_600_000, 86_400_000, 0.25, 10_000, undefined, undefined, undefined]);
  });
});
