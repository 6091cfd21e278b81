import { describe, expect, it } from 'vitest';
import { checkTokenKeyIds } from './token-key-check';
import type { Pool } from './pool';

/** A database whose token key usage is `rows` (what tokenKeyUsage's query returns). */
const db = (rows: { key_id: string | null; live_tokens: number; collectors: number }[]) =>
  ({
    query: async () => ({ rows: rows.map((r) => ({ ...r, last_expires_at: new Date('2027-12-01T00:00:00Z') })) }),
  }) as unknown as Pool;

function logger() {
  const lines: { level: string; msg: string }[] = [];
  return {
    lines,
    error: (_o: unknown, msg: string) => void lines.push({ level: 'error', msg }),
    warn: (_o: unknown, msg: string) => void lines.push({ level: 'warn', msg }),
  };
}

describe('checkTokenKeyIds', () => {
  it('says nothing after a rotation done as the README says: the dropped key still has live tokens, but no collector uses one', async () => {
    const log = logger();
    const refusal = await checkTokenKeyIds(
      db([
        { key_id: 'k2', live_tokens: 10_000, collectors: 10_000 },
        { key_id: null, live_tokens: 10_000, collectors: 0 },
      ]),
      { keyIds: ['k2'], activeKeyId: 'k2' },
      log as never,
    );
    expect(refusal).toBeUndefined();
    expect(log.lines).toEqual([]);
  });

  it('an error line for a dropped key some collectors still use; a refusal when none would verify', async () => {
    const log = logger();
    const usage = [
      { key_id: 'k2', live_tokens: 90, collectors: 90 },
      { key_id: null, live_tokens: 12, collectors: 10 },
    ];
    expect(await checkTokenKeyIds(db(usage), { keyIds: ['k2'], activeKeyId: 'k2' }, log as never)).toBeUndefined();
    expect(log.lines).toEqual([
      { level: 'error', msg: expect.stringMatching(/^JWT_SECRET lists no key "k1", which verifies the 12 live tokens/) },
    ]);
    const refusal = await checkTokenKeyIds(db(usage), { keyIds: ['prod'], activeKeyId: 'prod' }, logger() as never);
    expect(refusal).toMatch(/^JWT_SECRET verifies none of the live collector tokens/);
  });

  it('a fresh installation, or one whose tokens are all of dropped keys no collector uses, starts', async () => {
    expect(await checkTokenKeyIds(db([]), { keyIds: ['k1'], activeKeyId: 'k1' }, logger() as never)).toBeUndefined();
    expect(
      await checkTokenKeyIds(
        db([{ key_id: 'k0', live_tokens: 3, collectors: 0 }]),
        { keyIds: ['k1'], activeKeyId: 'k1' },
        logger() as never,
      ),
    ).toBeUndefined();
  });
});
