import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  freePort,
  PortInUseError,
  spawnServer,
  startPostgres,
  startRedis,
  startTogether,
  startOnFreePort,
  type PostgresHandle,
  type RedisHandle,
} from '@pga/local-stack';
import { testEnv } from '../helpers';

/** Whether anything accepts a TCP connection on this loopback port. */
const listening = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
  });

/**
 * A failed start leaves nothing running: the bench once left a PostgreSQL running for an hour
 * because the Redis started beside it was missing.
 */
describe('@pga/local-stack: a failed start', () => {
  const dir = path.join(testEnv.dataDir, `local-stack-${process.pid}`);
  const fakeBin = path.join(dir, 'bin');
  const realPath = process.env.PATH;
  beforeAll(() => {
    mkdirSync(fakeBin, { recursive: true });
    // Found before the real one (PATH is searched first): prints a reason and exits at once.
    writeFileSync(path.join(fakeBin, 'redis-server'), '#!/bin/sh\necho "fake redis-server: cannot open the port" >&2\nexit 1\n');
    chmodSync(path.join(fakeBin, 'redis-server'), 0o755);
  });
  afterAll(() => {
    process.env.PATH = realPath;
  });

  it('is reported at once, with what the server printed (not after the 30 s wait)', async () => {
    process.env.PATH = `${fakeBin}:${realPath}`;
    const t0 = Date.now();
    try {
      await expect(startRedis({ dataDir: path.join(dir, 'redis-alone'), port: await freePort() })).rejects.toThrow(
        /redis-server exited at start .*\n {2}fake redis-server: cannot open the port/s,
      );
    } finally {
      process.env.PATH = realPath;
    }
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it('startTogether stops the PostgreSQL that started when Redis did not', async () => {
    const pgPort = await freePort();
    process.env.PATH = `${fakeBin}:${realPath}`;
    try {
      await expect(
        startTogether<PostgresHandle | RedisHandle>([
          startPostgres({ dataDir: path.join(dir, 'pg'), port: pgPort, ephemeral: true }),
          freePort().then((port) => startRedis({ dataDir: path.join(dir, 'redis'), port })),
        ]),
      ).rejects.toThrow('redis-server exited at start');
    } finally {
      process.env.PATH = realPath;
    }
    // Not only now: a PostgreSQL still starting in the background would be listening within ~1 s.
    for (let i = 0; i < 15; i++) {
      expect(await listening(pgPort)).toBe(false);
      await new Promise((r) => setTimeout(r, 200));
    }
  });

  it("startTogether answers every server when all start, in order (Redis with the queue's AOF settings)", async () => {
    const [pg, redis] = (await startTogether<PostgresHandle | RedisHandle>([
      freePort().then((port) => startPostgres({ dataDir: path.join(dir, 'pg-ok'), port, ephemeral: true })),
      freePort().then((port) => startRedis({ dataDir: path.join(dir, 'redis-ok'), port })),
    ])) as [PostgresHandle, RedisHandle];
    try {
      expect(pg.url).toMatch(/^postgresql:/);
      expect(redis.url).toMatch(/^redis:/);
      expect(await listening(pg.port)).toBe(true);
      expect(await listening(redis.port)).toBe(true);
      // The queue's AOF is rewritten from 512 MB, not every 64 MB (redis.ts says why).
      const client = new Redis(redis.url);
      try {
        expect(await client.config('GET', 'auto-aof-rewrite-min-size')).toEqual([
          'auto-aof-rewrite-min-size',
          String(512 * 1024 * 1024),
        ]);
        expect(await client.config('GET', 'appendonly')).toEqual(['appendonly', 'yes']);
      } finally {
        client.disconnect();
      }
    } finally {
      await Promise.all([pg.stop(), redis.stop()]);
    }
    expect(await listening(pg.port)).toBe(false);
  });
});

describe('@pga/local-stack: a server log', () => {
  it('keeps what either stream prints after the other one ended', async () => {
    const dir = path.join(testEnv.dataDir, `local-stack-log-${process.pid}`);
    mkdirSync(dir, { recursive: true });
    const logFile = path.join(dir, 'server.log');
    // stdout closes first; stderr writes afterwards (the first stream to end used to end the log).
    const child = spawnServer('sh', ['-c', 'echo first; exec 1>&-; sleep 0.2; echo "last words" >&2'], logFile);
    await new Promise((resolve) => child.once('close', resolve));
    await new Promise((resolve) => setTimeout(resolve, 100)); // the log's own write reaches the file
    expect(readFileSync(logFile, 'utf8')).toBe('first\nlast words\n');
  });
});

/** One inline command on a fresh connection, without AUTH; Redis's first answer line. */
const rawCommand = (port: number, command: string) =>
  new Promise<string>((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let data = '';
    socket.once('connect', () => socket.write(`${command}\r\n`));
    socket.on('data', (chunk) => {
      data += chunk.toString();
      if (data.includes('\r\n')) {
        socket.destroy();
        resolve(data.split('\r\n')[0]!);
      }
    });
    socket.once('error', reject);
  });

/**
 * `npm start`'s Redis has a password (security review M4: without one any local user could
 * PUBLISH a forged "enabled" change, read push bodies or FLUSHALL). It is in a 0600 config file,
 * not on the command line every local user can read.
 */
describe('@pga/local-stack: Redis with a password', () => {
  it('refuses an unauthenticated PING, answers with the password, and keeps it off the command line', async () => {
    const dir = path.join(testEnv.dataDir, `local-stack-auth-${process.pid}`);
    const password = 'p@ss "word" \\ with spaces é';
    const redis = await startRedis({ dataDir: dir, port: await freePort(), password });
    try {
      expect(await rawCommand(redis.port, 'PING')).toMatch(/^-NOAUTH/);
      expect(await rawCommand(redis.port, 'PUBLISH pga:collector-changes x')).toMatch(/^-NOAUTH/);
      const client = new Redis(redis.url);
      try {
        expect(await client.ping()).toBe('PONG');
      } finally {
        client.disconnect();
      }
      expect(decodeURIComponent(new URL(redis.url).password)).toBe(password);
      expect(readFileSync(`/proc/${redis.pid}/cmdline`, 'utf8')).not.toContain('word');
      expect(statSync(path.join(dir, 'auth.conf')).mode & 0o777).toBe(0o600);
    } finally {
      await redis.stop();
    }
  });
});

/**
 * A port taken by another process between freePort() and the server's listen, or while a server
 * was stopped to be started again on it (this machine's tests share 127.0.0.1 with other users').
 */
describe('@pga/local-stack: a port another server took', () => {
  const dir = path.join(testEnv.dataDir, `local-stack-ports-${process.pid}`);

  it("a Redis whose port another Redis holds fails with PortInUseError (it used to return that other Redis's URL as its own)", async () => {
    const other = await startRedis({ dataDir: path.join(dir, 'holder'), port: await freePort() });
    try {
      const start = startRedis({ dataDir: path.join(dir, 'loser'), port: other.port });
      await expect(start).rejects.toBeInstanceOf(PortInUseError);
      await expect(start).rejects.toThrow(/Address already in use/);
      // Said as what it is, port first (it printed as "GiveUp: redis-server exited at start ...").
      expect(String(await start.catch((err: unknown) => err))).toMatch(
        new RegExp(`^PortInUseError: 127\\.0\\.0\\.1:${other.port} is taken by another process: redis-server exited at start`),
      );
      // Every pick taken: the error names the ports tried.
      await expect(
        startOnFreePort((port) => startRedis({ dataDir: path.join(dir, 'loser'), port }), {
          attempts: 2,
          pick: async () => other.port,
        }),
      ).rejects.toThrow(`every port tried was taken (${other.port}, ${other.port})`);
      // Picking again: the start on a free port's second pick succeeds, and is the server it says.
      const picks = [other.port, await freePort()];
      const redis = await startOnFreePort((port) => startRedis({ dataDir: path.join(dir, 'retried'), port }), {
        pick: async () => picks.shift()!,
      });
      try {
        expect(redis.port).not.toBe(other.port);
        const client = new Redis(redis.url, { maxRetriesPerRequest: 1 });
        try {
          expect(/^process_id:(\d+)/m.exec(await client.info('server'))?.[1]).toBe(String(redis.pid));
        } finally {
          client.disconnect();
        }
      } finally {
        await redis.stop();
      }
    } finally {
      await other.stop();
    }
  });

  it('a PostgreSQL whose port another PostgreSQL holds fails with PortInUseError (it used to answer as that other one)', async () => {
    const taken = Number(new URL(testEnv.pgUrl).port); // the tests' own PostgreSQL
    const start = startPostgres({ dataDir: path.join(dir, 'pg-loser'), port: taken, ephemeral: true });
    await expect(start).rejects.toBeInstanceOf(PortInUseError);
    await expect(start).rejects.toThrow(/Address already in use/);
    expect(String(await start.catch((err: unknown) => err))).toMatch(
      new RegExp(`^PortInUseError: 127\\.0\\.0\\.1:${taken} is taken by another process: PostgreSQL exited at start`),
    );
  });

  it('a Redis whose port a server that is not Redis holds fails with PortInUseError too (it used to wait forever)', async () => {
    // One closes every connection at once, one answers something else and closes: the readiness
    // check's connection ended without an answer, and nothing ended its wait.
    for (const answer of [(s: Socket) => s.destroy(), (s: Socket) => s.resume().end('HTTP/1.1 400 Bad Request\r\n\r\n')]) {
      const holder = createServer(answer);
      await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
      const port = (holder.address() as AddressInfo).port;
      try {
        const t0 = Date.now();
        const start = startRedis({ dataDir: path.join(dir, 'not-redis'), port });
        // A bound of its own: the old wait never ended, not even at waitFor's 30 s.
        let timer: NodeJS.Timeout | undefined;
        const bound = new Promise(
          (_, reject) => (timer = setTimeout(() => reject(new Error('still waiting after 20 s')), 20_000)),
        );
        try {
          await expect(Promise.race([start, bound])).rejects.toBeInstanceOf(PortInUseError);
        } finally {
          clearTimeout(timer);
        }
        expect(Date.now() - t0).toBeLessThan(20_000);
      } finally {
        holder.close();
      }
    }
  }, 60_000);
});
