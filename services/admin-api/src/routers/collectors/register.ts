import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { AppError } from '@pga/contracts';
import { isUniqueViolation, recordIssuedToken, withTransaction } from '@pga/db';
import { adminProcedure } from '../../trpc/init';
import { RegisterCollectorInputSchema, DEFAULT_PORTS } from '../../collectors/field-schemas';
import { CollectorSchema, IssuedCredentialsSchema } from '../../collectors/collector-schema';
import { findCollector } from '../../collectors/collector-row';
import { resolveGroupId } from '../../collectors/resolve-group';
import { credentialsFor } from '../../collectors/credentials';
import { recordKnown, setConfigVersion } from '../../collectors/after-commit';
import { ConnectionTestResultSchema } from '../../connection-test/result';
import { MASKED, writeAudit } from '../../audit/write-audit';
import { actorOf } from '../../audit/actor';
import { boundedTest } from './test-connection';

export const RegisterInputSchema = RegisterCollectorInputSchema.extend({
  /** Test the connection first and refuse to register when it fails (unsupported types are not tested). */
  test_connection: z.boolean().default(false),
});

/**
 * Registers a collector (design "Collector Registration Flow" step 4): encrypts the password and
 * certificate with the new collector's id as associated data, stores only the token's hash/jti,
 * and returns the token once with the setup instructions.
 */
export const register = adminProcedure
  .input(RegisterInputSchema)
  .output(IssuedCredentialsSchema.extend({ collector: CollectorSchema, connection_test: ConnectionTestResultSchema.nullable() }))
  .mutation(async ({ ctx, input }) => {
    const { deps } = ctx;
    const port = input.port ?? DEFAULT_PORTS[input.type];
    const sslMode = input.ssl_mode ?? 'prefer';
    let connectionTest = null;
    if (input.test_connection) {
      connectionTest = await boundedTest(deps, { ...input, port, ssl_mode: sslMode });
      if (connectionTest.supported && !connectionTest.ok)
        throw new AppError(
          'VALIDATION_FAILED',
          `connection test failed at the ${connectionTest.failed_stage} stage: ${connectionTest.message}`,
          {
            field: 'connection',
          },
        );
    }
    const id = randomUUID();
    const issued = await deps.tokens.issue(id);
    let collector;
    try {
      // Read back inside the transaction: no PostgreSQL step follows the COMMIT, so a connection lost
      // after it cannot turn a registration that was saved (its token shown nowhere) into an error.
      collector = await withTransaction(deps.pool, async (db) => {
        const groupId = await resolveGroupId(db, input);
        await db.query(
          `INSERT INTO collectors (id, name, type, environment, group_id, description, host, port, database, username,
             password_encrypted, ssl_mode, ssl_certificate_encrypted, collection_interval, query_limit, tags, registered_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)`,
          [
            id,
            input.name,
            input.type,
            input.environment,
            groupId,
            input.description ?? null,
            input.host,
            port,
            input.database,
            input.username,
            deps.secretBox.encrypt(input.password, id),
            sslMode,
            input.ssl_certificate ? deps.secretBox.encrypt(input.ssl_certificate, id) : null,
            input.collection_interval,
            input.query_limit,
            input.tags,
            ctx.user.id,
          ],
        );
        await recordIssuedToken(db, id, issued);
        await writeAudit(db, actorOf(ctx), {
          action: 'collector.registered',
          entityType: 'collector',
          collectorId: id,
          details: { token_jti: issued.jti, connection_tested: input.test_connection },
          newValues: {
            name: input.name,
            type: input.type,
            environment: input.environment,
            group_id: groupId,
            host: input.host,
            port,
            database: input.database,
            username: input.username,
            password: MASKED,
            ssl_mode: sslMode,
            ...(input.ssl_certificate ? { ssl_certificate: MASKED } : {}),
            collection_interval: input.collection_interval,
            query_limit: input.query_limit,
            tags: input.tags,
          },
        });
        return (await findCollector(db, id))!;
      });
    } catch (err) {
      if (isUniqueViolation(err, 'collectors_name_key'))
        throw new AppError('CONFLICT', `a collector named "${input.name}" already exists`, { field: 'name' });
      throw err;
    }
    await setConfigVersion(deps, id, 1);
    // Only now that the row is committed (reconcile-deny-state.ts denies a known id PostgreSQL lacks).
    await recordKnown(deps, [id]);
    return { collector, connection_test: connectionTest, ...credentialsFor(deps.config, id, issued) };
  });
