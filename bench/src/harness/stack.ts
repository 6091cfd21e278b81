import { type ChildProcess, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { migrateDatabase } from '@pga/db';
import {
  freePort,
  GiveUp,
  outputTail,
  spawnServer,
  stopChild,
  startPostgres,
  startRedis,
  startTogether,
  type PostgresHandle,
  type RedisHandle,
  waitForProcesses,
} from '@pga/local-stack';
import { builtServiceArgs, serviceByEntry } from '../../../scripts/lib/service-build';
import { extraNodeFlags, extraServiceEnv, withFlagsBeforeScript } from './diagnostics';
import { resetPushState } from './redis-state';

export const REPO_ROOT = path.resolve(import.meta.dirname, '../../..');

export interface ServiceHandle {
  name: string;
  pid: number;
  port: number;
  url: string;
  logFile: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

export interface StartServiceOptions {
  /** Entry file relative to the repository root. */
  entry: string;
  env: Record<string, string>;
  port: number;
  /**
   * Path answering 200 when the service is up; default /healthz. An answer naming `processes` (the
   * edge's /readyz) is awaited from that many processes, so no load starts while one is on its way.
   */
  healthPath?: string;
  /** Open-file limit for the child (`ulimit -n`), e.g. for the 10,000-connection scenario. */
  fileLimit?: number;
  timeoutMs?: number;
}

/** The shared secrets every service of the bench stack gets. */
export interface StackSecrets {
  JWT_SECRET: string;
  ENCRYPTION_KEY: string;
  JWT_ISSUER: string;
  JWT_AUDIENCE: string;
}

/**
 * An isolated PostgreSQL + Redis under a temporary folder (never the developer's .data/), the
 * migrated `pga_bench` database, and the services started as child processes on free loopback
 * ports. Everything is stopped by PID and the folder removed at the end.
 */
export class BenchStack {
  readonly services = new Map<string, ServiceHandle>();
  readonly secrets: StackSecrets = {
    JWT_SECRET: randomBytes(48).toString('base64url'),
    ENCRYPTION_KEY: `k1:${randomBytes(32).toString('base64')}`,
    JWT_ISSUER: 'pganalytics-central',
    JWT_AUDIENCE: 'pganalytics-collectors',
  };

  private constructor(
    readonly workDir: string,
    readonly pg: PostgresHandle,
    readonly redis: RedisHandle,
    readonly databaseUrl: string,
  ) {}

  static async start(): Promise<BenchStack> {
    const workDir = mkdtempSync(path.join(os.tmpdir(), 'pga-bench-'));
    let pgHandle: PostgresHandle | undefined;
    let redis: RedisHandle | undefined;
    try {
      // Both or neither: a Redis that fails to start stops the PostgreSQL that did (startTogether).
      [pgHandle, redis] = (await startTogether<PostgresHandle | RedisHandle>([
        // Durable settings (fsync and synchronous_commit on): throughput figures must include the
        // cost of commits the way production pays it; group commit is part of what is measured.
        // Own process groups: a terminal's Ctrl-C reaches the bench and its services, and the bench
        // stops PostgreSQL and Redis after the services (stop()), not under their feet.
        freePort().then((port) => startPostgres({ dataDir: path.join(workDir, 'postgres'), port, ownProcessGroup: true })),
        // BENCH_REDIS_AOF=no: a diagnostic run without Redis's append-only file, to see what AOF
        // writes cost in latency (never how the product runs; the header of the report says so).
        freePort().then((port) =>
          startRedis({
            dataDir: path.join(workDir, 'redis'),
            port,
            appendOnly: process.env.BENCH_REDIS_AOF !== 'no',
            ownProcessGroup: true,
          }),
        ),
      ])) as [PostgresHandle, RedisHandle];
      const admin = new pg.Client({ connectionString: pgHandle.url });
      await admin.connect();
      await admin.query('CREATE DATABASE pga_bench');
      await admin.end();
      const databaseUrl = pgHandle.urlFor('pga_bench');
      await migrateDatabase(databaseUrl);
      return new BenchStack(workDir, pgHandle, redis, databaseUrl);
    } catch (err) {
      await redis?.stop().catch(() => undefined);
      await pgHandle?.stop().catch(() => undefined);
      removeStackFolders(workDir, pgHandle?.dataDir);
      throw err;
    }
  }

  /** Environment every service needs (DATABASE_URL, REDIS_URL, secrets, quiet logs). */
  baseEnv(): Record<string, string> {
    return {
      DATABASE_URL: this.databaseUrl,
      REDIS_URL: this.redis.url,
      REDIS_KEY_PREFIX: 'pga',
      LOG_LEVEL: 'warn',
      // The load generator pushes ~15/s per collector for minutes (a load test, not a collector's
      // pattern): far past the edge's default push quota. Set, not 0, so that the claim still counts
      // every push, as an edge with the default quota does.
      PUSH_QUOTA_PER_HOUR: '1000000000',
      ...this.secrets,
    };
  }

  /** Process trees the CPU/RSS sampler follows. */
  roots(): Record<string, number> {
    const roots: Record<string, number> = { postgres: this.pg.pid, redis: this.redis.pid };
    for (const s of this.services.values()) if (s.child.exitCode === null) roots[s.name] = s.pid;
    return roots;
  }

  /**
   * Starts a service the way `npm start` runs it: `node <its flags> <its bundle>`
   * (scripts/lib/service-build.ts), one process per service with no wrapper whose memory would
   * count. With BENCH_PROFILE_DIR, every service writes a V8 CPU profile there when it exits
   * (chrome devtools) and runs from source (`node --import tsx`, same flags) so that the profile
   * attributes time to source files rather than to one bundle.
   */
  async startService(name: string, options: StartServiceOptions): Promise<ServiceHandle> {
    const logFile = path.join(this.workDir, `${name}.log`);
    const profileDir = process.env.BENCH_PROFILE_DIR;
    const spec = serviceByEntry(options.entry);
    const flags = [...(spec?.nodeFlags ?? []), ...extraNodeFlags()];
    const nodeArgs =
      profileDir || !spec
        ? [
            ...(profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []),
            ...flags,
            '--import',
            'tsx',
            path.join(REPO_ROOT, options.entry),
          ]
        : withFlagsBeforeScript(await builtServiceArgs(REPO_ROOT, spec), extraNodeFlags());
    const env = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...options.env, ...extraServiceEnv() };
    // With a file limit, through `sh` (ulimit) which then execs node.
    const [program, args] = options.fileLimit
      ? ['sh', ['-c', `ulimit -n ${options.fileLimit} 2>/dev/null; exec "$0" "$@"`, process.execPath, ...nodeArgs]]
      : [process.execPath, nodeArgs];
    // One log for both streams (spawnServer: ended once both have; its tail is quoted below).
    const command = spawnServer(program, args, logFile, { cwd: REPO_ROOT, env });
    const url = `http://127.0.0.1:${options.port}`;
    const handle: ServiceHandle = {
      name,
      pid: command.pid!,
      port: options.port,
      url,
      logFile,
      child: command,
      stop: () => stopChild(command, 'SIGTERM'),
    };
    this.services.set(name, handle);
    const healthPath = options.healthPath ?? '/healthz';
    try {
      await waitForProcesses(options.port, healthPath, {
        timeoutMs: options.timeoutMs ?? 60_000,
        check: () => {
          if (command.exitCode !== null || command.signalCode !== null)
            throw new GiveUp(
              `${name} exited at start (code ${command.exitCode ?? command.signalCode}); log: ${logFile}${outputTail(command)}`,
            );
        },
      });
    } catch (err) {
      await handle.stop();
      if (err instanceof GiveUp) throw err;
      throw new Error(`${name} did not answer ${healthPath} within the timeout; log: ${logFile}`, { cause: err });
    }
    return handle;
  }

  async stopService(name: string): Promise<void> {
    const s = this.services.get(name);
    if (!s) return;
    this.services.delete(name);
    await s.stop();
  }

  /**
   * BENCH_KEEP_LOGS=DIR: before the temporary folder is removed, its logs (every service's, Redis's
   * and PostgreSQL's) are copied to DIR/<folder name>/, e.g. to read a `--trace-gc` or the log of a
   * service that failed to start.
   */
  private keepLogs(dir: string): void {
    const to = path.join(path.resolve(dir), path.basename(this.workDir));
    try {
      mkdirSync(to, { recursive: true });
      const logs = [
        ...readdirSync(this.workDir)
          .filter((f) => f.endsWith('.log'))
          .map((f) => path.join(this.workDir, f)),
        this.redis.logFile,
        this.pg.logFile,
      ];
      for (const log of logs) if (existsSync(log)) cpSync(log, path.join(to, path.basename(log)));
      console.log(`service, Redis and PostgreSQL logs kept in ${to}`);
    } catch (err) {
      console.error(`BENCH_KEEP_LOGS: could not copy the logs to ${to}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  /**
   * Every run starts from the same state: the metrics table and ledger emptied and checkpointed,
   * and Redis without what earlier pushes left (idempotency markers, batch states, the push queue)
   * with its AOF compacted (resetPushState).
   */
  async resetData(): Promise<void> {
    const client = new pg.Client({ connectionString: this.databaseUrl });
    await client.connect();
    try {
      await client.query('TRUNCATE collector_metrics, ingest_ledger');
      await client.query('CHECKPOINT');
    } finally {
      await client.end();
    }
    await resetPushState(this.redis.url);
  }

  private stopping: Promise<void> | undefined;

  /** Stops everything the stack started and removes its folders; a second call waits for the first. */
  stop(): Promise<void> {
    return (this.stopping ??= this.stopAll());
  }

  private async stopAll(): Promise<void> {
    for (const name of [...this.services.keys()].reverse()) await this.stopService(name).catch(() => undefined);
    await this.redis.stop().catch(() => undefined);
    await this.pg.stop().catch(() => undefined);
    const keep = process.env.BENCH_KEEP_LOGS;
    if (keep) this.keepLogs(keep);
    removeStackFolders(this.workDir, this.pg.dataDir);
  }
}

/** `postgres --version` style output of a binary, or "unknown". */
export function versionOf(command: string, args: string[] = ['--version']): string {
  try {
    return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .trim()
      .split('\n')[0]!;
  } catch {
    return 'unknown';
  }
}

/**
 * The stack's temporary folder, and PostgreSQL's data folder where it lives elsewhere (/var/tmp when
 * the server runs as another account, @pga/local-stack): known from the handle, or from the
 * CLUSTER_LOCATION note local-stack leaves in the requested folder when the start failed.
 */
function removeStackFolders(workDir: string, pgDataDir: string | undefined): void {
  const note = path.join(workDir, 'postgres', 'CLUSTER_LOCATION');
  const dataDir = pgDataDir ?? (existsSync(note) ? readFileSync(note, 'utf8').trim() : undefined);
  rmSync(workDir, { recursive: true, force: true });
  if (dataDir && dataDir !== path.join(workDir, 'postgres') && existsSync(dataDir))
    rmSync(dataDir, { recursive: true, force: true });
}
