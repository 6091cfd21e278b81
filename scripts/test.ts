/**
 * `npm test`: format check, lint, type-check, then unit + integration + browser tests (vitest)
 * against a throw-away PostgreSQL and Redis on free loopback ports, stopped afterwards (also on
 * failure). Ends with one line `N passed, N failed` adding up every check and test.
 *
 *   npm test                      everything
 *   npm test -- test/foundation   only test files matching the filter (checks are skipped)
 *   npm test -- test/writer -t heartbeat   and only tests named so (`-t`'s value is no file filter)
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { migrateDatabase } from '@pga/db';
import {
  startPostgres,
  startRedis,
  startTogether,
  startOnFreePort,
  type PostgresHandle,
  type RedisHandle,
} from '@pga/local-stack';
import { ensureDatabase } from './lib/setup';
import { countVitestResults, type VitestResults } from './lib/vitest-results';

const root = path.resolve(import.meta.dirname, '..');
const filters = process.argv.slice(2);
const bin = (name: string) => path.join(root, 'node_modules/.bin', name);

function run(label: string, command: string, args: string[], env: Record<string, string> = {}): Promise<boolean> {
  console.log(`\n▶ ${label}`);
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } });
    child.on('exit', (code) => resolve(code === 0));
  });
}

let passed = 0;
let failed = 0;
const failures: string[] = [];
const count = (label: string, ok: boolean) => {
  if (ok) passed++;
  else {
    failed++;
    failures.push(label);
  }
};

if (filters.length === 0) {
  count(
    'format (prettier --check)',
    await run('format (prettier --check)', bin('prettier'), ['--check', '--log-level', 'warn', '.']),
  );
  count('lint (eslint)', await run('lint (eslint)', bin('eslint'), ['.', '--max-warnings=0']));
  count(
    'typecheck (tsc via turbo)',
    await run('typecheck (tsc via turbo)', bin('turbo'), ['run', 'typecheck', '--output-logs=errors-only', '--concurrency=2']),
  );
  // The workspaces' own typecheck does not cover test/, scripts/ and vitest.config.ts (`npm run typecheck` does both).
  count('typecheck (tests and scripts)', await run('typecheck (tests and scripts)', bin('tsc'), ['--noEmit', '-p', '.']));
  if (existsSync(path.join(root, 'web/index.html'))) {
    count('web build (vite)', await run('web build (vite)', 'npm', ['run', 'build', '-w', '@pga/web']));
  }
}

const workDir = path.join(root, '.data', `test-${process.pid}`);
mkdirSync(workDir, { recursive: true });
let pg: PostgresHandle | undefined;
let redis: RedisHandle | undefined;
let cleaning: Promise<void> | undefined;
// Once: a terminal's Ctrl-C and bootstrap.mjs's relay of it are two signals.
const cleanup = () =>
  (cleaning ??= (async () => {
    await redis?.stop().catch(() => undefined);
    await pg?.stop().catch(() => undefined);
    rmSync(workDir, { recursive: true, force: true });
  })());
process.on('SIGINT', () => void cleanup().then(() => process.exit(130)));
process.on('SIGTERM', () => void cleanup().then(() => process.exit(143)));

try {
  console.log('\n▶ starting test PostgreSQL and Redis');
  // Both or neither: a Redis that fails to start stops the PostgreSQL that did.
  [pg, redis] = (await startTogether<PostgresHandle | RedisHandle>([
    startOnFreePort((port) => startPostgres({ dataDir: path.join(workDir, 'postgres'), port, ephemeral: true })),
    startOnFreePort((port) => startRedis({ dataDir: path.join(workDir, 'redis'), port })),
  ])) as [PostgresHandle, RedisHandle];
  // Each suite gets its own database cloned from this migrated template (test/helpers).
  await ensureDatabase(pg.url, 'pga_template');
  await migrateDatabase(pg.urlFor('pga_template'));
  console.log(`  PostgreSQL 127.0.0.1:${pg.port} (pid ${pg.pid}), Redis 127.0.0.1:${redis.port} (pid ${redis.pid})`);

  const resultsFile = path.join(workDir, 'vitest.json');
  const vitestOk = await run(
    'tests (vitest)',
    bin('vitest'),
    ['run', '--reporter=default', '--reporter=json', `--outputFile.json=${resultsFile}`, ...filters],
    {
      PGA_TEST_PG_URL: pg.url,
      PGA_TEST_PG_PORT: String(pg.port),
      PGA_TEST_TEMPLATE_DB: 'pga_template',
      PGA_TEST_REDIS_URL: redis.url,
      PGA_TEST_REDIS_PORT: String(redis.port),
      PGA_TEST_DATA_DIR: workDir,
    },
  );
  if (existsSync(resultsFile)) {
    const results = JSON.parse(readFileSync(resultsFile, 'utf8')) as VitestResults;
    const counted = countVitestResults(results, vitestOk, (f) => path.relative(root, f));
    passed += counted.passed;
    failed += counted.failed - counted.failures.length;
    for (const label of counted.failures) count(label, false);
  } else {
    count('vitest (no results written)', false);
  }
} catch (err) {
  console.error(err);
  count('test environment', false);
} finally {
  await cleanup();
}

if (failures.length) console.log(`\nfailed checks: ${failures.join(', ')}`);
console.log(`\n${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
