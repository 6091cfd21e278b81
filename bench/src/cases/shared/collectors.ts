import { randomUUID } from 'node:crypto';
import { createSecretBox } from '@pga/crypto';
import { createPool, recordIssuedToken, withTransaction } from '@pga/db';
import { createCollectorTokens } from '@pga/tokens';
import type { ScenarioContext } from '../../harness/scenario';
import { adminClient, adminMissing, registerInput } from './admin-client';

/** Collectors registered through the admin API; beyond these (the admin-api scenario's 10,000) SQL is used. */
const VIA_ADMIN = 1000;

export interface BenchCollector {
  id: string;
  token: string;
}

/**
 * Registers `count` collectors, each with its own real token. The first 1,000 (the push fleet) go
 * through the admin service's `collectors.register` over HTTP, as an operator would; more (for the
 * admin-api scenario's 10,000-collector table), or all of them when the admin service is not built,
 * are inserted in bulk with tokens minted by @pga/tokens and recorded by @pga/db's
 * recordIssuedToken, the modules that procedure itself uses. Created once per bench and shared.
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
  if (!adminMissing() && created.length < Math.min(count, VIA_ADMIN)) {
    const admin = await adminClient(ctx);
    const want = Math.min(count, VIA_ADMIN);
    let failed = 0;
    while (created.length < want) {
      const batch = Array.from({ length: Math.min(8, want - created.length) }, () => randomUUID());
      const results = await Promise.all(
        batch.map((n) =>
          admin.mutation<{ token: string; collector: { id: string } }>('collectors.register', registerInput(`bench-${n}`)),
        ),
      );
      for (const r of results) {
        if (r.status === 200 && r.data) created.push({ id: r.data.collector.id, token: r.data.token });
        else if (++failed > 20) throw new Error(`collectors.register keeps failing (HTTP ${r.status})`);
      }
      ctx.progress.update(`${ctx.label}: registered ${created.length}/${want} collectors through the admin API`);
    }
    ctx.shared.set('collectors-via', 'admin API (collectors.register)');
  }
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
