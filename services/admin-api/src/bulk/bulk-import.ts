import { randomUUID } from 'node:crypto';
import { recordIssuedTokens, withTransaction } from '@pga/db';
import type { IssuedToken } from '@pga/tokens';
import type { Deps } from '../deps';
import type { Actor } from '../audit/write-audit';
import { writeAudit } from '../audit/write-audit';
import { writeRegisteredAudits } from '../audit/write-audit-many';
import { testConnection } from '../connection-test/test-connection';
import type { BulkImportResult, BulkRowResult } from './bulk-result';
import { insertCollectors } from './insert-collectors';
import { recordKnown } from '../collectors/after-commit';
import { readRows } from './read-rows';
import { toCsvLine } from './parse-csv';
import { validateRows, type ValidRow } from './validate-rows';

export interface BulkImportOptions {
  format: 'json' | 'csv';
  content: string;
  dryRun: boolean;
  mode: 'per_row' | 'all_or_nothing';
  testConnections: boolean;
}

/** Runs the optional connection tests of the valid rows, at most CONNECTION_TEST_CONCURRENCY at once. */
async function runConnectionTests(deps: Deps, rows: ValidRow[], results: Map<number, BulkRowResult>): Promise<ValidRow[]> {
  const outcomes = await Promise.all(
    rows.map((r) =>
      deps.connectionTests.run(() =>
        testConnection({ ...r.input, port: r.port, ssl_mode: r.sslMode }, { timeoutMs: deps.config.CONNECTION_TEST_TIMEOUT_MS }),
      ),
    ),
  );
  return rows.filter((r, i) => {
    const t = outcomes[i]!;
    if (!t.supported || t.ok) return true;
    results.set(r.index, {
      row: r.index + 1,
      name: r.input.name,
      status: 'error',
      collector_id: null,
      field: 'connection',
      reason: `${t.failed_stage}: ${t.message}`,
    });
    return false;
  });
}

/**
 * An import can add a whole fleet at once, and autovacuum analyzes the table only on its next pass
 * (up to autovacuum_naptime later, and only past its change threshold). Until then collectors.list
 * is planned with the old statistics, or none on a new installation: PostgreSQL then estimates one
 * matching row (default selectivities for `deleted_at IS NULL` and `environment = $1`) and reads
 * every row through a bitmap AND of two whole indexes and sorts them, instead of walking the index
 * of the sort column (bench admin-api, 10,000 collectors: ~19 ms against ~11 ms per list under
 * load, EXPLAIN ANALYZE). ANALYZE samples a bounded number of rows and blocks no reads or writes;
 * it is best effort (a short lock_timeout if a VACUUM holds the table, a warning on failure).
 */
async function refreshCollectorStatistics(deps: Deps): Promise<void> {
  try {
    await withTransaction(deps.pool, async (db) => {
      await db.query("SET LOCAL lock_timeout = '2s'");
      await db.query('ANALYZE collectors');
    });
  } catch (err) {
    deps.logger.warn({ err }, 'bulk import committed; ANALYZE collectors failed (autovacuum will catch up)');
  }
}

/**
 * Bulk import (issue 3 §3): validate every row, optionally test connections, then — unless a dry
 * run, or all-or-nothing with any failed row — insert all valid rows, their tokens and audit rows
 * in one transaction of a handful of statements. The tokens come back once as CSV.
 */
export async function bulkImport(
  deps: Deps,
  actor: Actor & { id: string },
  options: BulkImportOptions,
): Promise<BulkImportResult> {
  const raw = readRows(options.format, options.content);
  const { valid: validated, results } = await validateRows(deps.pool, raw);
  const valid = options.testConnections ? await runConnectionTests(deps, validated, results) : validated;
  const failed = [...results.values()].some((r) => r.status === 'error');
  const abort = options.dryRun || (options.mode === 'all_or_nothing' && failed);
  let tokensCsv: string | null = null;
  let created = new Map<number, string>();
  if (!abort && valid.length > 0) {
    // Ids and tokens first, signed a few hundred at a time (HMAC runs on libuv's thread pool), so the
    // transaction below holds its locks only for the handful of multi-row statements.
    const ids = valid.map(() => randomUUID());
    const tokens: IssuedToken[] = [];
    for (let i = 0; i < ids.length; i += 256)
      tokens.push(...(await Promise.all(ids.slice(i, i + 256).map((id) => deps.tokens.issue(id)))));
    const issued = new Map<number, IssuedToken>();
    ({ created } = await withTransaction(deps.pool, async (db) => {
      const inserted = await insertCollectors(db, deps.secretBox, valid, {
        ids,
        tokenExpiry: tokens.map((t) => t.expiresAt),
        registeredBy: actor.id,
      });
      valid.forEach((r, i) => {
        if (inserted.has(r.index)) issued.set(r.index, tokens[i]!);
      });
      await recordIssuedTokens(
        db,
        [...issued].map(([index, token]) => ({ collectorId: inserted.get(index)!, token })),
        { stampCollectors: false },
      );
      await writeRegisteredAudits(db, actor, [...inserted.values()], { bulk_import: true });
      await writeAudit(db, actor, {
        action: 'collector.bulk_import',
        entityType: 'collector',
        details: {
          format: options.format,
          mode: options.mode,
          rows: raw.length,
          created: inserted.size,
          failed: [...results.values()].filter((r) => r.status === 'error').length,
        },
      });
      return { created: inserted };
    }));
    if (created.size) {
      // After the commit, and only the rows that went in (reconcile-deny-state.ts denies a known id PostgreSQL lacks).
      await recordKnown(deps, [...created.values()]);
      await deps.redis.hset(deps.keys.configVersions, Object.fromEntries([...created.values()].map((id) => [id, '1'])));
      await refreshCollectorStatistics(deps);
    }
    const lines = [toCsvLine(['name', 'collector_id', 'token', 'expires_at', 'central_api_url'])];
    for (const r of valid) {
      const token = issued.get(r.index);
      if (token)
        lines.push(
          toCsvLine([
            r.input.name,
            created.get(r.index)!,
            token.token,
            token.expiresAt.toISOString(),
            deps.config.CENTRAL_API_URL,
          ]),
        );
    }
    tokensCsv = `${lines.join('\r\n')}\r\n`;
  }
  for (const r of valid) {
    const id = created.get(r.index);
    const status = id ? 'created' : options.dryRun ? 'valid' : abort ? 'not_imported' : 'skipped';
    results.set(r.index, {
      row: r.index + 1,
      name: r.input.name,
      status,
      collector_id: id ?? null,
      field: status === 'skipped' ? 'name' : null,
      reason:
        status === 'skipped'
          ? 'duplicate: the name was taken while importing'
          : status === 'not_imported'
            ? 'not imported: another row failed (all-or-nothing)'
            : null,
    });
  }
  const rows = [...results.values()].sort((a, b) => a.row - b.row);
  return {
    dry_run: options.dryRun,
    mode: options.mode,
    committed: created.size > 0,
    total: raw.length,
    created: created.size,
    errors: rows.filter((r) => r.status === 'error').length,
    skipped: rows.filter((r) => r.status === 'skipped').length,
    rows,
    tokens_csv: tokensCsv,
  };
}
