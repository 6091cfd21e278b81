import pg from 'pg';
import type { AckLog } from './push-campaign';

export interface AuditResult {
  acknowledged: number;
  /** Acknowledged pushes with no row at all. */
  lost: number;
  /** Acknowledged pushes with fewer rows than metric elements. */
  partial: number;
  /** Acknowledged pushes stored more than once (more rows than elements). */
  duplicated: number;
  /** Pushes in the table that were never acknowledged (e.g. answered after the client gave up). */
  unacknowledged: number;
  /** Acks that said duplicate:true for a unique Idempotency-Key, or repeated a push id. */
  duplicateAcks: number;
}

/**
 * The loss/duplicate audit: every acknowledged push id must be in collector_metrics with exactly
 * as many rows as it had metric elements.
 */
export async function auditPushes(databaseUrl: string, acks: AckLog): Promise<AuditResult> {
  const client = new pg.Client({ connectionString: databaseUrl, application_name: 'bench-audit' });
  await client.connect();
  try {
    const { rows } = await client.query<{ push_id: string; n: string }>(
      'SELECT push_id::text, count(*) AS n FROM collector_metrics GROUP BY push_id',
    );
    const stored = new Map(rows.map((r) => [r.push_id, Number(r.n)]));
    const result: AuditResult = {
      acknowledged: acks.expectedRows.size,
      lost: 0,
      partial: 0,
      duplicated: 0,
      unacknowledged: 0,
      duplicateAcks: acks.duplicatesAcked,
    };
    for (const [id, expected] of acks.expectedRows) {
      const n = stored.get(id) ?? 0;
      if (n === 0) result.lost++;
      else if (n < expected) result.partial++;
      else if (n > expected) result.duplicated++;
    }
    for (const id of stored.keys()) if (!acks.expectedRows.has(id)) result.unacknowledged++;
    return result;
  } finally {
    await client.end();
  }
}

/**
 * What fails a run in an audit: acknowledged pushes lost (or stored in part) or stored more than
 * once. Pushes stored but never acknowledged do not (a client that gave up before the answer).
 */
export function auditFailures(a: AuditResult): string[] {
  const failures: string[] = [];
  if (a.lost + a.partial > 0) failures.push(`audit: ${a.lost} acknowledged pushes lost, ${a.partial} stored in part`);
  if (a.duplicated + a.duplicateAcks > 0)
    failures.push(`audit: ${a.duplicated} acknowledged pushes stored more than once, ${a.duplicateAcks} duplicate acks`);
  return failures;
}
