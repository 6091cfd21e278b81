import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import uWS from 'uWebSockets.js';
import { alive, freePort, processTable } from '@pga/local-stack';
import { testEnv } from '../helpers';

const root = path.resolve(import.meta.dirname, '../..');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `npm start` as README.md says it, in a data folder and on ports of its own. */
interface Started {
  npm: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

function npmStart(env: Record<string, string>): Started {
  let output = '';
  // Its own process group, so that the test can clean up whatever is left (and only that).
  const npm = spawn('npm', ['start'], { cwd: root, env: { ...process.env, ...env }, detached: true });
  npm.stdout!.on('data', (b: Buffer) => (output += b.toString()));
  npm.stderr!.on('data', (b: Buffer) => (output += b.toString()));
  const exited = new Promise<number | null>((resolve) => npm.once('exit', (code) => resolve(code)));
  return { npm, output: () => output, exited };
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

const answers = (port: number, route: string) =>
  fetch(`http://127.0.0.1:${port}${route}`, { signal: AbortSignal.timeout(2000) }).then(
    (r) => r.status,
    () => 0,
  );

/** PIDs the stack logged for its PostgreSQL and Redis (they run in process groups of their own). */
const serverPids = (output: string) => [...output.matchAll(/"serverPid":(\d+)/g)].map((m) => Number(m[1]));

/** The local PostgreSQL's port as the banner prints it, and the local Redis's as the log says it. */
const localPorts = (output: string) => ({
  postgres: Number(/Local PostgreSQL {3}127\.0\.0\.1:(\d+)/.exec(output)?.[1]),
  redis: Number(/"port":(\d+)[^\n]*"msg":"local Redis started"/.exec(output)?.[1]),
});

describe('npm start (README.md)', () => {
  const cleanup: (() => void)[] = [];
  afterEach(() => {
    for (const fn of cleanup.splice(0)) fn();
  });
  /** Kills whatever of this start is still running, whatever the test found. */
  const reap = (s: Started) =>
    cleanup.push(() => {
      for (const pid of serverPids(s.output())) if (alive(pid)) process.kill(pid, 'SIGKILL');
      for (const p of processTable()) if (p.pgrp === s.npm.pid && p.state !== 'Z') process.kill(p.pid, 'SIGKILL');
    });

  /**
   * The services' ports, none of `avoid`: a local server's kept port is free while its stack is
   * down, and handed to a service it would be "reserved" and the server moved (seen in CI).
   */
  const ports = async (avoid: number[] = []) => {
    const picked: number[] = [];
    const pick = async () => {
      let port = await freePort();
      while ([...avoid, ...picked].includes(port)) port = await freePort();
      picked.push(port);
      return String(port);
    };
    return { ADMIN_PORT: await pick(), INGEST_PORT: await pick(), WRITER_PORT: await pick() };
  };
  const dataDir = (label: string) => path.join(testEnv.dataDir, `npm-start-${label}-${process.pid}`);

  /** `npm start` on `dir` until its banner (failing at once, with its output, if it exits first). */
  async function running(dir: string, avoid: { postgres: number; redis: number }[] = []): Promise<Started> {
    const kept = avoid.flatMap((p) => [p.postgres, p.redis]);
    const s = npmStart({ ...(await ports(kept)), DATA_DIR: dir, LOG_LEVEL: 'info' });
    reap(s);
    await until(
      'the "running" banner or an exit',
      () => s.output().includes('pgAnalytics Central is running') || s.npm.exitCode !== null,
      180_000,
    );
    expect(s.output()).toContain('pgAnalytics Central is running');
    return s;
  }
  /** Stops a start as a supervisor does (SIGTERM to npm) and waits until nothing of it is left. */
  async function stop(s: Started): Promise<void> {
    const servers = serverPids(s.output());
    s.npm.kill('SIGTERM');
    await until(
      'PostgreSQL, Redis and every process of the start stopped',
      () => servers.every((pid) => !alive(pid)) && !processTable().some((q) => q.pgrp === s.npm.pid && q.state !== 'Z'),
      45_000,
    );
  }

  it('stops everything it started when npm itself is sent SIGTERM (a supervisor, `kill`, `timeout`)', async () => {
    const p = await ports();
    const s = npmStart({ ...p, DATA_DIR: dataDir('sigterm'), LOG_LEVEL: 'info' });
    reap(s);
    await until('the "running" banner', () => s.output().includes('pgAnalytics Central is running'), 180_000);
    expect(await answers(Number(p.ADMIN_PORT), '/healthz')).toBe(200);
    expect(await answers(Number(p.INGEST_PORT), '/readyz')).toBe(200);
    // The banner names the local PostgreSQL a first collector can monitor, with where its password is.
    expect(s.output()).toMatch(/Local PostgreSQL {3}127\.0\.0\.1:\d+, user postgres, password PG_PASSWORD in \S+secrets\.json/);
    const servers = serverPids(s.output());
    expect(servers, 'PostgreSQL and Redis PIDs in the log').toHaveLength(2);

    s.npm.kill('SIGTERM'); // npm only: not its process group, as `kill <pid>` does
    await until(
      'every port closed and PostgreSQL and Redis stopped',
      async () =>
        (await answers(Number(p.ADMIN_PORT), '/healthz')) === 0 &&
        (await answers(Number(p.INGEST_PORT), '/healthz')) === 0 &&
        (await answers(Number(p.WRITER_PORT), '/healthz')) === 0 &&
        servers.every((pid) => !alive(pid)),
      45_000,
    );
    await until(
      'no process of the start left',
      () => !processTable().some((q) => q.pgrp === s.npm.pid && q.state !== 'Z'),
      10_000,
    );
  }, 300_000);

  it("keeps the local PostgreSQL and Redis on the same ports across restarts (a collector registered with the banner's port still reaches it)", async () => {
    const dir = dataDir('same-ports');
    const first = await running(dir);
    const ports = localPorts(first.output());
    expect(ports.postgres, first.output()).toBeGreaterThan(0);
    expect(ports.redis, first.output()).toBeGreaterThan(0);
    await stop(first);

    const second = await running(dir, [ports]);
    expect(localPorts(second.output()), second.output()).toEqual(ports);
    expect(second.output()).not.toContain('is in use by another program');
    await stop(second);
  }, 300_000);

  it('moves the local PostgreSQL off its kept port only when another program holds it, says so, and keeps the new port', async () => {
    const dir = dataDir('port-taken');
    const first = await running(dir);
    const kept = localPorts(first.output());
    await stop(first);

    // Another program on the kept PostgreSQL port while the stack is down.
    const other = createServer();
    await new Promise<void>((resolve) => other.listen(kept.postgres, '127.0.0.1', resolve));
    cleanup.push(() => other.close());
    const second = await running(dir, [kept]);
    const moved = localPorts(second.output());
    expect(moved.postgres).not.toBe(kept.postgres);
    expect(moved.postgres).toBeGreaterThan(0);
    expect(second.output()).toContain(
      `local PostgreSQL port ${kept.postgres} is in use by another program; using port ${moved.postgres} now`,
    );
    expect(moved.redis, 'Redis keeps its port').toBe(kept.redis);
    await stop(second);
    await new Promise((resolve) => other.close(resolve));

    // The new port is the one kept now, even with the old one free again.
    const third = await running(dir, [kept, moved]);
    expect(localPorts(third.output()), third.output()).toEqual(moved);
    expect(third.output()).not.toContain('is in use by another program');
    await stop(third);
  }, 300_000);

  it('refuses a port another program holds — even one that shares ports like the edge — naming it, before starting anything', async () => {
    const p = await ports();
    // Another install's edge on "our" ingest port: uWebSockets.js listens with SO_REUSEPORT, so a
    // second edge would silently join it and collectors would reach either install at random.
    let other: uWS.us_listen_socket | false = false;
    const app = uWS.App().any('/*', (res) => void res.end('the other install'));
    await new Promise<void>((resolve) => app.listen('127.0.0.1', Number(p.INGEST_PORT), (token) => ((other = token), resolve())));
    expect(other, 'the stand-in listener').toBeTruthy();
    cleanup.push(() => other && uWS.us_listen_socket_close(other));

    const dir = dataDir('taken');
    const s = npmStart({ ...p, DATA_DIR: dir });
    reap(s);
    const code = await Promise.race([s.exited, sleep(120_000).then(() => 'still running' as const)]);
    expect(code, s.output()).toBe(1);
    // One line (it was a JSON error log with a stack, then "stopping…" and "stopped"), suggesting a
    // data folder of its own: on this one's, the running install's PostgreSQL holds the data.
    expect(s.output().trim().split('\n').at(-1)).toBe(
      `start: port in use on 127.0.0.1: INGEST_PORT ${p.INGEST_PORT} (another pgAnalytics Central, or another program). ` +
        `Stop it, or start this one with a data folder and ports of its own, e.g. DATA_DIR=${dir}-2 ` +
        `ADMIN_PORT=${Number(p.ADMIN_PORT) + 1} INGEST_PORT=${Number(p.INGEST_PORT) + 1} WRITER_PORT=${Number(p.WRITER_PORT) + 1} npm start`,
    );
    expect(s.output()).not.toContain('stopping');
    expect(s.output()).not.toContain('pgAnalytics Central is running');
    // Nothing was started: no PostgreSQL or Redis, no service on the other ports.
    expect(serverPids(s.output())).toEqual([]);
    expect(await answers(Number(p.ADMIN_PORT), '/healthz')).toBe(0);
  }, 180_000);

  /** `npm start` with a bad setting: it must exit 1 at once; returns its last line and output. */
  const refusedAtStart = async (folder: string, env: Record<string, string>) => {
    const s = npmStart({ ...(await ports()), DATA_DIR: dataDir(folder), ...env });
    reap(s);
    const code = await Promise.race([s.exited, sleep(120_000).then(() => 'still running' as const)]);
    expect(code, s.output()).toBe(1);
    return { last: s.output().trim().split('\n').at(-1), output: s.output() };
  };

  it('refuses a bad ENCRYPTION_KEY in one line before starting anything (the services used to crash on it after PostgreSQL, Redis and the build)', async () => {
    const { last, output } = await refusedAtStart('bad-key', { ENCRYPTION_KEY: 'abc' });
    expect(last).toBe(
      'start: invalid environment: ENCRYPTION_KEY: the key must be 32 bytes base64-encoded (it decodes to 2 bytes) (got "[redacted]")',
    );
    expect(serverPids(output)).toEqual([]);
  }, 180_000);

  it('refuses a short JWT_SECRET in one line before starting anything (the services used to refuse it after PostgreSQL, Redis and the build)', async () => {
    const { last, output } = await refusedAtStart('bad-jwt', { JWT_SECRET: 'too-short' });
    expect(last).toBe('start: invalid environment: JWT_SECRET: must be at least 32 characters (got "[redacted]")');
    expect(serverPids(output)).toEqual([]);
  }, 180_000);

  it('refuses an unknown LOG_LEVEL in one line, as the services do (it crashed with a pino stack)', async () => {
    const { last, output } = await refusedAtStart('bad-level', { LOG_LEVEL: 'verbose' });
    expect(last).toBe(
      'start: invalid environment: LOG_LEVEL: expected one of fatal, error, warn, info, debug, trace, silent (got "verbose")',
    );
    expect(output).not.toContain('custom levels');
  }, 180_000);

  it('prints the first admin\'s generated password when a service fails to start after the account was created (it was lost: the next start said "already exists")', async () => {
    const dir = dataDir('admin-unshown');
    // The writer refuses this variable (npm start does not read it): a service exiting while starting.
    const failed = npmStart({ ...(await ports()), DATA_DIR: dir, ADMIN_USERNAME: 'ops', METRICS_RETENTION_DAYS: 'abc' });
    reap(failed);
    const code = await Promise.race([failed.exited, sleep(180_000).then(() => 'still running' as const)]);
    expect(code, failed.output()).toBe(1);
    expect(failed.output()).toContain('service exited unexpectedly while starting');
    const shown = /First admin {8}ops \/ (\S+) {3}\(created before the start failed/.exec(failed.output());
    expect(shown, failed.output()).not.toBeNull();

    // The account exists and the printed password signs in.
    const p = await ports();
    const s = npmStart({ ...p, DATA_DIR: dir, ADMIN_USERNAME: 'ops', LOG_LEVEL: 'info' });
    reap(s);
    await until(
      'the "running" banner',
      () => s.output().includes('pgAnalytics Central is running') || s.npm.exitCode !== null,
      180_000,
    );
    expect(s.output()).toContain('Admin account      ops (already exists)');
    const origin = `http://127.0.0.1:${p.ADMIN_PORT}`;
    const login = await fetch(`${origin}/trpc/auth.login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', origin },
      body: JSON.stringify({ username: 'ops', password: shown![1] }),
    });
    expect(login.status).toBe(200);
    await stop(s);
  }, 400_000);

  it('refuses a second npm start on the same DATA_DIR in one line, and leaves the first running', async () => {
    const dir = dataDir('second');
    const first = await running(dir);
    const p = await ports();
    const second = npmStart({ ...p, DATA_DIR: dir });
    reap(second);
    const code = await Promise.race([second.exited, sleep(120_000).then(() => 'still running' as const)]);
    expect(code, second.output()).toBe(1);
    // It used to take the first one's PostgreSQL for "another program" on its port, then fail on postmaster.pid.
    const last = second.output().trim().split('\n').at(-1);
    expect(last).toMatch(
      /^start: another npm start is running with DATA_DIR \S+ \(pid \d+\): stop it, or start this one with another DATA_DIR$/,
    );
    expect(last).toContain(`DATA_DIR ${dir} (pid`);
    expect(second.output()).not.toContain('in use by another program');
    expect(serverPids(second.output())).toEqual([]);
    expect(await answers(Number(p.ADMIN_PORT), '/healthz')).toBe(0);
    expect(first.npm.exitCode, 'the first start still runs').toBeNull();
    expect(first.output()).not.toContain('stopping');
    await stop(first);
    // Stopped, the folder is free again.
    const third = await running(dir);
    await stop(third);
  }, 400_000);
});
