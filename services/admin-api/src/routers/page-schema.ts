import { z } from 'zod';

/**
 * The highest page a list serves. Unbounded, `(page - 1) * page_size` left the integers Redis takes
 * (deadLetters.list, page 2^53 - 1: "value is not an integer or out of range", a 500); a million
 * pages of 500 is far past any list here.
 */
export const MAX_PAGE = 1_000_000;

const count = (min: number, max: number) =>
  z.number().int('expected a whole number').min(min, `must be at least ${min}`).max(max, `must be at most ${max}`);

/** `page` (1-based) and `page_size` (50 by default, at most `maxPageSize`) of every paginated list. */
export const pageFields = (maxPageSize: number) => ({
  page: count(1, MAX_PAGE).default(1),
  page_size: count(1, maxPageSize).default(50),
});

/** A page of a list's items, with the total over all pages. */
export const pageOf = <T extends z.ZodType>(item: T) =>
  z.object({ items: z.array(item), total: z.number().int(), page: z.number().int(), page_size: z.number().int() });
