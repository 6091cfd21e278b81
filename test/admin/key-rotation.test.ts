import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { createSecretBox } from '@pga/crypto';
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

  it('rotates away from a single key written without an id: it is k1, and k2:<new>,k1:<old> reads what it stored', () => {
    const oldKey = randomBytes(32).toString('base64');
    const newKey = randomBytes(32).toString('base64');
    const stored = createSecretBox(oldKey).encrypt('stored-under-plain-key', 'collector-1');
    expect(stored).toMatch(/^v1\.k1\./);
    const rotated = createSecretBox(`k2:${newKey},k1:${oldKey}`);
    expect(rotated.decrypt(stored, 'collector-1')).toBe('stored-under-plain-key');
    expect(rotated.encrypt('new', 'collector-1')).toMatch(/^v1\.k2\./);
  });

  it('refuses a list with a key without an id, or one id twice, showing the rotation form (either used to break every stored secret)', () => {
    const [k1, k2] = [randomBytes(32).toString('base64'), randomBytes(32).toString('base64')];
    const rotationForm =
      'ENCRYPTION_KEY: give every key an id when listing several, e.g. k2:<new key>,k1:<old key> (a single key without an id is k1)';
    // `new:K2,K1` named the old key "k2"; `K2,K1` named the new key "k1"; `k2:K2,K1` had two keys "k2"
    for (const spec of [`new:${k2},${k1}`, `${k2},${k1}`, `k2:${k2},${k1}`, `${k2},k1:${k1}`])
      expect(() => createSecretBox(spec)).toThrow(rotationForm);
    expect(() => createSecretBox(`k1:${k2},k1:${k1}`)).toThrow(
      'ENCRYPTION_KEY: key id "k1" is given twice: give every key an id of its own, e.g. k2:<new key>,k1:<old key> (a single key without an id is k1)',
    );
    // What such a list stored stays readable under the form the refusal shows: `K2,K1` named K2 "k1"
    // and K1 "k2" (by position); each key is tried, the tag tells the right one.
    const positional = createSecretBox(`k1:${k2},k2:${k1}`); // how `K2,K1` was read
    const storedThen = positional.encrypt('saved-under-K2,K1', 'collector-9');
    expect(storedThen).toMatch(/^v1\.k1\./);
    expect(createSecretBox(`k2:${k2},k1:${k1}`).decrypt(storedThen, 'collector-9')).toBe('saved-under-K2,K1');
    // … and nothing else: another collector's associated data, or no right key, still fails.
    expect(() => createSecretBox(`k2:${k2},k1:${k1}`).decrypt(storedThen, 'collector-8')).toThrow();
    expect(() => createSecretBox(`k1:${randomBytes(32).toString('base64')}`).decrypt(storedThen, 'collector-9')).toThrow();
    // the forms README.md shows
    expect(createSecretBox(k1).activeKeyId).toBe('k1');
    expect(createSecretBox(`k1:${k1}`).activeKeyId).toBe('k1');
    expect(createSecretBox(`k2:${k2}, k1:${k1}`).activeKeyId).toBe('k2');
  });
});
