import type { Pool } from '@pga/db';
import { DEFAULT_PORTS, RegisterCollectorInputSchema, type RegisterCollectorInput } from '../collectors/field-schemas';
import { findUnstorableInput } from '../db/unstorable-input';
import type { BulkRowResult } from './bulk-result';

export interface ValidRow {
  index: number;
  input: RegisterCollectorInput;
  port: number;
  sslMode: string;
  groupId: string | null;
}

const error = (index: number, name: unknown, field: string | null, reason: string): BulkRowResult => ({
  row: index + 1,
  name: typeof name === 'string' ? name : null,
  status: 'error',
  collector_id: null,
  field,
  reason,
});

/**
 * Validates every row with the same rules as `register`, resolves group names in one query, and
 * finds duplicates — within the file and against existing collectors — in one more. Returns the
 * rows to import and a result for each row that will not be.
 */
export async function validateRows(
  pool: Pool,
  raw: Record<string, unknown>[],
): Promise<{ valid: ValidRow[]; results: Map<number, BulkRowResult> }> {
  const results = new Map<number, BulkRowResult>();
  const parsed: { index: number; input: RegisterCollectorInput }[] = [];
  raw.forEach((row, index) => {
    if ('__invalid' in row) return results.set(index, error(index, null, null, 'expected an object with the collector fields'));
    // The rule every procedure's input gets (trpc/init.ts): a JSON file's `\ud800` escape reaches here.
    const unstorable = findUnstorableInput(row);
    if (unstorable) return results.set(index, error(index, row.name, unstorable.field ?? null, unstorable.message));
    const result = RegisterCollectorInputSchema.safeParse(row);
    if (!result.success) {
      const issue = result.error.issues[0]!;
      const field = issue.path.map(String).join('.') || null;
      results.set(index, error(index, row.name, field, field ? `${field}: ${issue.message}` : issue.message));
    } else parsed.push({ index, input: result.data });
  });

  const groupNames = [...new Set(parsed.flatMap((p) => (p.input.group ? [p.input.group] : [])))];
  const groupIds = [...new Set(parsed.flatMap((p) => (p.input.group_id ? [p.input.group_id] : [])))];
  const names = parsed.map((p) => p.input.name);
  const [groups, existing] = await Promise.all([
    pool.query<{ id: string; name: string }>(
      'SELECT id, name FROM collector_groups WHERE name = ANY($1) OR id = ANY($2::uuid[])',
      [groupNames, groupIds],
    ),
    pool.query<{ name: string }>('SELECT name FROM collectors WHERE deleted_at IS NULL AND name = ANY($1)', [names]),
  ]);
  const byName = new Map(groups.rows.map((g) => [g.name, g.id]));
  const byId = new Set(groups.rows.map((g) => g.id));
  const taken = new Set(existing.rows.map((r) => r.name));
  const firstRow = new Map<string, number>();
  const valid: ValidRow[] = [];
  for (const { index, input } of parsed) {
    let groupId: string | null = null;
    if (input.group_id) {
      if (!byId.has(input.group_id)) {
        results.set(index, error(index, input.name, 'group_id', 'group_id: no such group'));
        continue;
      }
      groupId = input.group_id;
    } else if (input.group) {
      groupId = byName.get(input.group) ?? null;
      if (!groupId) {
        results.set(index, error(index, input.name, 'group', `group: no group named "${input.group}"`));
        continue;
      }
    }
    const skip = (reason: string) =>
      results.set(index, { row: index + 1, name: input.name, status: 'skipped', collector_id: null, field: 'name', reason });
    if (taken.has(input.name)) {
      skip('duplicate: a collector with this name already exists');
      continue;
    }
    const earlier = firstRow.get(input.name);
    if (earlier !== undefined) {
      skip(`duplicate: the same name is on row ${earlier + 1}`);
      continue;
    }
    firstRow.set(input.name, index);
    valid.push({ index, input, port: input.port ?? DEFAULT_PORTS[input.type], sslMode: input.ssl_mode ?? 'prefer', groupId });
  }
  return { valid, results };
}
