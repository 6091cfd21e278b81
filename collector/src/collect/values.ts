/** int8 / numeric text from `pg` → bigint (exact); null stays null. */
export function big(value: unknown): bigint | null {
  if (value === null || value === undefined) return null;
  return BigInt(value as string | number);
}

/** float / numeric from `pg` → number; null stays null. */
export function num(value: unknown): number | null {
  if (value === null || value === undefined) return null;
  return Number(value);
}

/** int4-sized value → number (0 for null), for counts that never leave 2^31. */
export function int(value: unknown): number {
  return value === null || value === undefined ? 0 : Number(value);
}

/** ISO timestamp text of a timestamptz (Date from `pg`), or null. */
export function iso(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  return value instanceof Date ? value.toISOString() : String(value);
}
