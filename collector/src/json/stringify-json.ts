/**
 * JSON.stringify that writes `bigint` values as plain JSON integers, digit for digit.
 *
 * PostgreSQL int8 columns (a `pg_stat_statements` queryid is often negative and beyond 2^53) arrive
 * from `pg` as text; the collector turns them into `bigint` and this writer emits them unrounded,
 * which `JSON.stringify` cannot (it throws on bigint) and `Number` would not (it rounds).
 * Otherwise it behaves like JSON.stringify without indentation: `undefined` members are skipped,
 * non-finite numbers become null, Dates become ISO strings.
 */
export function stringifyJson(value: unknown): string {
  return write(value) ?? 'null';
}

function write(value: unknown): string | undefined {
  switch (typeof value) {
    case 'bigint':
      return value.toString();
    case 'number':
      return Number.isFinite(value) ? JSON.stringify(value) : 'null';
    case 'string':
    case 'boolean':
      return JSON.stringify(value);
    case 'undefined':
    case 'function':
    case 'symbol':
      return undefined;
  }
  if (value === null) return 'null';
  if (value instanceof Date) return JSON.stringify(value.toISOString());
  if (Array.isArray(value)) return `[${value.map((v) => write(v) ?? 'null').join(',')}]`;
  const parts: string[] = [];
  for (const [key, member] of Object.entries(value as Record<string, unknown>)) {
    const text = write(member);
    if (text !== undefined) parts.push(`${JSON.stringify(key)}:${text}`);
  }
  return `{${parts.join(',')}}`;
}
