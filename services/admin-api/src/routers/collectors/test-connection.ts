import { z } from 'zod';
import { AppError } from '@pga/contracts';
import { adminProcedure } from '../../trpc/init';
import { TargetFields, DEFAULT_PORTS } from '../../collectors/field-schemas';
import { loadTarget } from '../../collectors/load-target';
import { requirePasswordForRedirect } from '../../collectors/password-guard';
import { ConnectionTestResultSchema, type ConnectionTarget } from '../../connection-test/result';
import { testConnection as runTest } from '../../connection-test/test-connection';
import type { Deps } from '../../deps';

export const TestConnectionInputSchema = z.object({
  /** Test a registered collector's stored settings; fields given alongside override them. */
  collector_id: z.uuid().optional(),
  type: TargetFields.type.optional(),
  host: TargetFields.host.optional(),
  port: TargetFields.port,
  database: TargetFields.database.optional(),
  username: TargetFields.username.optional(),
  password: TargetFields.password.optional(),
  ssl_mode: TargetFields.ssl_mode,
  ssl_certificate: TargetFields.ssl_certificate,
});
export type TestConnectionInput = z.infer<typeof TestConnectionInputSchema>;

/** Runs one test under the process-wide concurrency bound (CONNECTION_TEST_CONCURRENCY). */
export function boundedTest(deps: Deps, target: ConnectionTarget) {
  return deps.connectionTests.run(() => runTest(target, { timeoutMs: deps.config.CONNECTION_TEST_TIMEOUT_MS }));
}

export const testConnection = adminProcedure
  .input(TestConnectionInputSchema)
  .output(ConnectionTestResultSchema)
  .mutation(async ({ ctx, input }) => {
    const stored = input.collector_id ? await loadTarget(ctx.deps.pool, ctx.deps.secretBox, input.collector_id) : undefined;
    // The stored password may only go where it is already configured to go: pointing a test at
    // another server (or weakening TLS) needs the password typed in, so the endpoint cannot be
    // used to send a collector's secret to a host of the caller's choosing (collectors.update has
    // the same rule).
    if (stored) requirePasswordForRedirect(stored, stored.password, input);
    const pick = <K extends 'type' | 'host' | 'database' | 'username' | 'password'>(
      key: K,
    ): NonNullable<TestConnectionInput[K]> => {
      const value = input[key] ?? stored?.[key];
      if (value === undefined) throw new AppError('VALIDATION_FAILED', `${key}: is required`, { field: key });
      return value as NonNullable<TestConnectionInput[K]>;
    };
    const type = pick('type');
    return boundedTest(ctx.deps, {
      type,
      host: pick('host'),
      port: input.port ?? stored?.port ?? DEFAULT_PORTS[type],
      database: pick('database'),
      username: pick('username'),
      password: pick('password'),
      ssl_mode: input.ssl_mode ?? stored?.ssl_mode ?? 'prefer',
      ssl_certificate: input.ssl_certificate ?? stored?.ssl_certificate,
    });
  });
