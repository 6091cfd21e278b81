import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { testEnv } from './env';

export interface TestDatabase extends AsyncDisposable {
  name: string;
  url: string;
  drop(): Promise<void>;
}

export function urlFor(database: string): string {
  const url = new URL(testEnv.pgUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

async function admin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: testEnv.pgUrl });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/**
 * A database of its own for one suite: a copy of the migrated template (`migrated: true`, the
 * default) or empty. Use with `await using db = await createTestDatabase()` or call `drop()`.
 */
export async function createTestDatabase({ migrated = true }: { migrated?: boolean } = {}): Promise<TestDatabase> {
  const name = `t_${randomUUID().replaceAll('-', '').slice(0, 16)}`;
  await admin((c) => c.query(`CREATE DATABASE ${name}${migrated ? ` TEMPLATE ${pg.escapeIdentifier(testEnv.templateDb)}` : ''}`));
  // A copy of the template is a clone of one database, its installation id included (migration
  // 0044): each suite's database gets an id of its own, as one migrated from nothing does.
  if (migrated) {
    const client = new pg.Client({ connectionString: urlFor(name) });
    await client.connect();
    try {
      await client.query('UPDATE installation SET id = gen_random_uuid(), created_at = now()');
    } finally {
      await client.end();
    }
  }
  const drop = () => admin((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(() => undefined);
  return { name, url: urlFor(name), drop, [Symbol.asyncDispose]: drop };
}

/** A unique prefix for BullMQ queues / Redis keys of one suite. */
export function uniquePrefix(label = 'test'): string {
  return `${label}-${randomUUID().slice(0, 8)}`;
}
