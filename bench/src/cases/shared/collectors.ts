import { randomUUID } from 'node:crypto';
import { createSecretBox } from '@pga/crypto';
import { createPool, recordIssuedToken, withTransaction } from '@pga/db';
import { createCollectorTokens } from '@pga/tokens';
import type { ScenarioContext } from '../../harness/scenario';

export interface BenchCollector {
  id: string;
  token: string;
}

/**
 * Registers `count` collectors and gives each its own real token, minted by @pga/tokens and
 * recorded with @pga/db's recordIssuedToken: the same modules the admin service's register
 * procedure uses (collector_tokens row with hash + jti, token dates on the collector).
 * Created once per bench and shared by the scenarios.
 */
export async function benchCollectors(ctx: ScenarioContext, count: number): Promise<BenchCollector[]> {
  const existing = (ctx.shared.get('collectors') as BenchCollector[] | undefined) ?? [];
  if (existing.length >= count) return existing.slice(0, count);
  const { stack } = ctx;
  const tokens = createCollectorTokens({
    secret: stack.secrets.JWT_SECRET,
    issuer: stack.secrets.JWT_ISSUER,
    audience: stack.secrets.JWT_AUDIENCE,
  });
  const box = createSecretBox(stack.secrets.ENCRYPTION_KEY);
  const pool = createPool(stack.databaseUrl, { max: 2, applicationName: 'bench-setup' });
  const created = [...existing];
  try {
    while (created.length < count) {
      const batch = Array.from({ length: Math.min(500, count - created.length) }, () => randomUUID());
      const issued = await Promise.all(batch.map((id) => tokens.issue(id)));
      await withTransaction(pool, async (client) => {
        await client.query(
          `INSERT INTO collectors (id, name, type, environment, host, port, database, username, password_encrypted, status)
           SELECT id, 'bench-' || id, 'postgresql', 'production', 'db-' || left(id::text, 8) || '.example', 5432, 'app', 'monitor', pw, 'pending'
             FROM unnest($1::uuid[], $2::text[]) AS t(id, pw)`,
          [batch, batch.map((id) => box.encrypt('bench-password', id))],
        );
        for (let i = 0; i < batch.length; i++) await recordIssuedToken(client, batch[i]!, issued[i]!);
      });
      batch.forEach((id, i) => created.push({ id, token: issued[i]!.token }));
      ctx.progress.update(`${ctx.label}: registered ${created.length}/${count} collectors`);
    }
  } finally {
    await pool.end();
  }
  ctx.shared.set('collectors', created);
  return created;
}
