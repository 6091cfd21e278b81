import type { SecretBox } from '@pga/crypto';
import { UndecryptableSecretError, storedKeyId } from '@pga/crypto';
import { SECRET_COLUMNS, type Pool, type SecretColumn } from '@pga/db';
import { reencryptAuditMarkerKey, type AuditMarkerKeyState } from '../audit/marker-key';
import { writeAudit, type Actor } from '../audit/write-audit';

/** A stored secret no key of the ring decrypts: reported, never changed. */
export interface UndecryptableSecret {
  collectorId: string;
  field: 'password' | 'ssl_certificate';
  /** The key id its value is labelled with; null when it is no `v1.<keyId>.…` value. */
  keyId: string | null;
  deleted: boolean;
  reason: string;
}

export interface ReencryptSummary {
  activeKeyId: string;
  /** Collectors read, deleted ones included. */
  collectors: number;
  deleted: number;
  /** Passwords and certificates read. */
  secrets: number;
  /** The secrets as first read, by the key that decrypts them (`undecryptable` is in `failed`). */
  foundByKeyId: Record<string, number>;
  /** Secrets under the active key whose label names another (stored under a list read by position). */
  mislabelled: number;
  /** Secrets decrypted and written again under the active key (by the key they were under). */
  reencrypted: number;
  reencryptedByKeyId: Record<string, number>;
  /** Secrets under the active key already (nothing written). */
  current: number;
  /** Under another key and not re-encrypted: `check`, or changed by an admin on every attempt. */
  notCurrent: number;
  /** Secrets an admin changed between this run's read and its write: read again (never overwritten). */
  changedMeanwhile: number;
  failed: UndecryptableSecret[];
  /**
   * The audit log's marker key (migration 0047, audit/marker-key.ts), moved by the same rule as the
   * admin service's start moves it (reencryptAuditMarkerKey); read after the collectors' secrets.
   */
  auditMarkerKey?: AuditMarkerKeyState;
}

export interface ReencryptOptions {
  pool: Pool;
  box: SecretBox;
  /** Only count (`--check`): nothing is written, no audit entry. */
  check?: boolean;
  /** Collectors per batch (one read and one compare-and-set UPDATE per column); default 500. */
  batchSize?: number;
  /** After every batch, with the counts so far. */
  onBatch?: (summary: Readonly<ReencryptSummary>) => void;
  actor?: Actor;
}

/** The audit actor of the command (no user, no request). */
export const REENCRYPT_ACTOR: Actor = { id: null, name: 'npm run reencrypt-secrets', ip: null, userAgent: null };
export const REENCRYPT_AUDIT_ACTION = 'collector.secrets_reencrypted';
/** Reads of one value an admin keeps changing before it is given up for this run (reported as not current). */
const MAX_ATTEMPTS = 5;
/** Undecryptable values named in the audit entry (every one is printed). */
const AUDITED_FAILURES = 1000;

const FIELD: Record<SecretColumn, UndecryptableSecret['field']> = {
  password_encrypted: 'password',
  ssl_certificate_encrypted: 'ssl_certificate',
};

interface Row {
  id: string;
  deleted: boolean;
  password_encrypted: string | null;
  ssl_certificate_encrypted: string | null;
}

const BATCH_SQL = `
  SELECT id::text, deleted_at IS NOT NULL AS deleted, password_encrypted, ssl_certificate_encrypted
    FROM collectors WHERE id > $1::uuid ORDER BY id LIMIT $2`;
const REREAD_SQL = `
  SELECT id::text, deleted_at IS NOT NULL AS deleted, password_encrypted, ssl_certificate_encrypted
    FROM collectors WHERE id = ANY($1::uuid[])`;
// Compare-and-set on the ciphertext read: a value an admin saved meanwhile (collectors.update, under
// whichever key that service encrypts with) no longer matches and is left alone, then read again.
// The column name comes from SECRET_COLUMNS, never from input.
const casSql = (column: SecretColumn) => `
  UPDATE collectors c SET ${column} = u.next
    FROM unnest($1::uuid[], $2::text[], $3::text[]) AS u(id, prev, next)
   WHERE c.id = u.id AND c.${column} = u.prev
  RETURNING c.id::text`;

interface Pending {
  collectorId: string;
  column: SecretColumn;
  prev: string;
  next: string;
  fromKeyId: string;
}

/**
 * `npm run reencrypt-secrets` (scripts/reencrypt-secrets.ts): every collector's password and
 * certificate, deleted collectors included, not under the ring's active key is decrypted and
 * written again under it, in batches of `batchSize` collectors, each value by compare-and-set on the
 * ciphertext read — safe while the admin service runs. A value no key decrypts is reported and left
 * as it is. Idempotent: a second run finds everything current. With `check`, only counts. Otherwise
 * one audit entry (`collector.secrets_reencrypted`) records the counts, also when the run fails
 * part-way (with the error).
 */
export async function reencryptSecrets(o: ReencryptOptions): Promise<ReencryptSummary> {
  const { pool, box } = o;
  const batchSize = o.batchSize ?? 500;
  const active = box.activeKeyId;
  const summary: ReencryptSummary = {
    activeKeyId: active,
    collectors: 0,
    deleted: 0,
    secrets: 0,
    foundByKeyId: {},
    mislabelled: 0,
    reencrypted: 0,
    reencryptedByKeyId: {},
    current: 0,
    notCurrent: 0,
    changedMeanwhile: 0,
    failed: [],
  };
  const add = (counts: Record<string, number>, key: string) => (counts[key] = (counts[key] ?? 0) + 1);

  /** What to do with one value: nothing (current, failed: counted here) or re-encrypt it. */
  const examine = (row: Row, column: SecretColumn, value: string, firstRead: boolean): Pending | undefined => {
    let opened: { plaintext: string; keyId: string };
    try {
      opened = box.open(value, row.id);
    } catch (err) {
      summary.failed.push({
        collectorId: row.id,
        field: FIELD[column],
        keyId: err instanceof UndecryptableSecretError ? (err.keyId ?? null) : (storedKeyId(value) ?? null),
        deleted: row.deleted,
        reason: err instanceof Error ? err.message : String(err),
      });
      return undefined;
    }
    const labelled = storedKeyId(value);
    if (firstRead) {
      add(summary.foundByKeyId, opened.keyId);
      if (labelled !== opened.keyId) summary.mislabelled++;
    }
    if (opened.keyId === active && labelled === active) {
      summary.current++;
      return undefined;
    }
    if (o.check) {
      summary.notCurrent++;
      return undefined;
    }
    return { collectorId: row.id, column, prev: value, next: box.encrypt(opened.plaintext, row.id), fromKeyId: opened.keyId };
  };

  /** Writes `pending` by compare-and-set; what an admin changed meanwhile is read again and retried. */
  const write = async (pending: Pending[]) => {
    for (let attempt = 1; pending.length > 0; attempt++) {
      const missed: Pending[] = [];
      for (const column of SECRET_COLUMNS) {
        const mine = pending.filter((p) => p.column === column);
        if (mine.length === 0) continue;
        const { rows } = await pool.query<{ id: string }>(casSql(column), [
          mine.map((p) => p.collectorId),
          mine.map((p) => p.prev),
          mine.map((p) => p.next),
        ]);
        const written = new Set(rows.map((r) => r.id));
        for (const p of mine) {
          if (!written.has(p.collectorId)) {
            missed.push(p);
            continue;
          }
          summary.reencrypted++;
          add(summary.reencryptedByKeyId, p.fromKeyId);
        }
      }
      if (attempt === 1) summary.changedMeanwhile += missed.length;
      if (missed.length === 0) return;
      const { rows } = await pool.query<Row>(REREAD_SQL, [[...new Set(missed.map((p) => p.collectorId))]]);
      const byId = new Map(rows.map((r) => [r.id, r]));
      pending = [];
      for (const p of missed) {
        const row = byId.get(p.collectorId);
        const value = row?.[p.column];
        // Removed meanwhile (a certificate taken off, the collector purged): nothing left to re-encrypt.
        if (!row || value === null || value === undefined) continue;
        const again = examine(row, p.column, value, false);
        if (!again) continue;
        if (attempt < MAX_ATTEMPTS) pending.push(again);
        else summary.notCurrent++; // changed on every attempt: the next run takes it
      }
    }
  };

  try {
    for (let after = '00000000-0000-0000-0000-000000000000'; ;) {
      const { rows } = await pool.query<Row>(BATCH_SQL, [after, batchSize]);
      if (rows.length === 0) break;
      after = rows[rows.length - 1]!.id;
      const pending: Pending[] = [];
      for (const row of rows) {
        summary.collectors++;
        if (row.deleted) summary.deleted++;
        for (const column of SECRET_COLUMNS) {
          const value = row[column];
          if (value === null) continue;
          summary.secrets++;
          const p = examine(row, column, value, true);
          if (p) pending.push(p);
        }
      }
      await write(pending);
      o.onBatch?.(summary);
      if (rows.length < batchSize) break;
    }
    // The audit marker key too: until 2026-12-07 only the admin service's start moved it, so --check
    // said "every secret under the active key" while it was still under the old one, and dropping
    // that key made the admin service replace it (markers before and after no longer matched).
    const { plaintext: _key, ...markerKey } = await reencryptAuditMarkerKey(pool, box, { check: o.check ?? false });
    summary.auditMarkerKey = markerKey;
  } catch (err) {
    if (!o.check) await audit(o, summary, err).catch(() => undefined);
    throw err;
  }
  if (!o.check) await audit(o, summary);
  return summary;
}

/** Nothing left under another key, and nothing undecryptable: the other keys can leave the ring. */
export function allCurrent(s: ReencryptSummary): boolean {
  const marker = s.auditMarkerKey?.state;
  return s.failed.length === 0 && s.notCurrent === 0 && marker !== 'not_current' && marker !== 'undecryptable';
}

async function audit(o: ReencryptOptions, s: ReencryptSummary, err?: unknown): Promise<void> {
  await writeAudit(o.pool, o.actor ?? REENCRYPT_ACTOR, {
    action: REENCRYPT_AUDIT_ACTION,
    entityType: 'collector',
    details: {
      active_key_id: s.activeKeyId,
      collectors: s.collectors,
      deleted_collectors: s.deleted,
      secrets: s.secrets,
      found_by_key_id: s.foundByKeyId,
      reencrypted: s.reencrypted,
      reencrypted_by_key_id: s.reencryptedByKeyId,
      already_current: s.current,
      not_current: s.notCurrent,
      changed_meanwhile: s.changedMeanwhile,
      failed: s.failed.length,
      failed_secrets: s.failed
        .slice(0, AUDITED_FAILURES)
        .map((f) => ({ collector_id: f.collectorId, field: f.field, key_id: f.keyId })),
      ...(s.auditMarkerKey ? { audit_marker_key: s.auditMarkerKey } : {}),
      ...(err === undefined ? {} : { interrupted: err instanceof Error ? err.message : String(err) }),
    },
  });
}
