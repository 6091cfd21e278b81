import { expect } from 'vitest';
import { TRPCError } from '@trpc/server';

export const TARGET_PASSWORD = 'Sup3r-Secret-Target-Pw!';

/** A valid registration form (the design's example), with overrides. */
export function form(overrides: Record<string, unknown> = {}): any {
  return {
    name: `prod-rds-${Math.random().toString(36).slice(2, 8)}`,
    type: 'postgresql',
    environment: 'production',
    group: 'AWS RDS',
    host: 'pganalytics-db-1.region.rds.amazonaws.com',
    port: 5432,
    database: 'pganalytics',
    username: 'postgres',
    password: TARGET_PASSWORD,
    ssl_mode: 'require',
    collection_interval: 60,
    query_limit: 100,
    tags: ['prod', 'aws', 'rds'],
    ...overrides,
  };
}

/** Field named by a rejected call: zod's issue path, or AppError's `field`. */
export function rejectedField(err: unknown): string | undefined {
  if (!(err instanceof TRPCError)) return undefined;
  const cause = err.cause as any;
  if (cause?.issues?.[0]?.path) return cause.issues[0].path.join('.');
  return cause?.details?.field;
}

export async function expectRejected(promise: Promise<unknown>, code: string, field?: string): Promise<void> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected ${code}${field ? ` on ${field}` : ''}`).toBeInstanceOf(TRPCError);
  expect((err as TRPCError).code).toBe(code);
  if (field) expect(rejectedField(err)).toBe(field);
}
