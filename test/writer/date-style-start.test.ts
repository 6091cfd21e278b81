import { describe, expect, it } from 'vitest';
import { createPool } from '@pga/db';
import { createLogger } from '@pga/logger';
import { createWriter, readWriterConfig } from '@pga/writer';
import { createTestDatabase, optionsDroppingProxy, uniquePrefix } from '../helpers';
import { writerEnv } from './helpers';

/**
 * Review 30 item 6: behind a pooler that drops our `options=-c DateStyle=ISO` (PgBouncer with
 * `options` in `ignore_startup_parameters`), a role whose DateStyle is not ISO made every time the
 * writer read back null. It refuses to start, with or without WRITER_MIGRATE.
 */
describe('writer start behind a pooler that drops the DateStyle=ISO option', () => {
  it('refuses to start, saying what it found and what to set', async () => {
    await using db = await createTestDatabase();
    const admin = createPool(db.url, { max: 1 });
    try {
      await admin.query(`ALTER ROLE CURRENT_USER IN DATABASE ${db.name} SET DateStyle = 'Postgres, DMY'`);
    } finally {
      await admin.end();
    }
    const proxy = await optionsDroppingProxy(new URL(db.url));
    try {
      for (const migrate of ['false', 'true']) {
        const env = await writerEnv(proxy.url(db.url), uniquePrefix('writer-datestyle'), { WRITER_MIGRATE: migrate });
        const writer = createWriter({
          config: readWriterConfig(env),
          logger: createLogger({ name: 'writer-test', level: 'silent', pretty: false }),
        });
        try {
          await expect(writer.start(), `WRITER_MIGRATE=${migrate}`).rejects.toThrow(
            /DateStyle on this service's connections is "Postgres, DMY", not ISO.*ALTER ROLE <user> SET DateStyle = 'ISO, MDY'/,
          );
        } finally {
          await writer.stop();
        }
      }
    } finally {
      await proxy.close();
    }
  });
});
