import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '../..');
const run = (args: string[]) =>
  spawnSync(path.join(root, 'node_modules/.bin/tsx'), [path.join(root, 'scripts/lost-pushes.ts'), ...args], {
    // No DATABASE_URL / REDIS_URL: `--help` must not need them (it answered with a configuration error).
    env: { PATH: process.env.PATH },
    encoding: 'utf8',
    timeout: 30_000,
  });

it('npm run lost-pushes -- --help prints its usage without an environment', () => {
  const res = run(['--help']);
  expect(res.stderr).toBe('');
  expect(res.status).toBe(0);
  expect(res.stdout).toMatch(/^npm run lost-pushes/);
  for (const name of ['DATABASE_URL', 'REDIS_URL', 'REDIS_KEY_PREFIX', 'IDEMPOTENCY_TTL_SECONDS', 'LOST_PUSHES_GRACE_SECONDS'])
    expect(res.stdout).toContain(name);
});

it('npm run lost-pushes refuses an unknown option with exit 2 instead of running the scan', () => {
  const res = run(['--bogus']);
  expect(res.status).toBe(2);
  expect(res.stderr).toMatch(/^lost-pushes: Unknown option '--bogus'/);
});
