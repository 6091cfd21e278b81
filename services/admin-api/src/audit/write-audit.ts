import type { Pool, PoolClient } from '@pga/db';

/** Who did something, as recorded in every audit row. */
export interface Actor {
  id: string | null;
  name: string | null;
  ip: string | null;
  userAgent: string | null;
}

export interface AuditEntry {
  /** e.g. `collector.registered`, `group.deleted`, `user.login_failed` (README lists them all). */
  action: string;
  entityType: 'collector' | 'group' | 'user' | 'enrollment_secret' | 'dashboard' | 'dead_letter';
  entityId?: string | null;
  collectorId?: string | null;
  details?: Record<string, unknown> | null;
  oldValues?: Record<string, unknown> | null;
  newValues?: Record<string, unknown> | null;
}

/** Writes one audit row; call it with the transaction's client so it commits with the change. */
export async function writeAudit(db: Pool | PoolClient, actor: Actor, entry: AuditEntry): Promise<void> {
  await db.query(
    `INSERT INTO collector_audit_log
       (collector_id, entity_type, entity_id, action, details, actor_id, actor_name, ip_address, user_agent, old_values, new_values, created_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, clock_timestamp())`,
    [
      entry.collectorId ?? null,
      entry.entityType,
      entry.entityId ?? entry.collectorId ?? null,
      entry.action,
      entry.details ?? null,
      actor.id,
      actor.name,
      actor.ip,
      actor.userAgent?.slice(0, 1000) ?? null,
      entry.oldValues ?? null,
      entry.newValues ?? null,
    ],
  );
}

/** Secrets never reach the audit log: their presence/change is recorded as this marker. */
export const MASKED = '***';

/**
 * Old/new values of the fields that changed, secrets masked (issue 3 §5).
 * `secretFields` are compared by the caller (a re-encrypted password always differs).
 */
export function diffValues(
  before: Record<string, unknown>,
  after: Record<string, unknown>,
  secretFields: readonly string[] = [],
): { oldValues: Record<string, unknown>; newValues: Record<string, unknown> } | undefined {
  const oldValues: Record<string, unknown> = {};
  const newValues: Record<string, unknown> = {};
  for (const key of Object.keys(after)) {
    if (secretFields.includes(key)) {
      oldValues[key] = MASKED;
      newValues[key] = MASKED;
      continue;
    }
    if (JSON.stringify(before[key] ?? null) !== JSON.stringify(after[key] ?? null)) {
      oldValues[key] = before[key] ?? null;
      newValues[key] = after[key] ?? null;
    }
  }
  return Object.keys(newValues).length ? { oldValues, newValues } : undefined;
}
