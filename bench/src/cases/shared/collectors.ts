import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { createSecretBox } from '@pga/crypto';
import { createPool, recordIssuedToken, withTransaction } from '@pga/db';
import { createCollectorTokens } from '@pga/tokens';
import type { ScenarioContext } from '../../harness/scenario';
import { REPO_ROOT } from '../../harness/stack';
import { adminClient, adminMissing, registerInput } from './admin-client';

/** Collectors registered through the admin API; beyond these (the admin-api scenario's 10,000) SQL is used. */
const VIA_ADMIN = 1000;

export interface BenchCollector {
  id: string;
  token: string;
}

/**
 * Registers `count` collectors, each with its own real token. The first 1,000 (the push fleet) go
 * through the admin service over HTTP, as an operator would (`collectors.bulkImport`, or
 * `collectors.register` one by one where bulk import is not built); more (for the
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
    if (existsSync(path.join(REPO_ROOT, 'services/admin-api/src/routers/collectors/bulk-import.ts'))) {
      // One collectors.bulkImport call (the operator's path for fleets); it returns every token once.
      ctx.progress.update(`${ctx.label}: registering ${want - created.length} collectors with collectors.bulkImport`);
      const rows = Array.from({ length: want - created.length }, () => registerInput(`bench-${randomUUID()}`));
      const res = await admin.mutation<{ created: number; tokens_csv: string | null }>('collectors.bulkImport', {
        format: 'json',
        content: JSON.stringify(rows),
        mode: 'all_or_nothing',
      });
      if (res.status !== 200 || !res.data?.tokens_csv) throw new Error(`collectors.bulkImport failed (HTTP ${res.status})`);
      for (const line of res.data.tokens_csv.split(/\r?\n/).slice(1)) {
        const [, id, token] = line.split(',');
        if (id && token) created.push({ id, token });
      }
      ctx.shared.set('collectors-via', 'admin API (collectors.bulkImport)');
    } else {
      let failed = 0;
      while (created.length < want) {
        const batch = Array.from({ length: Math.min(16, want - created.length) }, () => randomUUID());
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
        if (batch.length === 1) return recordIssuedToken(client, batch[0]!, issued[0]!);
        // The same rows recordIssuedToken writes, 500 per statement (it is one row per call).
        await client.query(
          `WITH t AS (
             INSERT INTO collector_tokens (jti, collector_id, token_hash, issued_at, expires_at, key_id)
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::text[])
           )
           UPDATE collectors c SET jwt_token_expires_at = x.exp
             FROM unnest($2::uuid[], $5::timestamptz[]) AS x(id, exp) WHERE c.id = x.id`,
          [
            issued.map((t) => t.jti),
            batch,
            issued.map((t) => t.tokenHash),
            issued.map((t) => t.issuedAt),
            issued.map((t) => t.expiresAt),
            issued.map((t) => t.keyId),
          ],
        );
      });
      batch.forEach((id, i) => created.push({ id, token: issued[i]!.token }));
      ctx.progress.update(`${ctx.label}: registered ${created.length}/${count} collectors`);
    }
    // Autovacuum analyzes a table this changed within a minute (autovacuum_naptime); the scenarios
    // start seconds later. Without statistics PostgreSQL estimates one row per filter and plans the
    // admin list as a bitmap AND of whole indexes plus a sort (~19 ms against ~11 ms under load).
    await pool.query('ANALYZE collectors, collector_tokens');
  } finally {
    await pool.end();
  }
  ctx.shared.set('collectors', created);
  return created;
}
