/**
 * PostgreSQL array literals for the batch statements' `unnest($n::type[])` parameters, built in one
 * join. node-postgres would serialise a JS array element by element (a type check, two regex
 * replaces and quotes per element): with five arrays per push in the ledger insert and five per
 * collector in the state update, that was ~4 % of the writer's CPU.
 */

/**
 * For values that need no quoting in an array literal: uuids, ISO-8601 times, hex digests, finite
 * numbers (none contains `{`, `}`, `,`, `"`, `\`, whitespace, or is the word NULL). `null` → NULL.
 */
export function plainArray(values: readonly (string | number | null)[]): string {
  return `{${values.map((v) => (v === null ? 'NULL' : v)).join(',')}}`;
}

const NEEDS_ESCAPE = /["\\]/g;

/** For arbitrary text: every element double-quoted, `"` and `\` escaped. */
export function textArray(values: readonly string[]): string {
  return `{${values.map((v) => `"${v.replace(NEEDS_ESCAPE, '\\$&')}"`).join(',')}}`;
}
