import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect, it, vi } from 'vitest';
import { findExecutable, POSTGRES_BIN_DIRS } from '@pga/local-stack';
import { createLogger } from '@pga/logger';
import { adoptInstallation, createAdminService, readAdminConfig, readInstallationId, type AdminService } from '@pga/admin-api';
import { reconcileDenyState } from '../../services/admin-api/src/collectors/reconcile-deny-state';
import { call, spawnEdge } from '../edge/harness';
import { createTestDatabase, testEnv } from '../helpers';
import { createHarness, edgeEnvOf, type Harness } from './harness';
import { form } from './fixtures';

const ANOTHER_INSTALLATION = 'Redis belongs to another installation than PostgreSQL';
const NONE_HELD = 'Redis holds no installation id';
const REGISTERED_AFTER = 'registered after the backup PostgreSQL was restored from';
const root = path.resolve(import.meta.dirname, '../..');

const errorsSaying = (error: { mock: { calls: unknown[][] } }, text: string) =>
  error.mock.calls.filter((c) => String(c[1]).includes(text)).map((c) => c[0] as Record<string, unknown>);

/** Another admin service of `h`'s installation (same Redis, prefix and secrets) on `databaseUrl`. */
function adminServiceOn(h: Harness, databaseUrl: string): AdminService & AsyncDisposable {
  const c = h.service.deps.config;
  const service = createAdminService({
    config: readAdminConfig({
      DATABASE_URL: databaseUrl,
      REDIS_URL: c.REDIS_URL,
      REDIS_KEY_PREFIX: c.REDIS_KEY_PREFIX,
      JWT_SECRET: c.JWT_SECRET,
      ENCRYPTION_KEY: c.ENCRYPTION_KEY,
      ADMIN_PORT: '0',
      ADMIN_HOST: '127.0.0.1',
      CENTRAL_API_URL: 'http://127.0.0.1:18080',
      LOG_LEVEL: 'silent',
    }),
    logger: createLogger({ name: 'admin-test', level: 'silent', pretty: false }),
  });
  return Object.assign(service, { [Symbol.asyncDispose]: () => service.close() });
}

function postgresTool(name: string, args: string[]): void {
  const bin = findExecutable(name, POSTGRES_BIN_DIRS);
  if (!bin) throw new Error(`${name} not found`);
  const res = spawnSync(bin, args, { encoding: 'utf8', timeout: 60_000 });
  if (res.status !== 0) throw new Error(`${name} failed: ${res.stderr}`);
}

/**
 * The reviewer's scenario: an admin service started on a wrong DATABASE_URL (an empty database of its
 * own) with the installation's REDIS_KEY_PREFIX. The guard "PostgreSQL holds none of the ids Redis
 * knows" held only until one collector was registered there: its next repair refused the whole real
 * fleet as deleted, and the right admin service did not lift it (each collector had to be enabled by
 * hand). Now the databases' installation ids differ: the wrong one's repair denies nothing and says so.
 */
it(
  'an admin service on another (empty) database on the same prefix: a collector registered there does not have the real fleet refused',
  { timeout: 120_000 },
  async () => {
    await using right = await createHarness();
    const { redis, keys, pool } = right.service.deps;
    const fleet = [];
    for (let i = 0; i < 3; i++) fleet.push(await right.caller(right.admin).collectors.register(form()));
    // The right admin service's repair (at its start) copied its database's id into Redis.
    expect(await reconcileDenyState(right.service.deps)).toBe(0);
    const ours = await readInstallationId(pool);
    expect(ours).toMatch(/^[0-9a-f-]{36}$/);
    expect(await redis.get(keys.installation)).toBe(ours);

    // The same Redis prefix and secrets, another (empty, freshly migrated) database: a wrong DATABASE_URL.
    await using wrong = await createHarness({
      REDIS_KEY_PREFIX: right.service.deps.config.REDIS_KEY_PREFIX,
      JWT_SECRET: right.service.deps.config.JWT_SECRET,
      ENCRYPTION_KEY: right.service.deps.config.ENCRYPTION_KEY,
    });
    expect(await readInstallationId(wrong.service.deps.pool)).not.toBe(ours);
    const error = vi.spyOn(wrong.service.deps.logger, 'error');
    expect(await reconcileDenyState(wrong.service.deps)).toBe(0);
    // Someone registers a collector there (the UI looks empty); the service restarts / Redis reconnects.
    const stray = (await wrong.caller(wrong.admin).collectors.register(form())).collector.id;
    expect(await reconcileDenyState(wrong.service.deps)).toBe(0);
    const said = errorsSaying(error, ANOTHER_INSTALLATION);
    expect(said.length).toBeGreaterThanOrEqual(2);
    expect(said.at(-1)).toMatchObject({ installation_in_redis: ours });
    expect(errorsSaying(error, REGISTERED_AFTER)).toHaveLength(0);
    for (const f of fleet) expect(await redis.sismember(keys.deniedCollectors, f.collector.id)).toBe(0);
    expect(await redis.get(keys.installation)).toBe(ours); // never taken over

    // The right admin service's repair: the stray registration is none of this installation's
    // (no row here): refused as deleted; the fleet is not.
    expect(await reconcileDenyState(right.service.deps)).toBe(1);
    expect(await redis.sismember(keys.deletedCollectors, stray)).toBe(1);
    for (const f of fleet) {
      expect(await redis.sismember(keys.deniedCollectors, f.collector.id)).toBe(0);
      expect(await redis.sismember(keys.deletedCollectors, f.collector.id)).toBe(0);
    }
    // An edge of the installation admits the whole fleet.
    await using edge = await spawnEdge(edgeEnvOf(right, testEnv.redisUrl));
    for (const f of fleet)
      expect(
        (
          await call(`${edge.url}/api/v1/metrics/push`, {
            token: f.token,
            body: JSON.stringify({ metrics: [{ type: 'installation_probe', n: 1 }] }),
          })
        ).status,
      ).toBe(200);
  },
);

/**
 * PostgreSQL restored (pg_dump / pg_restore into a new database, the admin service pointed at it)
 * from this installation's dump: the installation id comes with the dump, so the repair works as
 * before — the collector registered after the dump is refused as deleted, the one before is not.
 */
it(
  "PostgreSQL restored from this installation's dump keeps its id: a collector registered after the dump is refused, one before is not",
  { timeout: 120_000 },
  async () => {
    await using h = await createHarness();
    const { redis, keys } = h.service.deps;
    const before = (await h.caller(h.admin).collectors.register(form())).collector.id;
    expect(await reconcileDenyState(h.service.deps)).toBe(0);
    const dir = mkdtempSync(path.join(tmpdir(), 'pga-dump-'));
    try {
      const dump = path.join(dir, 'backup.dump');
      postgresTool('pg_dump', ['-Fc', '-f', dump, '-d', h.db.url]);
      const after = (await h.caller(h.admin).collectors.register(form())).collector.id;

      await using restored = await createTestDatabase({ migrated: false });
      postgresTool('pg_restore', ['--no-owner', '-d', restored.url, dump]);
      await using admin = adminServiceOn(h, restored.url);
      expect(await readInstallationId(admin.deps.pool)).toBe(await redis.get(keys.installation));
      const error = vi.spyOn(admin.deps.logger, 'error');
      // Its repair at start, or this one: the collector registered after the dump is refused as deleted.
      await reconcileDenyState(admin.deps);
      expect(await redis.sismember(keys.deniedCollectors, after)).toBe(1);
      expect(await redis.sismember(keys.deletedCollectors, after)).toBe(1);
      expect(await redis.sismember(keys.deniedCollectors, before)).toBe(0);
      expect(errorsSaying(error, ANOTHER_INSTALLATION)).toHaveLength(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

/**
 * An upgrade: Redis has no installation id yet (its known set may hold the fleet). The repair adopts
 * PostgreSQL's when PostgreSQL holds one of the collectors Redis knows from before its installation
 * row (the upgrade that created it), and goes on as for a restore; a wrong database, whose row is
 * older than every collector in it, is not adopted even once a collector is registered there.
 */
it('upgrade: Redis without an installation id adopts PostgreSQL’s; a wrong database is not adopted, even with a collector registered there', async () => {
  await using h = await createHarness();
  const { redis, keys, pool } = h.service.deps;
  const fleet = [];
  for (let i = 0; i < 2; i++) fleet.push((await h.caller(h.admin).collectors.register(form())).collector.id);
  // As before the upgrade: Redis holds no id, and migration 0044 runs after the fleet registered.
  await reconcileDenyState(h.service.deps);
  await redis.del(keys.installation);
  await pool.query('UPDATE installation SET created_at = clock_timestamp()');

  // The first admin service up after the upgrade is on a wrong (empty) database, on the same prefix.
  await using wrong = await createHarness({ REDIS_KEY_PREFIX: h.service.deps.config.REDIS_KEY_PREFIX });
  const wrongError = vi.spyOn(wrong.service.deps.logger, 'error');
  await wrong.caller(wrong.admin).collectors.register(form());
  await redis.del(keys.installation); // whatever its start may have done (nothing: the fleet is known)
  expect(await reconcileDenyState(wrong.service.deps)).toBe(0);
  expect(await redis.get(keys.installation)).toBeNull();
  expect(errorsSaying(wrongError, NONE_HELD).length).toBeGreaterThanOrEqual(1);
  for (const id of fleet) expect(await redis.sismember(keys.deniedCollectors, id)).toBe(0);

  // The installation's own admin service adopts its database's id, and a restore works as before.
  const backupAt = (await pool.query<{ t: Date }>('SELECT clock_timestamp() AS t')).rows[0]!.t;
  const late = (await h.caller(h.admin).collectors.register(form())).collector.id;
  await pool.query('DELETE FROM collectors WHERE id = $1', [late]);
  await pool.query('DELETE FROM collector_audit_log WHERE created_at > $1', [backupAt]);
  const error = vi.spyOn(h.service.deps.logger, 'error');
  // The wrong database's collector and `late`: neither has a row here.
  expect(await reconcileDenyState(h.service.deps)).toBe(2);
  expect(await redis.get(keys.installation)).toBe(await readInstallationId(pool));
  expect(await redis.sismember(keys.deletedCollectors, late)).toBe(1);
  for (const id of fleet) expect(await redis.sismember(keys.deniedCollectors, id)).toBe(0);
  expect(errorsSaying(error, REGISTERED_AFTER)).toHaveLength(1);

  // From now on the wrong one is told apart by its id.
  wrongError.mockClear();
  expect(await reconcileDenyState(wrong.service.deps)).toBe(0);
  expect(errorsSaying(wrongError, ANOTHER_INSTALLATION).length).toBeGreaterThanOrEqual(1);
});

/**
 * A database rebuilt from nothing for this installation has another id: the repair does nothing but
 * log an error until the operator adopts it with the one documented command; from then on every
 * collector Redis knows and it lacks is refused as deleted.
 */
it(
  'a database rebuilt from nothing: nothing denied until `npm run adopt-installation`, then what it lacks is refused',
  { timeout: 60_000 },
  async () => {
    await using h = await createHarness();
    const { redis, keys } = h.service.deps;
    const fleet = [];
    for (let i = 0; i < 2; i++) fleet.push((await h.caller(h.admin).collectors.register(form())).collector.id);
    expect(await reconcileDenyState(h.service.deps)).toBe(0);
    const old = await redis.get(keys.installation);

    await using rebuilt = await createTestDatabase();
    await using admin = adminServiceOn(h, rebuilt.url);
    const error = vi.spyOn(admin.deps.logger, 'error');
    expect(await reconcileDenyState(admin.deps)).toBe(0);
    expect(errorsSaying(error, ANOTHER_INSTALLATION).length).toBeGreaterThanOrEqual(1);
    expect(String(error.mock.calls.at(-1)![1])).toContain('npm run adopt-installation');
    for (const id of fleet) expect(await redis.sismember(keys.deniedCollectors, id)).toBe(0);

    const adopt = spawnSync(path.join(root, 'node_modules/.bin/tsx'), [path.join(root, 'scripts/adopt-installation.ts')], {
      env: {
        PATH: process.env.PATH,
        DATABASE_URL: rebuilt.url,
        REDIS_URL: h.service.deps.config.REDIS_URL,
        REDIS_KEY_PREFIX: h.service.deps.config.REDIS_KEY_PREFIX,
      },
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(adopt.stderr).toBe('');
    expect(adopt.status).toBe(0);
    const id = await readInstallationId(admin.deps.pool);
    expect(adopt.stdout).toContain(`${old} -> ${id}`);
    expect(adopt.stdout).toContain('2 collector(s)');
    expect(await redis.get(keys.installation)).toBe(id);

    // The service's own repair (its 'ready' run, or one retried every 2 s after a failure) may take
    // some of them at the same moment (it did once in a loaded CI run: this call counted 1): what
    // must hold is that both are refused as deleted after it, and that nothing is left to repair.
    const repaired = await reconcileDenyState(admin.deps);
    expect(repaired).toBeGreaterThanOrEqual(0);
    expect(repaired).toBeLessThanOrEqual(2);
    for (const c of fleet) expect(await redis.sismember(keys.deletedCollectors, c)).toBe(1);
    for (const c of fleet) expect(await redis.sismember(keys.deniedCollectors, c)).toBe(1);
    expect(await reconcileDenyState(admin.deps)).toBe(0);
  },
);

it('npm run adopt-installation -- --help prints its usage without an environment; an unknown option exits 2', () => {
  const run = (args: string[]) =>
    spawnSync(path.join(root, 'node_modules/.bin/tsx'), [path.join(root, 'scripts/adopt-installation.ts'), ...args], {
      env: { PATH: process.env.PATH },
      encoding: 'utf8',
      timeout: 30_000,
    });
  const help = run(['--help']);
  expect(help.status).toBe(0);
  expect(help.stdout).toMatch(/^npm run adopt-installation/);
  for (const name of ['DATABASE_URL', 'REDIS_URL', 'REDIS_KEY_PREFIX']) expect(help.stdout).toContain(name);
  const bogus = run(['--bogus']);
  expect(bogus.status).toBe(2);
  expect(bogus.stderr).toMatch(/^adopt-installation: Unknown option '--bogus'/);
});

it('an installation table left empty (a partial restore): the repair does nothing; adopting creates the row and adopts it', async () => {
  await using h = await createHarness();
  const { redis, keys, pool } = h.service.deps;
  await h.caller(h.admin).collectors.register(form());
  expect(await reconcileDenyState(h.service.deps)).toBe(0);
  await pool.query('DELETE FROM installation');
  await redis.del(keys.installation);
  const error = vi.spyOn(h.service.deps.logger, 'error');
  expect(await reconcileDenyState(h.service.deps)).toBe(0);
  expect(error.mock.calls.some((c) => /installation/i.test(String(c[1])))).toBe(true);
  expect(await redis.get(keys.installation)).toBeNull();
  // Migration 0044 is recorded as applied and will not run again: adopting creates the row.
  const adopted = await adoptInstallation(pool, redis, keys);
  expect(adopted.id).toBe(await readInstallationId(pool));
  expect(adopted.id).toMatch(/^[0-9a-f-]{36}$/);
  expect(await redis.get(keys.installation)).toBe(adopted.id);
  expect(adopted.lacking).toBe(0);
});
