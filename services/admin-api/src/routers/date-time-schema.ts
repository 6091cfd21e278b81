import { z } from 'zod';

/** The parts of a date-time PostgreSQL is stricter about than z.iso.datetime (checked after it). */
const PARTS = /^(\d{4})-.*T\d\d:\d\d:\d\d(?:\.(\d+))?(?:Z|[+-](\d\d):\d\d)$/;

/**
 * An ISO-8601 date-time with `Z` or an offset that PostgreSQL's timestamptz accepts. zod's format
 * also takes year 0000 (PostgreSQL has none: "date/time field value out of range"), offsets up to
 * ±23:59 (PostgreSQL: ±15:59, "time zone displacement out of range") and any number of fractional
 * digits (PostgreSQL refuses a long one): each was a 500.
 */
export const DateTimeSchema = z.iso
  .datetime({ offset: true, message: 'expected an ISO-8601 date-time such as 2030-01-31T12:00:00Z' })
  .superRefine((value, ctx) => {
    const parts = PARTS.exec(value);
    if (!parts) return; // not the format: zod's issue says so
    const [, year, fraction, offsetHours] = parts;
    if (year === '0000') ctx.addIssue({ code: 'custom', message: 'expected a year from 0001 to 9999' });
    if (offsetHours && Number(offsetHours) > 15)
      ctx.addIssue({ code: 'custom', message: 'expected a time zone offset from -15:59 to +15:59' });
    if (fraction && fraction.length > 9)
      ctx.addIssue({ code: 'custom', message: 'expected at most 9 digits of fractional seconds' });
  });
