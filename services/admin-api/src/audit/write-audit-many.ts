import type { PoolClient } from '@pga/db';
import type { Actor } from './write-audit';

/** One audit row per collector in a single statement (bulk import), same transaction as the change. */
export async function writeCollectorAudits(
  db: PoolClient,
  actor: Actor,
  action: string,
  entries: readonly { collectorId: string; newValues: Record<string, unknown> }[],
  details: Record<string, unknown>,
): Promise<void> {
  if (entries.length === 0) return;
  await db.query(
    `INSERT INTO collector_audit_log (collector_id, entity_type, entity_id, action, details, actor_id, actor_name, ip_address, user_agent, new_values)
     SELECT u.id, 'collector', u.id::text, $3, $4, $5, $6, $7, $8, u.nv::jsonb
       FROM unnest($1::uuid[], $2::text[]) AS u(id, nv)`,
    [
      entries.map((e) => e.collectorId),
      entries.map((e) => JSON.stringify(e.newValues)),
      action,
      details,
      actor.id,
      actor.name,
      actor.ip,
      actor.userAgent?.slice(0, 1000) ?? null,
    ],
  );
}
