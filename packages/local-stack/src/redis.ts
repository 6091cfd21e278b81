import { mkdirSync } from 'node:fs';
import { connect } from 'node:net';
import path from 'node:path';
import { outputTail, readyOrStopped, spawnServer, stopChild } from './child';
import { findExecutable } from './find-executable';
import { GiveUp, waitFor } from './wait-for';

export interface StartRedisOptions {
  dataDir: string;
  port: number;
  /** Append-only file on (durable queue); default true. */
  appendOnly?: boolean;
  password?: string;
  /** `maxmemory`, e.g. "1gb"; default unlimited. */
  maxMemory?: string;
}

export interface RedisHandle {
  url: string;
  port: number;
  pid: number;
  logFile: string;
  stop(): Promise<void>;
}

export function redisBinary(): string {
  const found = findExecutable('redis-server');
  if (!found) throw new Error('redis-server was not found: install it (apt-get install -y redis-server)');
  return found;
}

export async function startRedis(options: StartRedisOptions): Promise<RedisHandle> {
  const dir = path.resolve(options.dataDir);
  mkdirSync(dir, { recursive: true });
  const logFile = path.join(dir, 'redis.log');
  const args = [
    '--port',
    String(options.port),
    '--bind',
    '127.0.0.1',
    '--dir',
    dir,
    '--daemonize',
    'no',
    '--save',
    '',
    '--appendonly',
    options.appendOnly === false ? 'no' : 'yes',
    '--appendfsync',
    'everysec',
    '--maxmemory-policy',
    'noeviction',
    ...(options.maxMemory ? ['--maxmemory', options.maxMemory] : []),
    ...(options.password ? ['--requirepass', options.password] : []),
  ];
  const child = spawnServer(redisBinary(), args, logFile, { cwd: dir });
  let exited = false;
  // 'close': it exited and all it printed has been read (outputTail has it).
  child.once('close', () => (exited = true));
  await readyOrStopped(child, () =>
    waitFor(`Redis on 127.0.0.1:${options.port} (log: ${logFile})`, async () => {
      if (exited) throw new GiveUp(`redis-server exited at start (log: ${logFile})${outputTail(child)}`);
      return ping(options.port, options.password);
    }),
  );
  const auth = options.password ? `:${encodeURIComponent(options.password)}@` : '';
  return {
    url: `redis://${auth}127.0.0.1:${options.port}`,
    port: options.port,
    pid: child.pid!,
    logFile,
    stop: () => stopChild(child, 'SIGTERM'),
  };
}

function ping(port: number, password?: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let data = '';
    socket.setTimeout(1000, () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('connect', () => socket.write(`${password ? `AUTH ${password}\r\n` : ''}PING\r\n`));
    socket.on('data', (chunk) => {
      data += chunk.toString();
      if (data.includes('+PONG') || data.includes('-')) {
        socket.destroy();
        resolve(data.includes('+PONG'));
      }
    });
    socket.once('error', () => resolve(false));
  });
}
