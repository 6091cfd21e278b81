/**
 * Preloaded into a service started by a test (`node --import tsx --import <this file>`): every
 * `SHOW DateStyle` any pg client of the process sends appends one line to COUNT_DATE_STYLE_FILE,
 * so the test reads how many times a start asked PostgreSQL for it.
 */
import { appendFileSync } from 'node:fs';
import pg from 'pg';

const file = process.env.COUNT_DATE_STYLE_FILE;
if (file) {
  const query = pg.Client.prototype.query as (...args: unknown[]) => unknown;
  pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
    const text = typeof args[0] === 'string' ? args[0] : (args[0] as { text?: unknown } | undefined)?.text;
    if (typeof text === 'string' && /^\s*SHOW\s+DateStyle\b/i.test(text)) appendFileSync(file, `${text}\n`);
    return query.apply(this, args);
  } as typeof pg.Client.prototype.query;
}
