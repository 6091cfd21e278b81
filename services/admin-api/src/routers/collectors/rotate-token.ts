import { z } from 'zod';
import { recordIssuedToken, revokeCollectorTokens, withTransaction } from '@pga/db';
import { adminProcedure } from '../../trpc/init';
import { lockCollector } from '../../collectors/lock-collector';
import { IssuedCredentialsSchema } from '../../collectors/collector-schema';
import { credentialsFor } from '../../collectors/credentials';
import { publishChange } from '../../collectors/after-commit';
import { writeAudit } from '../../audit/write-audit';
import { actorOf } from '../../audit/actor';

/** Issues a new token (shown once) and revokes every other live token of the collector at the edges. */
export const rotateToken = adminProcedure
  .input(z.object({ id: z.uuid() }))
  .output(IssuedCredentialsSchema.extend({ revoked_tokens: z.number().int() }))
  .mutation(async ({ ctx, input }) => {
    const { deps } = ctx;
    const issued = await deps.tokens.issue(input.id);
    const jtis = await withTransaction(deps.pool, async (db) => {
      const row = await lockCollector(db, input.id);
      await recordIssuedToken(db, row.id, issued, { rotated: true });
      const revoked = await revokeCollectorTokens(db, row.id, 'rotated', { exceptJti: issued.jti });
      await writeAudit(db, actorOf(ctx), {
        action: 'collector.token_rotated',
        entityType: 'collector',
        collectorId: row.id,
        details: { token_jti: issued.jti, revoked_jtis: revoked },
      });
      return revoked;
    });
    await publishChange(deps, { collector_id: input.id, kind: 'rotated', jtis });
    return { ...credentialsFor(deps.config, input.id, issued), revoked_tokens: jtis.length };
  });
