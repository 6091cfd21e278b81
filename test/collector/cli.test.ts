import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPeerCentral } from './helpers/peer-central';
import { FAST_ENV, newStateDir, until } from './helpers/run-collector';
import { BIN, runCli, startCli } from './helpers/spawn-cli';
import { startTargetPostgres, type TargetPostgres } from './helpers/target-postgres';

let target: TargetPostgres;
beforeAll(async () => {
  target = await startTargetPostgres();
});
afterAll(async () => {
  await target?.[Symbol.asyncDispose]();
});

const targetConfig = (t: TargetPostgres, username = 'postgres') => ({
  config_version: 1,
  enabled: true,
  collection_interval: 1,
  query_limit: 5,
  target: {
    type: 'postgresql' as const,
    host: '127.0.0.1',
    port: t.pg.port,
    database: 'postgres',
    username,
    password: '',
    ssl_mode: 'disable',
  },
});

async function peerWithCollector() {
  const peer = await startPeerCentral();
  peer.state.config = targetConfig(target);
  const env = {
    ...FAST_ENV,
    COLLECTOR_ID: peer.collectorId,
    COLLECTOR_JWT_TOKEN: await peer.issueToken(),
    CENTRAL_API_URL: peer.url,
    COLLECTOR_STATE_DIR: newStateDir(),
  };
  return { peer, env };
}

describe('pga-collector CLI (package bin)', () => {
  it('--help prints usage and exits 0; an unknown option exits 2', async () => {
    const help = await runCli(['--help'], {});
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/Usage: pga-collector/);
    for (const flag of ['--once', '--dry-run', '--check', '--enroll']) expect(help.stdout).toContain(flag);
    expect((await runCli(['--bogus'], {})).code).toBe(2);
  });

  it('--dry-run prints the snapshot JSON with exact queryids and pushes nothing', async () => {
    await target.pgbench(['-S', '-c', '1', '-t', '10']);
    await using peer = await startPeerCentral();
    peer.state.config = targetConfig(target);
    const stateDir = newStateDir();
    const res = await runCli(['--dry-run'], {
      COLLECTOR_ID: peer.collectorId,
      COLLECTOR_JWT_TOKEN: await peer.issueToken(),
      CENTRAL_API_URL: peer.url,
      COLLECTOR_STATE_DIR: stateDir,
    });
    expect(res.code, res.stderr).toBe(0);
    const envelope = JSON.parse(res.stdout);
    expect(envelope.collector_id).toBe(peer.collectorId);
    expect(envelope.metrics.map((m: { type: string }) => m.type)).toContain('pg_query_stats');
    const ids = (await target.sql<{ id: string }>('SELECT queryid::text AS id FROM pg_stat_statements')).map((r) => r.id);
    const printed = [...res.stdout.matchAll(/"queryid":(-?\d+)/g)].map((m) => m[1]!);
    expect(printed.length).toBeGreaterThan(0);
    for (const id of printed) expect(ids).toContain(id);
    expect(peer.state.pushAttempts).toHaveLength(0);
    expect(peer.state.configPulls).toBe(1);
    // Nothing spooled, and no spool folder created either.
    expect(readdirSync(stateDir)).toEqual([]);
  });

  it('--dry-run works without a central against TARGET_DATABASE_URL', async () => {
    const stateDir = newStateDir();
    const res = await runCli(['--dry-run'], { TARGET_DATABASE_URL: target.url, COLLECTOR_STATE_DIR: stateDir });
    expect(res.code, res.stderr).toBe(0);
    expect(JSON.parse(res.stdout).metrics.length).toBeGreaterThan(5);
    expect(readdirSync(stateDir)).toEqual([]);
  });

  it('--once collects, pushes and prints a summary', async () => {
    const { peer, env } = await peerWithCollector();
    await using _peer = peer;
    const res = await runCli(['--once'], env);
    expect(res.code, res.stderr).toBe(0);
    const summary = JSON.parse(res.stdout);
    expect(summary).toMatchObject({ pushed: 1, spooled: 0, error: null });
    expect(peer.state.pushes.map((p) => p.pushId)).toEqual([summary.push_id]);
    expect(summary.metrics).toBe(peer.state.pushes[0]!.envelope.metrics.length);
  });

  it('--check names the failing stage', async () => {
    const { peer, env } = await peerWithCollector();
    await using _peer = peer;
    const ok = await runCli(['--check'], env);
    expect(ok.code, ok.stdout).toBe(0);
    // Every stage the README lists prints its line, the first one included.
    expect(ok.stdout.split('\n')[0]).toBe(`✓ credentials: collector ${peer.collectorId} (from the environment)`);
    expect(ok.stdout).toMatch(
      /✓ credentials[\s\S]*✓ central-reachable[\s\S]*✓ central-auth[\s\S]*✓ target-connect[\s\S]*✓ target-query[\s\S]*✓ pg_stat_statements[\s\S]*check passed/,
    );

    const noCredentials = await runCli(['--check'], { CENTRAL_API_URL: peer.url, COLLECTOR_STATE_DIR: newStateDir() });
    expect(noCredentials.code).toBe(1);
    expect(noCredentials.stdout).toMatch(/^✗ credentials: [\s\S]*check failed at stage "credentials"/);

    peer.state.config = targetConfig(target, 'no_such_user');
    const badTarget = await runCli(['--check'], env);
    expect(badTarget.code).toBe(1);
    expect(badTarget.stdout).toMatch(/check failed at stage "target-connect"/);
    expect(badTarget.stdout).toMatch(/no_such_user/);

    const badToken = await runCli(['--check'], { ...env, COLLECTOR_JWT_TOKEN: 'not.a.token' });
    expect(badToken.stdout).toMatch(/check failed at stage "central-auth"/);

    const badConfig = await runCli(['--check'], { ...env, COLLECTOR_HTTP_TIMEOUT_MS: 'soon' });
    expect(badConfig.code).toBe(1);
    expect(badConfig.stdout).toBe('✗ config: invalid environment\n');
    expect(badConfig.stderr).toMatch(/^pga-collector: invalid environment: COLLECTOR_HTTP_TIMEOUT_MS/);

    const down = await runCli(['--check'], { ...env, CENTRAL_API_URL: 'http://127.0.0.1:9' });
    expect(down.code).toBe(1);
    expect(down.stdout).toMatch(/check failed at stage "central-reachable"/);
  });

  it('--enroll saves id and token 0600, and the next start runs from them', async () => {
    await using peer = await startPeerCentral();
    peer.state.config = targetConfig(target);
    const stateDir = newStateDir();
    const refused = await runCli(['--enroll'], {
      CENTRAL_API_URL: peer.url,
      COLLECTOR_STATE_DIR: stateDir,
      REGISTRATION_SECRET: 'wrong',
    });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/enrollment refused: 401/);
    const res = await runCli(['--enroll'], {
      CENTRAL_API_URL: peer.url,
      COLLECTOR_STATE_DIR: stateDir,
      REGISTRATION_SECRET: 'enroll-me',
      COLLECTOR_NAME: 'db-7',
    });
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toContain(peer.collectorId);
    expect(res.stdout).not.toMatch(/eyJ/); // the token is never printed
    expect(peer.state.registered).toMatchObject([{ name: 'db-7' }]);
    const file = path.join(stateDir, 'collector.json');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(file, 'utf8'))).toMatchObject({
      collector_id: peer.collectorId,
      token: expect.stringMatching(/^eyJ/),
    });

    const once = await runCli(['--once'], { ...FAST_ENV, CENTRAL_API_URL: peer.url, COLLECTOR_STATE_DIR: stateDir });
    expect(once.code, once.stderr).toBe(0);
    expect(peer.state.pushes[0]!.envelope.collector_id).toBe(peer.collectorId);
  });

  it('loses nothing when killed with SIGKILL in the middle of a push', async () => {
    const { peer, env } = await peerWithCollector();
    await using _peer = peer;
    peer.state.onPush = () => 'hang';
    const first = startCli([], env);
    try {
      await until('a push in flight', () => peer.state.pushAttempts.length >= 1);
      await until('a few snapshots spooled', () => readSpool(env).length >= 2);
    } finally {
      first.kill('SIGKILL');
      await new Promise((r) => first.once('exit', r));
    }
    const inFlight = peer.state.pushAttempts[0]!.pushId;
    const left = readSpool(env);
    expect(left[0]).toContain(inFlight);
    peer.releaseHanging();
    peer.state.onPush = undefined;

    const second = startCli([], env);
    try {
      await until('the spool of the killed run delivered', () =>
        left.every((name) => peer.state.pushes.some((p) => name.includes(p.pushId))),
      );
    } finally {
      second.kill('SIGTERM');
      await new Promise((r) => second.once('exit', r));
    }
    const received = peer.state.pushes.map((p) => p.pushId);
    expect(received[0]).toBe(inFlight);
    expect(new Set(received).size).toBe(received.length);
  });

  it('stops when a supervisor SIGTERMs the npx wrapper that started it (npm → sh -c → node), not when started under init or in the background', async () => {
    const { peer, env } = await peerWithCollector();
    await using _peer = peer;
    // The wrapper exits on SIGTERM without passing it on, as npx and its `sh -c` do (npm sets
    // npm_command=exec in what it starts).
    const wrapped = startInShell(`"$0" "$1" & echo $!; wait`, { ...env, npm_command: 'exec' });
    try {
      await until('pushes from the wrapped agent', () => peer.state.pushes.length >= 1 && wrapped.pid());
      process.kill(wrapped.shell.pid!, 'SIGTERM');
      await until('the orphaned agent exited', () => !alive(wrapped.pid()!), 10_000);
      await until('its stop logged', () => wrapped.stderr().includes('"msg":"stopping"'));
      expect(wrapped.stderr()).toContain('parent process exited: stopping as on SIGTERM');
    } finally {
      wrapped.killAgent();
    }

    // Started by a shell that exits at once: the agent's parent is init (or a subreaper) from its
    // start, as under systemd, and it runs on until it is signalled itself.
    const detached = startInShell(`"$0" "$1" & echo $!`, env);
    try {
      const pid = await until('the agent pid', () => detached.pid());
      const pushed = peer.state.pushes.length;
      await until('pushes from the agent started under init', () => peer.state.pushes.length >= pushed + 2);
      expect(alive(pid)).toBe(true);
      process.kill(pid, 'SIGTERM');
      await until('the agent exited on SIGTERM', () => !alive(pid), 10_000);
      expect(detached.stderr()).not.toContain('parent process exited');
    } finally {
      detached.killAgent();
    }

    // Started in the background by a shell that exits later (`nohup … &` from a login shell), not by
    // npm: it runs on when that shell goes, as it always did.
    const background = startInShell(`"$0" "$1" & echo $!; wait`, env);
    try {
      const pid = await until('the background agent pid', () => background.pid());
      const before = peer.state.pushes.length;
      await until('a push from the background agent (it is running)', () => peer.state.pushes.length > before);
      process.kill(background.shell.pid!, 'SIGTERM');
      const pushed = peer.state.pushes.length;
      await until('pushes from the agent after its shell exited', () => peer.state.pushes.length >= pushed + 2);
      expect(alive(pid)).toBe(true);
      expect(background.stderr()).not.toContain('parent process exited');
    } finally {
      background.killAgent();
    }
  });
});

/** `sh -c script node bin` with the agent in the background; its PID is what the script echoes. */
function startInShell(script: string, env: Record<string, string>) {
  const shell = spawn('sh', ['-c', script, process.execPath, BIN], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  shell.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  shell.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const pid = () => {
    const m = /^(\d+)\n/.exec(stdout);
    return m ? Number(m[1]) : undefined;
  };
  return {
    shell,
    pid,
    stderr: () => stderr,
    killAgent: () => {
      const p = pid();
      if (p && alive(p)) process.kill(p, 'SIGKILL');
    },
  };
}

/** Running (a zombie left to a reaper that does not reap counts as exited). */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

function readSpool(env: { COLLECTOR_STATE_DIR: string; COLLECTOR_ID: string }): string[] {
  return readdirSync(path.join(env.COLLECTOR_STATE_DIR, 'spool', env.COLLECTOR_ID))
    .filter((n) => n.endsWith('.json.gz') && !n.startsWith('.tmp-'))
    .sort();
}
