/**
 * `npm start`: the whole system on loopback. Without DATABASE_URL / REDIS_URL it runs a local
 * PostgreSQL and Redis under .data/ (created on first run, reused afterwards, on the same ports); then
 * it applies migrations, creates the first admin account, builds and starts the ingest edge, the writer
 * and the admin service (plain-JavaScript bundles, scripts/lib/service-build.ts), prints the URLs, and
 * on Ctrl-C stops everything it started, by PID.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import {
  configOrExit,
  encryptionSchema,
  jwtSchema,
  loadConfig,
  logLevel,
  port,
  portAvailable,
  postgresUrl,
  url,
} from '@pga/config';
import { createLogger } from '@pga/logger';
import { migrateDatabase } from '@pga/db';
import { startPostgres, startRedis, freePort, waitForProcesses, type PostgresHandle, type RedisHandle } from '@pga/local-stack';
import { ensureDatabase, ensureFirstAdmin } from './lib/setup';
import { builtServiceArgs, SERVICES, stopBuilding } from './lib/service-build';
import { ensureWebBuild } from './lib/web-build';

const root = path.resolve(import.meta.dirname, '..');

const StartConfigSchema = z.object({
  /** External PostgreSQL (e.g. RDS); when set no local PostgreSQL is started. */
  DATABASE_URL: postgresUrl().optional(),
  /** External Redis (e.g. ElastiCache); when set no local Redis is started. */
  REDIS_URL: url('redis', 'rediss').optional(),
  INGEST_PORT: port(8080),
  ADMIN_PORT: port(3000),
  WRITER_PORT: port(9091),
  /** Where the local PostgreSQL/Redis data and generated secrets live; default .data */
  DATA_DIR: z.string().default(path.join(root, '.data')),
  ADMIN_USERNAME: z.string().min(1).default('admin'),
  ADMIN_PASSWORD: z.string().min(12, 'must be at least 12 characters').optional(),
  /** Collector tokens' key, checked before anything starts; default generated, kept in secrets.json. */
  JWT_SECRET: jwtSchema.shape.JWT_SECRET.optional(),
  /** The services' keyring, checked before anything starts; default generated, kept in secrets.json. */
  ENCRYPTION_KEY: encryptionSchema.shape.ENCRYPTION_KEY.optional(),
  /** pino level of this script and the services; default info. */
  LOG_LEVEL: logLevel,
});

const config = configOrExit('start', () => loadConfig(StartConfigSchema));
const logger = createLogger({ name: 'start', level: config.LOG_LEVEL });

interface LocalSecrets {
  JWT_SECRET: string;
  ENCRYPTION_KEY: string;
  PG_PASSWORD: string;
  /** The local Redis's `requirepass` (security review M4); added to a secrets.json written before it. */
  REDIS_PASSWORD: string;
}

const generators: { [K in keyof LocalSecrets]: () => string } = {
  JWT_SECRET: () => randomBytes(48).toString('base64url'),
  ENCRYPTION_KEY: () => `k1:${randomBytes(32).toString('base64')}`,
  PG_PASSWORD: () => randomBytes(18).toString('base64url'),
  REDIS_PASSWORD: () => randomBytes(24).toString('base64url'),
};

/**
 * Secrets generated on first run and kept (0600) so tokens and ciphertexts stay valid across
 * restarts. One missing from an existing file (written by an earlier version) is generated and
 * added; those present are never changed.
 */
function localSecrets(dataDir: string): LocalSecrets {
  const file = path.join(dataDir, 'secrets.json');
  const kept: Partial<LocalSecrets> = existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : {};
  const missing = (Object.keys(generators) as (keyof LocalSecrets)[]).filter((name) => typeof kept[name] !== 'string');
  if (missing.length === 0) return kept as LocalSecrets;
  const secrets = { ...kept } as LocalSecrets;
  for (const name of missing) secrets[name] = generators[name]();
  const tmp = `${file}.tmp`;
  rmSync(tmp, { force: true }); // a leftover keeps its mode: the new file must be created 0600
  writeFileSync(tmp, JSON.stringify(secrets, null, 2), { mode: 0o600 });
  renameSync(tmp, file);
  return secrets;
}

type LocalServer = 'postgres' | 'redis';

/** ports.json: the local servers' ports. Unreadable (a torn write, edited by hand) → none kept. */
function keptPorts(file: string): Partial<Record<LocalServer, number>> {
  if (!existsSync(file)) return {};
  try {
    const parsed: unknown = JSON.parse(readFileSync(file, 'utf8'));
    if (parsed && typeof parsed === 'object') return parsed as Partial<Record<LocalServer, number>>;
  } catch {
    // answered below
  }
  logger.warn({ file }, 'ports.json is unreadable: the local PostgreSQL and Redis get new ports');
  return {};
}

/**
 * The local PostgreSQL's or Redis's port: the one kept in ports.json when it is free, so that a
 * collector registered with the banner's port still reaches it after a restart; otherwise (first
 * run, or the kept port taken now) a free one, kept by `keep()` once the server runs on it (a
 * server that then fails to start, e.g. an earlier start's PostgreSQL still holding the data and
 * its port, must not lose the port collectors know). `reserved`: the services' own ports.
 */
async function localPort(dataDir: string, name: LocalServer, reserved: number[]): Promise<{ port: number; keep(): void }> {
  const file = path.join(dataDir, 'ports.json');
  const kept = keptPorts(file);
  const old = kept[name];
  if (typeof old === 'number' && !reserved.includes(old) && (await portAvailable('127.0.0.1', old)))
    return { port: old, keep: () => undefined };
  let port = await freePort();
  // Not the other server's kept port, free only because that server has not started yet.
  while ([...Object.values(kept), ...reserved].includes(port)) port = await freePort();
  if (old !== undefined)
    logger.warn(
      { port, oldPort: old },
      name === 'postgres'
        ? `local PostgreSQL port ${old} is in use by another program; using port ${port} now: ` +
            `a collector whose target database is 127.0.0.1:${old} must be updated to port ${port}`
        : `local Redis port ${old} is in use by another program; using port ${port} now`,
    );
  return {
    port,
    keep() {
      const tmp = `${file}.tmp`;
      writeFileSync(tmp, JSON.stringify({ ...keptPorts(file), [name]: port }, null, 2));
      renameSync(tmp, file);
    },
  };
}

const started: { name: string; stop: () => Promise<void> }[] = [];
let stopping: Promise<never> | undefined;

/**
 * Stops everything, once: a terminal's Ctrl-C reaches this script twice (directly, and relayed by
 * bootstrap.mjs), and the second signal must wait for the first stop, not exit in the middle of it
 * (PostgreSQL and Redis, in process groups of their own, would be left running).
 */
function shutdown(code: number): Promise<never> {
  return (stopping ??= (async () => {
    if (unshownAdmin)
      console.log(
        `\n  First admin        ${unshownAdmin.username} / ${unshownAdmin.password}   (created before the start failed; ` +
          'shown once: write it down, the next start says "already exists")\n',
      );
    logger.info('stopping…');
    for (const item of started.reverse()) {
      await item.stop().catch((err: unknown) => logger.warn({ err, part: item.name }, 'stop failed'));
    }
    logger.info('stopped');
    process.exit(code);
  })());
}
process.on('SIGINT', () => void shutdown(0));
process.on('SIGTERM', () => void shutdown(0));
// The terminal closed: PostgreSQL and Redis, in groups of their own, would not hear of it.
process.on('SIGHUP', () => void shutdown(0));
// A crash of this script must not leave PostgreSQL and Redis running either.
process.on('uncaughtException', (err) => {
  logger.error({ err }, 'start script failed; stopping everything');
  void shutdown(1);
});

/** Set once everything is up: from then on a crashed service is started again (`startService`). */
let running = false;
/**
 * The first admin's generated password, until the banner shows it: a start that fails after
 * creating the account (a service refusing its environment) prints it on the way out, or nobody
 * could ever sign in as that account (the next start says "already exists").
 */
let unshownAdmin: { username: string; password: string } | undefined;
/** A crashed service is started again after 1 s, doubled per crash in a row (1, 2, 4, 8, 16 s) … */
const RESTART_FIRST_MS = 1000;
/** … a run of this long ends the row … */
const RESTART_STABLE_MS = 60_000;
/** … and the 6th crash in a row stops everything (a service that cannot run would loop forever). */
const RESTART_LIMIT = 5;

/**
 * Runs a service's bundle (built above) with its node flags: `node <flags> <service>/dist/main.mjs`.
 * A service that exits on its own while the system runs is started again (what a supervisor would
 * do: one crash of the writer used to stop the edge, the admin service, PostgreSQL and Redis too,
 * and every collector got connection refused until someone ran `npm start` again); during the start
 * it stops everything, so that a service that cannot start says so at once.
 */
function startService(name: string, nodeArgs: string[], env: Record<string, string>): void {
  let child: ChildProcess;
  let crashes = 0;
  let restart: NodeJS.Timeout | undefined;
  const run = () => {
    const startedAt = Date.now();
    child = spawn(process.execPath, nodeArgs, {
      cwd: root,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    child.on('exit', (code, signal) => {
      if (stopping) return;
      // A closed terminal hangs up the services too, maybe before this script hears of it.
      if (signal === 'SIGHUP') return void shutdown(0);
      if (!running) {
        logger.error({ service: name, code, signal }, 'service exited unexpectedly while starting; stopping everything');
        return void shutdown(1);
      }
      crashes = Date.now() - startedAt >= RESTART_STABLE_MS ? 1 : crashes + 1;
      if (crashes > RESTART_LIMIT) {
        logger.error({ service: name, code, signal, crashes }, 'service keeps exiting unexpectedly; stopping everything');
        return void shutdown(1);
      }
      const delayMs = RESTART_FIRST_MS * 2 ** (crashes - 1);
      logger.error({ service: name, code, signal, restartInMs: delayMs }, 'service exited unexpectedly; starting it again');
      restart = setTimeout(() => stopping || run(), delayMs);
    });
  };
  run();
  started.push({
    name,
    stop: () =>
      new Promise<void>((resolve) => {
        clearTimeout(restart);
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
        setTimeout(() => {
          logger.warn({ service: name }, 'service did not stop within 20 s; killing it');
          child.kill('SIGKILL');
        }, 20_000).unref();
      }),
  });
}

/** Refuses to start, before anything was started: one line, exit 1. */
function refuse(message: string): never {
  console.error(`start: ${message}`);
  process.exit(1);
}

/**
 * The ports we are told to serve on, checked before anything starts. A port in use is refused with
 * its name: the edge listens with SO_REUSEPORT (its processes share the port), so on a port another
 * install's edge holds it would silently join it, and collectors would reach either install at
 * random; and the readiness checks below would take the other program's answers for ours.
 */
async function assertPortsFree(ports: Record<string, number>): Promise<void> {
  const taken: string[] = [];
  for (const [name, port] of Object.entries(ports)) if (!(await portAvailable('127.0.0.1', port))) taken.push(`${name} ${port}`);
  if (taken.length) {
    // A second install needs a data folder of its own too: on this one's, its PostgreSQL already runs.
    const example = Object.entries(ports).map(([name, port]) => `${name}=${port + 1}`);
    refuse(
      `port in use on 127.0.0.1: ${taken.join(', ')} (another pgAnalytics Central, or another program). ` +
        `Stop it, or start this one with a data folder and ports of its own, e.g. DATA_DIR=${config.DATA_DIR}-2 ${example.join(' ')} npm start`,
    );
  }
}

/**
 * One `npm start` per DATA_DIR while it runs a local PostgreSQL or Redis there: a second one took
 * the first one's PostgreSQL port for "another program's", then failed on its postmaster.pid. The
 * claim is `start.pid` in DATA_DIR, ignored once its process is gone (or is no start script).
 */
function claimDataDir(dir: string): void {
  const file = path.join(dir, 'start.pid');
  const claim = () => writeFileSync(file, `${process.pid}\n`, { flag: 'wx' });
  try {
    claim(); // atomic: of two starts at once, one gets EEXIST
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    const holder = Number(readFileSync(file, 'utf8').trim());
    let holderIsStart = false;
    try {
      holderIsStart = holder !== process.pid && readFileSync(`/proc/${holder}/cmdline`, 'utf8').includes('start.ts');
    } catch {
      // gone: the claim is stale
    }
    if (holderIsStart)
      refuse(
        `another npm start is running with DATA_DIR ${dir} (pid ${holder}): stop it, or start this one with another DATA_DIR`,
      );
    rmSync(file, { force: true });
    try {
      claim();
    } catch {
      refuse(`another npm start is starting with DATA_DIR ${dir}: stop it, or start this one with another DATA_DIR`);
    }
  }
  process.on('exit', () => {
    if (existsSync(file) && Number(readFileSync(file, 'utf8').trim()) === process.pid) rmSync(file);
  });
}

try {
  const ownPorts = { ADMIN_PORT: config.ADMIN_PORT, INGEST_PORT: config.INGEST_PORT, WRITER_PORT: config.WRITER_PORT };
  mkdirSync(config.DATA_DIR, { recursive: true });
  if (!config.DATABASE_URL || !config.REDIS_URL) claimDataDir(config.DATA_DIR);
  await assertPortsFree(ownPorts);
  /** Never handed to the local PostgreSQL or Redis. */
  const servicePorts = Object.values(ownPorts);
  const secrets = localSecrets(config.DATA_DIR);

  let databaseUrl = config.DATABASE_URL;
  /** The local PostgreSQL's address, for the banner (a first collector may monitor it). */
  let localPostgres: { port: number; user: string } | undefined;
  if (!databaseUrl) {
    const pgPort = await localPort(config.DATA_DIR, 'postgres', servicePorts);
    const pg: PostgresHandle = await startPostgres({
      dataDir: path.join(config.DATA_DIR, 'postgres'),
      port: pgPort.port,
      password: secrets.PG_PASSWORD,
      // Ctrl-C reaches the services and this script; PostgreSQL and Redis are stopped after them.
      ownProcessGroup: true,
    });
    started.push({ name: 'postgres', stop: pg.stop });
    pgPort.keep();
    localPostgres = { port: pg.port, user: decodeURIComponent(new URL(pg.url).username) };
    await ensureDatabase(pg.url, 'pganalytics');
    databaseUrl = pg.urlFor('pganalytics');
    logger.info({ port: pg.port, serverPid: pg.pid, dataDir: pg.dataDir }, 'local PostgreSQL started');
  }
  let redisUrl = config.REDIS_URL;
  if (!redisUrl) {
    const redisPort = await localPort(config.DATA_DIR, 'redis', servicePorts);
    const redis: RedisHandle = await startRedis({
      dataDir: path.join(config.DATA_DIR, 'redis'),
      port: redisPort.port,
      // Not open to every local user: a forged PUBLISH on the change channel re-enabled a disabled
      // collector at the edges; any client could also read push bodies or FLUSHALL.
      password: secrets.REDIS_PASSWORD,
      ownProcessGroup: true,
    });
    started.push({ name: 'redis', stop: redis.stop });
    redisPort.keep();
    redisUrl = redis.url;
    logger.info({ port: redis.port, serverPid: redis.pid }, 'local Redis started');
  }

  const migration = await migrateDatabase(databaseUrl, logger);
  logger.info({ applied: migration.applied.length, alreadyApplied: migration.alreadyApplied }, 'database schema up to date');

  await ensureWebBuild(root, logger);
  // Each service runs as plain JavaScript (scripts/lib/service-build.ts): no TypeScript loader per process.
  await Promise.all(Object.values(SERVICES).map((spec) => builtServiceArgs(root, spec)));
  await stopBuilding();

  const admin = await ensureFirstAdmin(databaseUrl, config.ADMIN_USERNAME, config.ADMIN_PASSWORD);
  if (admin.generatedPassword) unshownAdmin = { username: admin.username, password: admin.generatedPassword };

  const env: Record<string, string> = {
    DATABASE_URL: databaseUrl,
    REDIS_URL: redisUrl,
    JWT_SECRET: config.JWT_SECRET ?? secrets.JWT_SECRET,
    ENCRYPTION_KEY: config.ENCRYPTION_KEY ?? secrets.ENCRYPTION_KEY,
    INGEST_PORT: String(config.INGEST_PORT),
    INGEST_HOST: '127.0.0.1',
    ADMIN_PORT: String(config.ADMIN_PORT),
    ADMIN_HOST: '127.0.0.1',
    WRITER_PORT: String(config.WRITER_PORT),
    WRITER_HOST: '127.0.0.1',
    CENTRAL_API_URL: process.env.CENTRAL_API_URL ?? `http://127.0.0.1:${config.INGEST_PORT}`,
    LOG_LEVEL: config.LOG_LEVEL,
  };
  for (const [name, spec] of Object.entries(SERVICES)) startService(name, await builtServiceArgs(root, spec), env);

  // "Running" means usable: the writer and every edge process ready (Redis reachable, deny state loaded).
  await Promise.all([
    waitForProcesses(config.ADMIN_PORT, '/healthz', { timeoutMs: 60_000 }),
    waitForProcesses(config.INGEST_PORT, '/readyz', { timeoutMs: 60_000 }),
    waitForProcesses(config.WRITER_PORT, '/readyz', { timeoutMs: 60_000 }),
  ]);

  const lines = [
    '',
    'pgAnalytics Central is running:',
    `  Admin UI and API   http://127.0.0.1:${config.ADMIN_PORT}/   (tRPC under /trpc)`,
    `  Ingest edge        http://127.0.0.1:${config.INGEST_PORT}/   (CENTRAL_API_URL for collectors)`,
    `  Writer operations  http://127.0.0.1:${config.WRITER_PORT}/metrics`,
    admin.generatedPassword
      ? `  First admin        ${admin.username} / ${admin.generatedPassword}   (shown once: write it down)`
      : admin.created
        ? `  First admin        ${admin.username} (password from ADMIN_PASSWORD)`
        : admin.taken
          ? `  Admin account      none enabled, and "${admin.username}" is taken by a disabled or non-admin account: ` +
            'set ADMIN_USERNAME to another name to create one'
          : `  Admin account      ${admin.username} (already exists)`,
    ...(localPostgres
      ? [
          `  Local PostgreSQL   127.0.0.1:${localPostgres.port}, user ${localPostgres.user}, password PG_PASSWORD in ` +
            `${path.join(config.DATA_DIR, 'secrets.json')} (a target a first collector can monitor)`,
        ]
      : []),
    '  Press Ctrl-C to stop everything.',
    '',
  ];
  console.log(lines.join('\n'));
  unshownAdmin = undefined;
  running = true;
} catch (err) {
  logger.error({ err }, err instanceof Error ? err.message : 'start failed');
  await shutdown(1);
}
