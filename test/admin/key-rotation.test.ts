import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { createLogger } from '@pga/logger';
import { createAdminService, createCallerFactory, appRouter, readAdminConfig } from '@pga/admin-api';
import { testEnv } from '../helpers';
import { createHarness } from './harness';
import { form } from './fixtures';

describe('ENCRYPTION_KEY rotation', () => {
  it('keeps decrypting old ciphertexts with a retired key and encrypts new ones with the active key', async () => {
    const oldKey = randomBytes(32).toString('base64');
    await using h = await createHarness({ ENCRYPTION_KEY: `old:${oldKey}` });
    // a collector whose stored password is the test cluster's (trust auth accepts any password)
    const target = {
      type: 'postgresql',
      host: '127.0.0.1',
      port: testEnv.pgPort,
      database: 'postgres',
      username: 'postgres',
      ssl_mode: 'disable',
      password: 'stored-under-old-key',
    };
    const { collector } = await h.caller(h.admin).collectors.register(form({ ...target, group: undefined }));
    const stored = async () =>
      (await h.service.deps.pool.query('SELECT password_encrypted FROM collectors WHERE id = $1', [collector.id])).rows[0]
        .password_encrypted as string;
    expect(await stored()).toMatch(/^v1\.old\./);

    // the operator adds a new active key in front and keeps the old one for decryption
    const c = h.service.deps.config;
    const config = readAdminConfig({
      DATABASE_URL: c.DATABASE_URL,
      REDIS_URL: c.REDIS_URL,
      REDIS_KEY_PREFIX: c.REDIS_KEY_PREFIX,
      JWT_SECRET: c.JWT_SECRET,
      LOG_LEVEL: 'silent',
      ENCRYPTION_KEY: `new:${randomBytes(32).toString('base64')},old:${oldKey}`,
    });
    const rotated = createAdminService({ config, logger: createLogger({ name: 'rotated', level: 'silent', pretty: false }) });
    try {
      const caller = createCallerFactory(appRouter)({
        deps: rotated.deps,
        user: h.admin,
        sessionHash: null,
        ip: null,
        userAgent: null,
        secureCookies: false,
        setCookie: () => undefined,
      });
      expect(await caller.collectors.testConnection({ collector_id: collector.id })).toMatchObject({ ok: true });
      await caller.collectors.update({ id: collector.id, password: 'stored-under-new-key' });
      expect(await stored()).toMatch(/^v1\.new\./);
      expect(rotated.deps.secretBox.decrypt(await stored(), collector.id)).toBe('stored-under-new-key');
      // the service still running with only the old key cannot read it: it says so instead of guessing
      await expect(h.caller(h.admin).collectors.testConnection({ collector_id: collector.id })).rejects.toMatchObject({
        code: 'INTERNAL_SERVER_ERROR',
      });
    } finally {
      await rotated.close();
    }
  });
});
