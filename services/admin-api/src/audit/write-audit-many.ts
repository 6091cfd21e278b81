import type { PoolClient } from '@pga/db';
import { MASKED, type Actor } from './write-audit';

/**
 * `collector.registered` audit rows for many just-inserted collectors in one statement (bulk
 * import), in the importing transaction. The new values are built in SQL from the rows themselves —
 * no JSON per row crosses the wire — with the password and certificate masked.
 */
export async function writeRegisteredAudits(
  db: PoolClient,
  actor: Actor,
  collectorIds: readonly string[],
  details: Record<string, unknown>,
): Promise<void> {
  if (collectorIds.length === 0) return;
  await db.query(
    `INSERT INTO collector_audit_log (collector_id, entity_type, entity_id, action, details, actor_id, actor_name, ip_address, user_agent, new_values)
     SELECT c.id, 'collector', c.id::text, 'collector.registered', $2, $3, $4, $5, $6,
            jsonb_build_object('name', c.name, 'type', c.type, 'environment', c.environment, 'group_id', c.group_id,
                               'description', c.description, 'host', c.host, 'port', c.port, 'database', c.database,
                               'username', c.username, 'password', $7::text, 'ssl_mode', c.ssl_mode,
                               'collection_interval', c.collection_interval, 'query_limit', c.query_limit, 'tags', to_jsonb(c.tags))
            || CASE WHEN c.ssl_certificate_encrypted IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('ssl_certificate', $7::text) END
       FROM collectors c WHERE c.id = ANY($1::uuid[])`,
    [collectorIds, details, actor.id, actor.name, actor.ip, actor.userAgent?.slice(0, 1000) ?? null, MASKED],
  );
}
