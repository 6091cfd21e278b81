import { AppError } from '@pga/contracts';
import { parseCsv } from './parse-csv';

export const MAX_BULK_ROWS = 10_000;

/**
 * The file's rows as plain objects, before validation. JSON: an array of objects, or
 * `{"collectors": [...]}`. CSV: the header row names the fields; empty cells are absent; `tags` is
 * `;`-separated (in JSON it may also be such a string).
 */
export function readRows(format: 'json' | 'csv', content: string): Record<string, unknown>[] {
  let rows: unknown[];
  if (format === 'json') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(content);
    } catch {
      throw new AppError('VALIDATION_FAILED', 'content: not valid JSON', { field: 'content' });
    }
    const list = Array.isArray(parsed) ? parsed : (parsed as { collectors?: unknown } | null)?.collectors;
    if (!Array.isArray(list))
      throw new AppError('VALIDATION_FAILED', 'content: expected a JSON array of collectors (or {"collectors": [...]})', {
        field: 'content',
      });
    rows = list;
  } else {
    let table: string[][];
    try {
      table = parseCsv(content);
    } catch (err) {
      throw new AppError('VALIDATION_FAILED', `content: ${(err as Error).message}`, { field: 'content' });
    }
    const [header, ...body] = table;
    if (!header)
      throw new AppError('VALIDATION_FAILED', 'content: the CSV is empty (expected a header row of field names)', {
        field: 'content',
      });
    const names = header.map((h) => h.trim().toLowerCase());
    rows = body.map((cells) =>
      Object.fromEntries(names.flatMap((name, i) => (cells[i]?.trim() ? [[name, cells[i]!.trim()]] : []))),
    );
  }
  if (rows.length === 0) throw new AppError('VALIDATION_FAILED', 'content: no collectors in the file', { field: 'content' });
  if (rows.length > MAX_BULK_ROWS)
    throw new AppError(
      'VALIDATION_FAILED',
      `content: at most ${MAX_BULK_ROWS.toLocaleString('en')} collectors per import (got ${rows.length})`,
      { field: 'content' },
    );
  return rows.map((row) => {
    if (typeof row !== 'object' || row === null || Array.isArray(row)) return { __invalid: true };
    const r = row as Record<string, unknown>;
    return typeof r.tags === 'string'
      ? {
          ...r,
          tags: r.tags
            .split(';')
            .map((t) => t.trim())
            .filter(Boolean),
        }
      : r;
  });
}
