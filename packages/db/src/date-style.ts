import type { Pool, PoolClient } from './pool';
import { SESSION_OPTIONS } from './pool';

/**
 * At start-up (migrateDatabase: the admin service, the writer, `npm start`, `npm run migrate`; the
 * edge's and the admin's checkTokenKeyIdsAtStart; the writer without WRITER_MIGRATE): the DateStyle
 * the server speaks on our connections. Every connection asks for ISO (SESSION_OPTIONS, the libpq
 * `options` startup parameter), and node-postgres reads dates and times only in ISO: under another
 * DateStyle every timestamptz reads back as null, with no error. A pooler can drop the parameter
 * silently (PgBouncer with `options` in `ignore_startup_parameters`, what a PgBouncer before 1.20
 * needs to accept the connection at all, and 1.20 or later to accept the edge's statement timeout); then the server's, database's or role's DateStyle
 * applies. Returns the one line to refuse the start with — what was found, and what to set — or
 * undefined when it begins with ISO. A failed query rejects: the caller decides.
 */
export async function dateStyleRefusal(db: Pool | PoolClient): Promise<string | undefined> {
  const { rows } = await db.query<{ DateStyle: string }>('SHOW DateStyle');
  const found = rows[0]?.DateStyle ?? '';
  if (/^\s*ISO\b/i.test(found)) return undefined;
  return (
    `PostgreSQL's DateStyle on this service's connections is "${found}", not ISO: every date and time read back would be null. ` +
    `Not starting: the "${SESSION_OPTIONS}" each connection sends (the options startup parameter) did not reach the server ` +
    '(a pooler dropped it: PgBouncer with options in ignore_startup_parameters). Set DateStyle to ISO on the server, database or role ' +
    "(ALTER ROLE <user> SET DateStyle = 'ISO, MDY'; RDS: the parameter group's DateStyle, whose default is ISO, MDY): " +
    'behind a pooler that drops options, the server must speak ISO itself'
  );
}
