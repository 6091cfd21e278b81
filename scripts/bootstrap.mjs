#!/usr/bin/env node
// Entry point of `npm start` and `npm test`: plain Node with no dependencies, so it runs in a fresh
// clone. It checks Node, installs npm dependencies when they are missing or stale, installs missing
// system packages with apt when run as root (otherwise says in one line what to install), then hands
// over to scripts/start.ts or scripts/test.ts.
import { spawnSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runsMonitoringTests } from './lib/test-args.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const command = process.argv[2];
if (command !== 'start' && command !== 'test') {
  console.error('usage: node scripts/bootstrap.mjs start|test');
  process.exit(2);
}

const [major, minor] = process.versions.node.split('.').map(Number);
// Node 20 only: the ingest edge's uWebSockets.js (20.30) has native binaries up to Node 20 (ABI 115);
// on a newer Node it would fall back to its slow, incomplete Node implementation (the edge refuses it).
if (major !== 20 || minor < 19) {
  console.error(
    `pganalytics-central needs Node 20.19+ (20.x; the ingest edge's uWebSockets.js has no build for newer Node); this is ${process.version}`,
  );
  process.exit(1);
}

function hasPostgresServer() {
  try {
    return readdirSync('/usr/lib/postgresql').some((v) => existsSync(`/usr/lib/postgresql/${v}/bin/postgres`));
  } catch {
    return false;
  }
}
const onPath = (bin) =>
  [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/bin'].some((d) => d && existsSync(path.join(d, bin)));

// What each command needs from the system, as [Debian package, present?].
const needs = [];
if (command === 'test' || !process.env.REDIS_URL) needs.push(['redis-server', onPath('redis-server')]);
if (command === 'test' || !process.env.DATABASE_URL) needs.push(['postgresql-15', hasPostgresServer()]);
if (command === 'test') {
  needs.push(['chromium', existsSync('/usr/bin/chromium')]);
  needs.push(['mariadb-server', onPath('mariadbd')]);
  // test/foundation/pgbouncer.test.ts runs its own PgBouncer (never the package's service).
  needs.push(['pgbouncer', onPath('pgbouncer')]);
}
const missing = needs.filter(([, present]) => !present).map(([pkg]) => pkg);
if (missing.length > 0) {
  if (process.getuid?.() === 0) {
    console.log(`installing system packages: ${missing.join(' ')}`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    const update = spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
    const install =
      update.status === 0 &&
      spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], { stdio: 'inherit', env });
    if (!install || install.status !== 0) {
      console.error(`could not install ${missing.join(' ')} with apt-get; install them and run again`);
      process.exit(1);
    }
  } else {
    console.error(`missing system packages: run  sudo apt-get install -y ${missing.join(' ')}  then run again`);
    process.exit(1);
  }
}

// promtool, for test/monitoring (checks and unit-tests monitoring/alerts.yml): taken out of Debian's
// prometheus package into .data/tools rather than installing the package, whose service would start
// a Prometheus server listening on every interface wherever systemd runs. `apt-get download` needs
// no root, only the package lists (refreshed first when root and they lack it). Fetched for a whole
// run or one that names test/monitoring; when it cannot be, the run goes on and that test fails
// saying so. Copied under a temporary name and renamed: an interrupted copy is never taken for it.
const promtoolPath = path.join(root, '.data', 'tools', 'promtool');
// Only the file filters count, not an option's value: `-t monitoring` names no file, and `-t heartbeat`
// alone runs every file, test/monitoring included (lib/test-args.mjs).
const wantsPromtool = runsMonitoringTests(process.argv.slice(3));
if (command === 'test' && wantsPromtool && !onPath('promtool') && !existsSync(promtoolPath)) {
  console.log('fetching promtool (Debian package prometheus, extracted into .data/tools)…');
  const tmp = mkdtempSync(path.join(tmpdir(), 'pga-promtool-'));
  let failure;
  try {
    const download = () => spawnSync('apt-get', ['download', '-qq', 'prometheus'], { cwd: tmp, encoding: 'utf8' });
    let res = download();
    if (res.status !== 0 && process.getuid?.() === 0) {
      spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit' });
      res = download();
    }
    const deb = readdirSync(tmp).find((f) => f.endsWith('.deb'));
    const extracted = deb && spawnSync('dpkg-deb', ['-x', path.join(tmp, deb), path.join(tmp, 'x')], { encoding: 'utf8' });
    if (!deb || !extracted || extracted.status !== 0) {
      failure = (res.error?.message || res.stderr || extracted?.stderr || '').trim().split('\n').pop();
    } else {
      mkdirSync(path.dirname(promtoolPath), { recursive: true });
      const partial = `${promtoolPath}.${process.pid}.partial`;
      copyFileSync(path.join(tmp, 'x', 'usr', 'bin', 'promtool'), partial);
      chmodSync(partial, 0o755);
      renameSync(partial, promtoolPath);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  if (failure !== undefined)
    console.error(
      `could not fetch promtool (${failure}); test/monitoring will fail without it: ` +
        (process.getuid?.() === 0 ? 'check apt-get' : 'run  sudo apt-get update  (package lists) and run again'),
    );
}

// npm dependencies: (re)install when node_modules is absent or older than package-lock.json. Our
// stamp records the lock file each install of ours used; without it (the README's `npm ci` ran by
// hand), npm's own record of what it installed counts when it is newer than the lock file, as npm
// itself trusts it.
const lock = path.join(root, 'package-lock.json');
const stamp = path.join(root, 'node_modules', '.pga-lock-hash');
const npmRecord = path.join(root, 'node_modules', '.package-lock.json');
const lockHash = createHash('sha256').update(readFileSync(lock)).digest('hex');
let installed = existsSync(stamp) && readFileSync(stamp, 'utf8') === lockHash;
if (!installed && !existsSync(stamp) && existsSync(npmRecord) && statSync(npmRecord).mtimeMs >= statSync(lock).mtimeMs) {
  writeFileSync(stamp, lockHash);
  installed = true;
}
if (!installed) {
  console.log('installing npm dependencies (npm ci)…');
  const res = spawnSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit' });
  if (res.status !== 0) {
    console.error('npm ci failed');
    process.exit(1);
  }
  writeFileSync(stamp, lockHash);
}

// tsx as a loader, not its CLI: the CLI relays a signal and SIGKILLs its child when that child does
// not confirm within 30 ms, and a terminal's Ctrl-C plus our relay below is two signals, so the
// script was killed in the middle of its own shutdown (its services left running).
const child = spawn(
  process.execPath,
  ['--import', 'tsx', path.join(root, 'scripts', `${command}.ts`), ...process.argv.slice(3)],
  {
    cwd: root,
    stdio: 'inherit',
  },
);
// A terminal's Ctrl-C reaches the whole process group; a plain `kill` reaches only us: pass it on
// (the scripts treat a second signal as the first).
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => child.kill(signal));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
// `kill <npm's pid>` (a supervisor, `timeout npm start`): npm exits without passing the signal on,
// and we would go on running under init with everything we started. Our parent changing is the
// sign: stop as on SIGTERM. (A terminal's Ctrl-C or hang-up reaches us directly.)
const parent = process.ppid;
const orphaned = setInterval(() => {
  if (process.ppid === parent) return;
  clearInterval(orphaned);
  child.kill('SIGTERM');
}, 500);
orphaned.unref();
